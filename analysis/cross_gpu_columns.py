"""From trace paths to the columns `compare`, `project`, `plot` and `quant-table` show: each trace through
attribution.analyze (the attribution `attribute` uses), its floor overrides checked against the capture, with its
launch timeline and, given bytes per kernel (an ncu CSV, or a reference trace for analytic ones), the kernel model;
then its measured column, its projected ones, replay notes and timeline panels. analysis.cross_gpu puts them
together per command."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
from gapprof.analysis import anatomy, comparison, launch_timeline, projection
from gapprof.analysis.achievable import ASSUMED_FRACTION, DATASHEET_TABLE, of_target, parameters, reference_bandwidth
from gapprof.analysis.attribution import Attribution, Options, analyze
from gapprof.analysis.kernel_bytes import aggregate_bytes
from gapprof.analysis.kernel_cost import bytes_per_kernel
from gapprof.analysis.plausibility import problems

from gapprof import gpu_profile
from gapprof.errors import GapprofError
from gapprof.gpus import GpuSpec
from gapprof.log import progress
from gapprof.nvtx_names import MODULE_PREFIX
from gapprof.paths import strip_extension

KERNEL_MODEL_NOTE = (
    "kernel model: each kernel takes its fixed part from the trace (duration - bytes at the source's achievable "
    "bandwidth), times target / source fixed cost per kernel where both GPUs have a measured profile (else kept), "
    "plus its bytes at the target's achievable bandwidth, instead of the bandwidth ratio above (memcpys and memsets "
    "keep it); the 'kernel model' table and a note per GPU say which parameters were measured (GPU profile file "
    f"and date) and which assumed ({ASSUMED_FRACTION} x the datasheet peak of {DATASHEET_TABLE}: what the copy "
    "benchmark recorded at capture reaches on the shipped H100 traces, 0.90 x datasheet)"
)

AGGREGATE_SOURCE = (
    "aggregate: no ncu CSV and no module ranges, so each step's floor bytes spread over its kernels by "
    "duration (--bandwidth-ratio: every kernel scaled by the datasheet ratio instead)"
)


@dataclass(frozen=True)
class Loaded:
    label: str
    analysis: Attribution
    timeline: launch_timeline.Timeline
    # With the kernel model: the measured ops with their bytes (kernel_bytes), and where the bytes come from.
    bytes_ops: pl.DataFrame | None = None
    bytes_source: str | None = None


def labels(paths: list[Path]) -> list[str]:
    """File names without their extension, made unique by their folder when names repeat."""
    names = [strip_extension(Path(p)).name for p in paths]
    return [f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def load(paths: Sequence[Path], options: Options, force: bool = False) -> list[Loaded]:
    """Analyze every trace, labelled by `labels`. The floor overrides of `options` (--model, --ctx, --dtype) are
    refused where they contradict a capture's metadata or put the floor above busy (as in `attribute`), unless
    force."""
    progress(f"analyzing {', '.join(map(str, paths))}")
    out = []
    for label, path in zip(labels(paths), paths):
        analysis = analyze(Path(path), options)
        if analysis.floor is None:
            raise GapprofError(
                f"{path}: no floor (no gapprof metadata): pass the model and the context at its "
                "first measured step, --model and --ctx"
            )
        out.append(Loaded(label, analysis, launch_timeline.build(analysis)))
    overrides = dict(model=options.model, ctx=options.ctx, dtype=options.dtype)
    if any(v is not None for v in overrides.values()) and not force:
        wrong = [f"{x.label}: {problem}" for x in out for problem in problems(x.analysis, **overrides)]
        if wrong:
            raise GapprofError("; ".join(wrong) + "; --force uses them anyway")
    return out


def analyze_reference(reference: Path | None, range_pattern: str) -> Attribution | None:
    """The --reference trace (a `capture --modules` one) analysed, or None without one."""
    return analyze(reference, Options(range_pattern=range_pattern), progress) if reference else None


def with_bytes_per_kernel(
    loaded: Loaded,
    ncu_csv: Path | None,
    reference: Path | None,
    range_pattern: str,
    gpu_profiles: Sequence[Path] = (),
    aggregate: bool = False,
) -> Loaded:
    """loaded with the kernel model when bytes per kernel are given (--ncu, or --reference for analytic ones), with
    the shipped GPU profiles and --gpu-profile's; without them, with aggregate, the kernel model over the trace's
    own module ranges where it has them, else over the floor's bytes (kernel_bytes.aggregate_bytes)."""
    if ncu_csv is None and reference is None and not aggregate:
        return loaded
    profiles = gpu_profile.profiles(gpu_profiles)
    if ncu_csv is None and reference is None:
        if not has_module_ranges(loaded.analysis):
            return with_aggregate_model(loaded, profiles)
        return with_kernel_model(loaded, None, loaded.analysis, profiles)
    return with_kernel_model(loaded, ncu_csv, analyze_reference(reference, range_pattern), profiles)


def has_module_ranges(analysis: Attribution) -> bool:
    return bool(analysis.frames.ranges["message"].str.starts_with(MODULE_PREFIX).any())


def with_aggregate_model(loaded: Loaded, profiles: dict) -> Loaded:
    """loaded whose projections use the kernel model over each step's floor bytes (kernel_bytes.aggregate_bytes)."""
    found = aggregate_bytes(loaded.analysis)
    timeline = projection.with_kernel_bytes(loaded.analysis, loaded.timeline, found.ops, profiles)
    return replace(loaded, timeline=timeline, bytes_ops=found.ops, bytes_source=AGGREGATE_SOURCE)


def with_kernel_model(
    loaded: Loaded, ncu_csv: Path | None, reference: Attribution | None = None, profiles: dict | None = None
) -> Loaded:
    """loaded whose projections use the kernel model (projection.with_kernel_bytes), with bytes measured by the ncu
    CSV, else analytic from `reference`'s module labels; profiles: GPU key -> gapprof.gpu_profile.Found (the GPUs
    without one take assumed parameters)."""
    found = bytes_per_kernel(loaded.analysis, ncu_csv, reference)
    if found.ops is None:
        raise GapprofError(
            f"{loaded.label}: the ncu CSV's kernels and the trace's do not match one for one; "
            "`gapprof attribute --ncu` lists what did not match"
        )
    source = found.facts["bytes per kernel"].split(":")[0]
    matched = f", {found.facts['kernels matched per step']:,.0f} kernels a step matched" if ncu_csv else ""
    timeline = projection.with_kernel_bytes(loaded.analysis, loaded.timeline, found.ops, profiles)
    return replace(
        loaded,
        timeline=timeline,
        bytes_ops=found.ops,
        bytes_source=f"{source} ({ncu_csv or reference.frames.trace.path}{matched})",
    )


def kernel_model_parameters(loaded: Loaded, targets: list[GpuSpec]) -> tuple[pl.DataFrame, list[str]]:
    """The kernel model's parameters of the source GPU and each target, and a note per GPU saying which were
    measured (profile file and date) and which assumed (analysis.achievable.parameters)."""
    profiles = loaded.timeline.profiles
    source = reference_bandwidth(loaded.analysis, profiles)
    return parameters(source.parameters, [of_target(t, profiles) for t in targets], (source.gbps, source.says()))


def unprofiled_ms(loaded: Loaded) -> float | None:
    """Mean of the capture's unprofiled steps (its metadata), or None for a trace without them."""
    steps = loaded.analysis.frames.meta.get("unprofiled_step_ms")
    return sum(steps) / len(steps) if steps else None


def observer_effect_ms(loaded: Loaded) -> float | None:
    """Mean profiled wall of the measured steps less the mean unprofiled step: what the profiler added."""
    plain = unprofiled_ms(loaded)
    return loaded.timeline.steps["wall"].mean() / 1e6 - plain if plain is not None else None


def measured_column(loaded: Loaded) -> comparison.Column:
    bandwidths = loaded.analysis.floor.bandwidths
    gpu = (
        bandwidths["datasheet"][1].removesuffix(" datasheet")
        if "datasheet" in bandwidths
        else loaded.analysis.device_name or "?"
    )
    return comparison.column(
        loaded.label,
        gpu,
        bandwidths.get("datasheet", (None,))[0],
        bandwidths.get("copy", (None,))[0],
        loaded.timeline.steps,
        unprofiled_ms(loaded),
    )


def projected(loaded: Loaded, target: GpuSpec, knobs: projection.Knobs) -> tuple[comparison.Column, pl.DataFrame]:
    """(column, replayed per-step table) of `loaded` projected to `target`. The unprofiled estimate is the
    projected wall less the source's observer effect: the replay keeps the source's CPU time and launch
    latencies, where the profiler's cost sits, so it carries that effect over. That cost is never kernel time,
    so no more than the projected wall less busy is taken off."""
    table = projection.project(loaded.analysis, loaded.timeline, target, knobs)
    effect = observer_effect_ms(loaded)
    wall, busy = table["wall"].mean() / 1e6, table["busy"].mean() / 1e6
    plain = wall - min(effect, wall - busy) if effect is not None else None
    column = comparison.column(
        f"{loaded.label} on {target.key} (projected)",
        f"{target.label} (projected)",
        float(target.peak_gbps),
        None,
        table,
        plain,
        replayed=True,
    )
    return column, table


def projected_columns(
    loaded: list[Loaded],
    targets: list[GpuSpec],
    knobs: projection.Knobs,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, list[comparison.Column]]:
    """Label of each trace -> its columns projected to each of `targets`, in order; one progress line a trace
    when there are targets."""
    out = {}
    for x in loaded:
        if targets:
            progress(f"projecting {x.label} to {', '.join(t.key for t in targets)}")
        out[x.label] = [projected(x, target, knobs)[0] for target in targets]
    return out


def replay_notes(loaded: Loaded, knobs: projection.Knobs) -> list[str]:
    tl = loaded.timeline
    notes = [
        f"{loaded.label}: replay with typical launch latency {tl.launch_latency / 1e3:.1f} us and queued gap "
        f"{tl.queued_gap / 1e3:.2f} us (medians of the trace); kernels, memsets and device copies scale with "
        f"source/target datasheet bandwidth above a fixed {knobs.fixed_ns / 1e3:g} us per op, host copies "
        f"keep their duration; CPU time x{knobs.launch_cost_scale:g}"
    ]
    effect = observer_effect_ms(loaded)
    if effect is not None:
        notes.append(
            f"unprofiled wall: measured, the mean of the capture's unprofiled steps; projected, the "
            f"projected wall less {loaded.label}'s observer effect ({effect:.3f} ms: mean profiled wall "
            f"less mean unprofiled step; at most the projected wall less busy), which the replay carries "
            f"over in the CPU time and launch latencies it keeps; where the target's kernels hide that "
            f"CPU time (a GPU-bound step), the estimate is low by up to that effect"
        )
    if loaded.bytes_source is not None:
        notes.append(KERNEL_MODEL_NOTE + f"; bytes per kernel {loaded.bytes_source}")
    if knobs.graph_launch_ns is not None:
        notes.append(f"--graphs: each step's launches become one graph launch of {knobs.graph_launch_ns / 1e3:g} us")
    if knobs.kernel_scale:
        notes.append("--kernel-scale: " + ", ".join(f"{k} x{v:g}" for k, v in knobs.kernel_scale.items()))
    if knobs.drop_kernels is not None:
        notes.append(
            f"--drop-kernels {knobs.drop_kernels!r}: the projections run without those kernels, as if folded into "
            "the kernels around them at no cost (their time, their bytes and the gap before each go; their launch "
            "calls stay)"
        )
    return notes


def timeline_panels(loaded: Loaded, specs, knobs, step_index: int) -> list:
    """(title, calls, ops, t0, t1) of the chosen measured step, captured and replayed on each target; step_index
    counts the measured steps from 0 (warm-up excluded), and the title says so."""
    tl = loaded.timeline
    count = tl.steps.height
    if step_index >= count:
        raise GapprofError(f"--step {step_index}: the trace has {count} measured steps")
    step, t0, t1 = tl.steps.sort("step").select("step", "t0", "t1").row(step_index)
    analysis = loaded.analysis
    ops = analysis.ops.filter(pl.col("step") == step)
    calls = tl.calls.filter(pl.col("step") == step)
    gpu_name = measured_column(loaded).values["gpu"]
    panels = [
        (
            f"{loaded.label}: measured step {step_index} (of 0-{count - 1}, warm-up excluded) on {gpu_name}, "
            f"wall {(t1 - t0) / 1e6:.2f} ms",
            calls,
            ops,
            t0,
            t1,
        )
    ]
    for spec in specs:
        new_steps, new_calls, new_gpu = projection.replayed(analysis, tl, spec, knobs)
        one = new_steps.filter(pl.col("step") == step)
        _, new_ops, _ = anatomy.step_anatomy(one, new_calls, new_gpu, analysis.frames.on_gpu)
        categories = calls.select("correlationId", "category")
        shown = (
            new_calls.join(one.select("globalTid", "t0", "t1"), on="globalTid")
            .filter(pl.col("start").is_between("t0", "t1"))
            .join(categories, on="correlationId", how="left")
        )
        new_t1 = one["t1"][0]
        panels.append(
            (f"replayed on {spec.label} (projected), wall {(new_t1 - t0) / 1e6:.2f} ms", shown, new_ops, t0, new_t1)
        )
    return panels
