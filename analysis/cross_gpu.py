"""Cross-GPU analysis, one entry function per command: `compare` and `project` give the columns, notes and sections
they show, and `plot` takes one per picture (`anatomy_columns`, `fraction_curves`, `step_timeline`); the traces are
loaded and turned into columns by analysis.cross_gpu_columns, and quant-table's entry is
analysis.quant_table.quant_table_sections."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from gapprof.analysis import comparison, fraction_model, projection
from gapprof.analysis.achievable import ASSUMED_FRACTION, DATASHEET_TABLE
from gapprof.analysis.attribution import Options
from gapprof.analysis.cross_gpu_columns import (
    AGGREGATE_SOURCE,
    Loaded,
    kernel_model_parameters,
    load,
    measured_column,
    projected,
    projected_columns,
    replay_notes,
    timeline_panels,
    with_bytes_per_kernel,
)
from gapprof.analysis.findings import FINDINGS_NOTE, findings, findings_table

from gapprof import gpus
from gapprof.errors import GapprofError
from gapprof.gpus import GpuSpec
from gapprof.log import progress


@dataclass(frozen=True)
class Columns:
    """What compare and project show: a column per trace or target, the notes, and the sections after the table."""

    columns: list[comparison.Column]
    notes: list[str]
    sections: list[tuple[str, pl.DataFrame | dict]]  # (title, table), as gapprof.render takes them


def compare(paths: Sequence[Path], options: Options, force: bool) -> Columns:
    """`gapprof compare`: each trace's measured column and findings; traces that differ in model, ctx, runtime or
    attention backend are refused unless force."""
    return compare_loaded(load(paths, options, force), force)


def compare_loaded(loaded: list[Loaded], force: bool) -> Columns:
    """compare's columns of traces already loaded (cross_gpu_columns.load)."""
    notes = comparison.check_match({x.label: x.analysis.frames.trace.meta for x in loaded}, force)
    found = [(f"findings {x.label}", findings_table(findings(x.analysis))) for x in loaded]
    return Columns([measured_column(x) for x in loaded], notes + [FINDINGS_NOTE], found)


def project(
    path: Path,
    targets: Sequence[str],
    knobs: projection.Knobs,
    options: Options,
    force: bool,
    ncu_csv: Path | None = None,
    reference: Path | None = None,
    gpu_profiles: Sequence[Path] = (),
    aggregate: bool = False,
) -> Columns:
    """`gapprof project`: the measured column of the trace at `path`, then one projected to each of `targets` (GPU
    keys, aliases or device names), with the kernel model where bytes per kernel are given (ncu_csv, or reference
    for analytic ones), or with aggregate where they are not (cross_gpu_columns.with_bytes_per_kernel), and a table
    of its parameters."""
    (loaded,) = load([path], options, force)
    loaded = with_bytes_per_kernel(loaded, ncu_csv, reference, options.range_pattern, gpu_profiles, aggregate)
    return project_loaded(loaded, targets, knobs)


def project_loaded(loaded: Loaded, targets: Sequence[str], knobs: projection.Knobs) -> Columns:
    """project's columns of a trace already loaded, with its bytes per kernel where it has them."""
    specs = [gpus.resolve_gpu(t) for t in targets]
    if knobs.graph_launch_ns is not None and projection.launches_graphs(loaded.timeline):
        raise GapprofError(
            f"{loaded.analysis.frames.trace.path}: its steps already launch CUDA graphs; --graphs replaces eager "
            "launches by one graph launch a step"
        )
    if knobs.drop_kernels is not None and loaded.bytes_source == AGGREGATE_SOURCE:
        raise GapprofError(
            f"--drop-kernels {knobs.drop_kernels!r}: the aggregate kernel model shares each step's floor bytes among "
            "its kernels by duration, so dropped kernels would take floor bytes with them; give bytes per kernel "
            "(--ncu or --reference) or pass --bandwidth-ratio"
        )
    columns = [measured_column(loaded)] + [projected(loaded, spec, knobs)[0] for spec in specs]
    notes = [note for note in map(gpus.alias_note, targets) if note] + replay_notes(loaded, knobs)
    if loaded.bytes_source is None:
        return Columns(columns, notes, [])
    table, said = kernel_model_parameters(loaded, specs)
    title = "kernel model (aggregate)" if loaded.bytes_source == AGGREGATE_SOURCE else "kernel model"
    return Columns(columns, notes + said, [(title, table)])


def anatomy_columns(
    paths: Sequence[Path], specs: Sequence[GpuSpec], options: Options, force: bool = False
) -> list[comparison.Column]:
    """`gapprof plot anatomy`: every trace's measured column, then each one's projections to `specs`."""
    loaded = load(paths, options, force)
    # Projected as `project` does without bytes per kernel: the aggregate kernel model.
    modelled = [with_bytes_per_kernel(x, None, None, options.range_pattern, aggregate=True) for x in loaded]
    projections = projected_columns(modelled, specs, projection.Knobs(), progress)
    return [measured_column(x) for x in loaded] + [c for cs in projections.values() for c in cs]


@dataclass(frozen=True)
class FractionCurves:
    """What `gapprof plot fraction` draws (plots.fraction's arguments)."""

    measured: list[comparison.Column]
    projected: dict[str, list[comparison.Column]]
    model: fraction_model.FractionModel | None = None
    unprofiled: dict[str, float] | None = None


def fraction_curves(
    paths: Sequence[Path],
    specs: Sequence[GpuSpec],
    options: Options,
    ncu_csv: Path | None = None,
    reference: Path | None = None,
    gpu_profiles: Sequence[Path] = (),
    force: bool = False,
) -> FractionCurves:
    """`gapprof plot fraction`: every trace measured and projected to `specs`; with bytes per kernel, the first
    trace's kernel model, only its projections, and the unprofiled steps' fractions where the traces recorded
    them."""
    loaded = load(paths, options, force)
    measured = [measured_column(x) for x in loaded]
    if ncu_csv is None and reference is None:
        return FractionCurves(measured, projected_columns(loaded, specs, projection.Knobs(), progress))
    unprofiled = {x.label: fraction_model.unprofiled_fraction(x.analysis) for x in loaded}
    first = with_bytes_per_kernel(loaded[0], ncu_csv, reference, options.range_pattern, gpu_profiles)
    table, said = kernel_model_parameters(first, specs)
    # Every GPU of the table is a target by default: name the source and the measured ones, count the rest.
    how = table["bandwidth"].to_list()
    for i, note in enumerate(said):
        if i == 0 or how[i] == "measured":
            progress(note)
    assumed = [gpu for gpu, h in zip(table["gpu"].to_list()[1:], how[1:]) if h == "assumed"]
    if assumed:
        progress(
            f"kernel model, targets without a GPU profile ({', '.join(assumed)}): bandwidth assumed "
            f"{ASSUMED_FRACTION} x their datasheet peak ({DATASHEET_TABLE}), fixed part kept"
        )
    projections = projected_columns([first], specs, projection.Knobs(), progress)
    model = fraction_model.fraction_model(first.label, first.analysis, first.bytes_ops, first.timeline.profiles)
    return FractionCurves(measured, projections, model, unprofiled)


def step_timeline(path: Path, specs: Sequence[GpuSpec], options: Options, step_index: int, force: bool = False) -> list:
    """`gapprof plot timeline`: timeline_panels of the trace at `path`."""
    return timeline_panels(load([path], options, force)[0], specs, projection.Knobs(), step_index)
