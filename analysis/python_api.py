"""The Python API's `gapprof.attribute(path, **options)`: the tables `gapprof attribute` shows, as polars frames.

One attribute per table of the registry (analysis.tables.TABLES, `two-pass` as `two_pass`), each computed on first
use and kept; every one is a polars DataFrame, so `.to_pandas()` gives pandas.
"""

from dataclasses import fields
from pathlib import Path

import polars as pl
from gapprof.analysis import attribution
from gapprof.analysis.attribution import Attribution, Options
from gapprof.analysis.plausibility import check_options, refuse_misfit
from gapprof.analysis.tables import TABLES, Built, Inputs, TableOptions, api_name

from gapprof.errors import GapprofError

OPTIONS = tuple(field.name for field in (*fields(Options), *fields(TableOptions)))
FILE_OPTIONS = ("ncu", "reference")


def _table_names() -> dict[str, str]:
    """API attribute -> the registry's table name."""
    return {api_name(name): name for name in TABLES}


class Report:
    """The attribution of one trace. Its tables, each a polars DataFrame:
    summary   per term (wall, busy, floor, excess, starved, latency, head, tail, spill, overlap): ms statistics
    two_pass  per term, the graph-level pass, the node-level pass and the two joined (a two-pass capture only)
    facts     key, value (a number, Float64; null for words) and text (the words; null for a number)
    classes, kernels, api  per kernel class, kernel short name (and memcpy, memset), API call: per-step means
    steps     every step, warm-up included (`warmup`), times in integer ns, counts Int64
    cost      per kernel class, busy = floor + extra + shortfall + fixed in us a step (needs ncu, module ranges or
              reference)
    findings  rank, title, ms_per_step, evidence, knob: what costs a step the most, largest first; with ncu it
              reads the cost split, as `attribute --ncu` does
    modules   per module kind (needs module ranges, or reference); `table("modules").sections` has the layers too
    """

    def __init__(
        self,
        result: Attribution,
        options: Options = Options(),
        table_options: TableOptions = TableOptions(),
        source: Path | None = None,
    ):
        self.attribution = result  # frames, per-step table, ops, calls and floor, for analyses of one's own
        # The path as the caller gave it: a .sqlite.xz is read from a temporary unpacked copy, a .nsys-rep from
        # the export beside it.
        self.source = source or result.frames.trace.path
        self._inputs = Inputs(result, options, table_options, cost_shown=table_options.ncu is not None)
        self._built: dict[str, Built] = {}

    def __repr__(self) -> str:
        result = self.attribution
        return f"<gapprof Report of {self.source}: {result.measured.height} measured steps>"

    def __getattr__(self, attribute: str) -> pl.DataFrame:
        names = _table_names()
        if attribute not in names:
            raise AttributeError(f"'Report' has no attribute {attribute!r}")
        built = self.table(names[attribute])
        if built.frame is None:
            raise GapprofError(f"{self.source}: no {attribute} table; {' '.join(built.notes)}")
        return built.frame

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_table_names()})

    def table(self, name: str) -> Built:
        """A table of the registry by its command name: every section the command shows (title, frame or dict),
        its notes and its frame."""
        if name not in self._built:
            built = TABLES[name].build(self._inputs)
            if built is None:
                raise GapprofError(f"{self.source}: {api_name(name)} needs {TABLES[name].needs}")
            self._built[name] = built
        return self._built[name]

    @property
    def notes(self) -> tuple[str, ...]:
        """The attribution's notes (each table's own are in `table(name).notes`)."""
        return self.attribution.notes


def attribute(path, force: bool = False, **options) -> Report:
    """Attribute the trace at `path` (.sqlite, .nsys-rep, torch.profiler .json or .json.gz), as `gapprof attribute`,
    with its checks: options that contradict the capture's metadata, or a floor above the busy time, raise unless
    force=True (`--force`).

    options, as the command's:
    range_pattern, skip: the step ranges (--range) and the warm-up steps to skip
    model, ctx, dtype, gpu, count_embedding, quant, quant_lm_head: the floor's inputs
    full_names, top: kernel names whole, and the rows of the kernel and API tables (0, the default: all)
    per_step: the cost split per step too
    ncu: `gapprof ncu`'s CSV for this trace (bytes per kernel for cost, read by findings too)
    reference: a module-annotated trace of the same model (cost and modules of a trace without module ranges)
    gpu_profiles: `gapprof calibrate`'s profiles, one path or several (cost's reference bandwidth)
    find_steps: the steps found from the GPU work even where ranges match (--steps auto)
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise GapprofError(f"unknown option {', '.join(unknown)}; choose from {', '.join(OPTIONS)}")
    table_options = {name: options.pop(name) for name in [f.name for f in fields(TableOptions)] if name in options}
    top = table_options.get("top", 0)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        # --top's type refuses these; polars would read -1 as "all rows but the last"
        raise GapprofError(f"top={top!r}: a whole number, 0 or more")
    for name in FILE_OPTIONS:
        if table_options.get(name) is not None:
            table_options[name] = _existing(name, table_options[name])
    profiles = table_options.get("gpu_profiles", ())
    table_options["gpu_profiles"] = tuple(
        _existing("gpu_profiles", p) for p in ([profiles] if isinstance(profiles, str | Path) else profiles)
    )
    chosen = Options(**options)
    check_options(chosen)
    result = attribution.analyze(path, chosen)
    refuse_misfit(result, chosen, force, "force=True")
    return Report(result, chosen, TableOptions(**table_options), Path(path))


def _existing(option: str, path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise GapprofError(f"{option}={path}: no such file")
    return path
