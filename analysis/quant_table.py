"""The quantised-decode table (`gapprof quant-table`), in the shape of the study's: one row a trace of one model on
one GPU, each against the baseline (the first trace whose layers are not quantised): its step without the profiler,
the floor it must move (GB, ms at the datasheet peak, fraction of that step), the speedup and the byte saving over
the baseline, the largest term above the floor, and its step projected to other GPUs; beside it, where each
trace's GPU time went by kernel class and, for traces with module labels, by module kind."""

from collections.abc import Sequence
from pathlib import Path

import polars as pl
from gapprof.analysis import modules, projection
from gapprof.analysis.achievable import reference_bandwidth
from gapprof.analysis.attribution import Options, class_table
from gapprof.analysis.comparison import Column
from gapprof.analysis.cross_gpu_columns import (
    Loaded,
    analyze_reference,
    load,
    measured_column,
    projected_columns,
    unprofiled_ms,
    with_bytes_per_kernel,
)
from gapprof.analysis.kernel_cost import step_split

from gapprof.errors import GapprofError
from gapprof.gpus import GpuSpec
from gapprof.log import progress

# The anatomy's terms above the floor (wall = floor + excess + starved + latency + head + tail).
ABOVE_FLOOR = ("excess", "starved", "latency", "head", "tail")
NOTE = (
    "unprofiled step: the mean of the capture's steps timed without the profiler (a projection: its "
    "estimate, see `gapprof project`); floor GB: the bytes a step must move, quantised layers counted as "
    "stored; floor ms at the datasheet peak; speedup and bytes ratio: the baseline's unprofiled step and floor "
    "bytes over the row's (one capture each, not an A/B over fresh sessions); largest term above the floor: "
    "of the profiled steps' excess (kernel time above the floor), starved, latency, head and tail, mean ms; "
    "with a trace's ncu CSV its excess is split as `attribute --ncu` splits busy: extra (bytes moved above "
    "the floor's), shortfall (bytes below peak bandwidth) and fixed (per-kernel time no bandwidth buys back)"
)
CLASSES_NOTE = (
    "kernel classes: each trace's GPU time (ms a step, mean over its measured steps) and GPU ops a step "
    "(kernels, memsets, device copies) by class, as `attribute --tables classes`; the last row adds them "
    "up to busy"
)
MODULES_NOTE = (
    "modules: each trace's GPU time and its floor's share (ms a step, floor at the datasheet peak) by "
    "module kind, as `attribute --by module` gives them: kernels labelled by the trace's own module "
    "ranges or, by position, from its --reference; the last row adds them up to busy"
)


def method(loaded: Loaded) -> str:
    quant = loaded.analysis.floor.quant
    if quant is None:
        return "none"
    return f"{quant.method}{' +lm_head' if quant.lm_head else ''}"


def _floor_bytes(loaded: Loaded) -> float:
    return loaded.analysis.measured["bytes"].mean()


def _largest_above_floor(loaded: Loaded, column: Column) -> str:
    terms = {t: column.values[f"{t} ms"] for t in ABOVE_FLOOR}
    if loaded.bytes_ops is not None:
        floor = loaded.analysis.floor
        reference = reference_bandwidth(loaded.analysis, loaded.timeline.profiles).gbps
        split = step_split(loaded.analysis.measured, loaded.bytes_ops, floor.bandwidths[floor.primary][0], reference)
        del terms["excess"]
        terms |= {t: split[t].mean() / 1e6 for t in ("extra", "shortfall", "fixed")}
    term = max(terms, key=terms.get)
    return f"{term} {terms[term]:.3f}"


def _check_alike(loaded: list[Loaded], columns: list[Column]) -> None:
    """One model and one GPU: the rows are methods, nothing else may differ."""
    for what, values in (
        ("model", [x.analysis.floor.spec.name for x in loaded]),
        ("GPU", [c.values["gpu"] for c in columns]),
    ):
        if len(set(values)) > 1:
            found = ", ".join(f"{x.label}: {v}" for x, v in zip(loaded, values))
            raise GapprofError(f"quant-table compares methods on one {what}; these traces differ ({found})")


def table(loaded: list[Loaded], projected: dict[str, list[Column]]) -> pl.DataFrame:
    """One row a trace; `projected`: label -> its columns projected to each target (projected_columns)."""
    columns = [measured_column(x) for x in loaded]
    _check_alike(loaded, columns)
    base = next((i for i, x in enumerate(loaded) if x.analysis.floor.quant is None), None)
    if base is None:
        raise GapprofError(
            "quant-table needs a baseline, a trace whose layers are not quantised; every one given "
            "is: " + ", ".join(f"{x.label} ({method(x)})" for x in loaded)
        )
    plain = {x.label: unprofiled_ms(x) for x in loaded}
    missing = [label for label, ms in plain.items() if ms is None]
    if missing:
        raise GapprofError(
            f"{', '.join(missing)}: no unprofiled step times (no gapprof metadata); the table "
            "compares steps without the profiler"
        )
    base_ms, base_bytes = plain[loaded[base].label], _floor_bytes(loaded[base])
    rows = []
    for x, column in zip(loaded, columns):
        floor, measured = x.analysis.floor, x.analysis.measured
        ms, floor_bytes = plain[x.label], _floor_bytes(x)
        floor_ms = measured["floor_datasheet"].mean() / 1e6 if "floor_datasheet" in measured.columns else None
        row = {
            "trace": x.label,
            "method": method(x),
            "bits per weight": floor.quant.bits_per_weight if floor.quant else 8.0 * floor.dtype_bytes,
            "unprofiled step ms": ms,
            "floor GB": floor_bytes / 1e9,
            "floor ms": floor_ms,
            "floor fraction": floor_ms / ms if floor_ms else None,
            "speedup": base_ms / ms,
            "bytes ratio": base_bytes / floor_bytes,
            "kernels/step": column.values["kernels/step"],
            "largest term above the floor, ms": _largest_above_floor(x, column),
        }
        for target in projected.get(x.label, []):
            gpu = target.values["gpu"].removesuffix(" (projected)")
            row[f"{gpu} unprofiled ms"] = target.values["unprofiled wall ms"]
            row[f"{gpu} floor fraction"] = target.values["unprofiled floor fraction"]
        rows.append(row)
    return pl.DataFrame(rows)


def class_changes(loaded: list[Loaded]) -> pl.DataFrame:
    """GPU time (ms a step) and GPU ops a step by kernel class in each trace, in `loaded`'s order, with the
    classes in order of the first trace's time: where each method's time went, class by class."""
    wide = None
    for x in loaded:
        classes = class_table(x.analysis).select(
            "class",
            (pl.col("us_per_step") / 1e3).alias(f"{x.label} ms"),
            pl.col("calls_per_step").alias(f"{x.label} ops"),
        )
        wide = classes if wide is None else wide.join(classes, on="class", how="full", coalesce=True)
    first = f"{loaded[0].label} ms"
    return _with_busy_row(wide.fill_null(0.0).sort(first, descending=True), "class")


def _with_busy_row(wide: pl.DataFrame, key: str) -> pl.DataFrame:
    """`wide` and a last row, "all (busy)", adding up each column: the parts' times sum to busy (and a floor
    column's parts to the step's floor)."""
    return pl.concat([wide, wide.select(pl.lit("all (busy)").alias(key), pl.exclude(key).sum())])


def _by_kind(x: Loaded, reference) -> pl.DataFrame | None:
    """x's busy and floor ms a step per module kind, or None for a trace without module ranges and no reference."""
    try:
        sections, _ = modules.by_module(x.analysis, reference)
    except modules.NoModuleRanges as missing:
        if missing.role == "trace" and reference is None:
            return None
        raise
    return dict(sections)["modules"].select(
        "kind",
        (pl.col("busy_us") / 1e3).alias(f"{x.label} ms"),
        (pl.col("floor_us") / 1e3).alias(f"{x.label} floor ms"),
    )


def module_changes(loaded: list[Loaded], references: list) -> pl.DataFrame | None:
    """GPU time and floor (ms a step) by module kind of each trace with module labels (its own module ranges, or
    its reference, an attribution.Attribution, in `references`), in `loaded`'s order and the kinds in model order;
    None when no trace has them."""
    tables = [t for t in (_by_kind(x, r) for x, r in zip(loaded, references)) if t is not None]
    if not tables:
        return None
    kinds = pl.concat([t.select("kind") for t in tables]).unique(maintain_order=True)
    wide = kinds
    for t in tables:
        wide = wide.join(t, on="kind", how="left")
    return _with_busy_row(wide.fill_null(0.0), "kind")


def _check_runtime(loaded: list[Loaded], force: bool) -> list[str]:
    """One runtime, as compare asks: a method's row against a baseline of another runtime would credit the method
    with what the runtime changes (CUDA graphs against eager launches). Refused unless force; notes otherwise."""
    runtimes = {x.label: x.analysis.frames.trace.meta.get("runtime") for x in loaded}
    if len(set(runtimes.values())) == 1:
        return []
    found = ", ".join(f"{label}: {runtime or 'not recorded'}" for label, runtime in runtimes.items())
    if not force:
        raise GapprofError(
            f"quant-table compares methods under one runtime; these traces differ ({found}), so a "
            "speedup would mix the method with the runtime; pass --force to tabulate them anyway"
        )
    return [f"tabulated anyway (--force): runtime differs ({found})"]


def quant_table_sections(
    paths: Sequence[Path],
    ncu_csvs: Sequence[Path | None],
    references: Sequence[Path | None],
    specs: Sequence[GpuSpec],
    options: Options,
    force: bool = False,
) -> tuple[list[tuple[str, pl.DataFrame]], list[str]]:
    """`gapprof quant-table`: sections (the table, kernel classes, and modules where a trace has module labels) and
    notes; ncu_csvs and references hold one file or None per trace, in their order. Traces of different runtimes,
    and floor overrides that contradict a capture, are refused unless force."""
    traces = load(paths, options, force)
    forced = _check_runtime(traces, force)
    loaded = [with_bytes_per_kernel(x, csv, None, options.range_pattern) for x, csv in zip(traces, ncu_csvs)]
    labelled = [analyze_reference(r, options.range_pattern) for r in references]
    projected = projected_columns(loaded, specs, projection.Knobs(), progress)
    notes = (
        [NOTE]
        + forced
        + [
            f"{x.label}: kernel model, bytes per kernel {x.bytes_source}"
            if x.bytes_source
            else f"{x.label}: projected by the bandwidth ratio (no --ncu CSV): each kernel's whole duration, "
            f"fixed cost included, scales with the peak bandwidths: too long on a slower GPU, too short on "
            f"a faster one"
            for x in loaded
            if x.bytes_source or specs
        ]
    )
    sections = [("quant-table", table(loaded, projected)), ("kernel classes", class_changes(loaded))]
    by_module = module_changes(loaded, labelled)
    if by_module is None:
        return sections, notes + [CLASSES_NOTE]
    return sections + [("modules", by_module)], notes + [CLASSES_NOTE, MODULES_NOTE]
