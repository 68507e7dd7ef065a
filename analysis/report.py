"""The Python API's `gapprof.attribute(path, **options)`: the tables `gapprof attribute` prints, as polars frames.

Each table is computed on first use and kept; every one is a polars DataFrame, so `.to_pandas()` gives pandas.
"""
from dataclasses import fields
from functools import cached_property

import polars as pl

from gapprof.analysis import attribution
from gapprof.analysis.attribution import Attribution, Options
from gapprof.errors import GapprofError

OPTIONS = tuple(field.name for field in fields(Options))


class Report:
    """The attribution of one trace: summary, steps, kernels, classes, api and facts tables, and the notes."""

    def __init__(self, result: Attribution):
        self.attribution = result  # frames, per-step table, ops, calls and floor, for analyses of one's own

    def __repr__(self) -> str:
        result = self.attribution
        return f"<gapprof Report of {result.frames.trace.path}: {result.measured.height} measured steps>"

    @cached_property
    def summary(self) -> pl.DataFrame:
        """Per term (wall, busy, floor, excess, starved, latency, head, tail, spill, overlap): ms statistics."""
        return attribution.summary_table(self.attribution)

    @cached_property
    def steps(self) -> pl.DataFrame:
        """Every step, warm-up included (`warmup`), times in integer ns."""
        return self.attribution.steps

    @cached_property
    def kernels(self) -> pl.DataFrame:
        """Per kernel short name (and memcpy, memset) over the measured steps, every row."""
        return attribution.kernel_table(self.attribution)

    @cached_property
    def classes(self) -> pl.DataFrame:
        return attribution.class_table(self.attribution)

    @cached_property
    def api(self) -> pl.DataFrame:
        return attribution.api_table(self.attribution)

    @cached_property
    def facts(self) -> pl.DataFrame:
        """key, value: the facts table, values as text (they mix counts, ratios and words)."""
        facts = attribution.facts_table(self.attribution)
        return pl.DataFrame({"key": list(facts), "value": [None if v is None else str(v) for v in facts.values()]},
                            schema={"key": pl.String, "value": pl.String})

    @property
    def notes(self) -> tuple[str, ...]:
        return self.attribution.notes


def attribute(path, **options) -> Report:
    """Attribute the trace at `path` (.sqlite, .nsys-rep, torch.profiler .json or .json.gz), as `gapprof attribute`.

    options: range_pattern, skip, model, ctx, dtype, gpu, count_embedding (the command's options).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise GapprofError(f"unknown option {', '.join(unknown)}; choose from {', '.join(OPTIONS)}")
    return Report(attribution.analyze(path, Options(**options)))
