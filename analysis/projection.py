"""Projection of a trace to another GPU: rescale its GPU op durations, optionally collapse its launches into
one graph launch, and replay the launch timeline (analysis.replay).

Duration model: an op that works in DRAM (kernel, memset, device-to-device copy) lasts
    (min(d, fixed) + max(d - fixed, 0) * source peak / target peak) * class scale,
so with fixed = 0 every such op scales with 1 / datasheet bandwidth and a fixed per-kernel cost (`fixed`)
stays constant; host<->device copies cross PCIe and keep their duration (times their class scale).

Kernel model (a timeline `with_kernel_bytes`, issue 11): a kernel of b bytes and duration d has its bytes' time
t = b / R_s at the source's achievable bandwidth R_s and the fixed part d - t (kernel_cost.with_fixed); on the
target, of achievable bandwidth R_t, it lasts
    (f x (d - t) + b / R_t) * class scale = (d + t * (ratio - 1) + (d - t) * (f - 1)) * class scale,
ratio = R_s / R_t, at least 0 (a kernel faster than its bytes at R_s has a negative fixed part). R and the fixed
cost per kernel come from each GPU's profile where it has one, else R = 0.9 x its datasheet peak
(analysis.achievable; R_s as achievable.reference_bandwidth takes it, so that the fixed part is the one
`attribute --ncu` shows); f = target / source fixed cost per kernel where both are measured, else 1. With neither
GPU measured, ratio = source peak / target peak. On the source GPU ratio = f = 1 and the duration is d exactly.
Memcpys and memsets keep the rule above.
"""

import math
from dataclasses import dataclass, field, replace

import polars as pl
from gapprof.analysis import anatomy, replay
from gapprof.analysis.achievable import fixed_scale, of_target, reference_bandwidth
from gapprof.analysis.attribution import Attribution
from gapprof.analysis.floor import apply_floor
from gapprof.analysis.kernels import CLASSES
from gapprof.analysis.launch_timeline import DTOD, Timeline
from gapprof.analysis.regex import regex_error

from gapprof.errors import GapprofError
from gapprof.gpus import GpuSpec

# Ops that work in device memory (and can sit in a CUDA graph): kernels, memsets, device-to-device copies.
IN_DRAM = (pl.col("kind") != "memcpy") | (pl.col("copyKind") == DTOD)


@dataclass(frozen=True)
class Knobs:
    launch_cost_scale: float = 1.0  # x the step thread's CPU time: think time, call durations, in-call latency
    graph_launch_ns: int | None = None  # None: launches as captured; else one graph launch of this CPU cost
    kernel_scale: dict = field(default_factory=dict)  # kernel class -> extra duration factor
    fixed_ns: int = 0  # per-op time that does not scale with bandwidth
    drop_kernels: str | None = None  # a kernel class, or a regular expression on kernel names: those kernels go


# The largest what-if value (a factor, or µs): far past any question worth asking, and it keeps every replayed time
# well inside 64-bit ns (a factor of 1e300 overflowed them).
WHAT_IF_MAX = 1e6


def check_what_if(values: dict[str, float | None]) -> None:
    """Refuse a what-if value (flag -> value) that is infinite, NaN or above WHAT_IF_MAX: click's number ranges let
    them through."""
    for flag, value in values.items():
        if value is not None and not (math.isfinite(value) and value <= WHAT_IF_MAX):
            raise GapprofError(f"{flag} {value}: a what-if value must be a finite number up to {WHAT_IF_MAX:,.0f}")


def parse_kernel_scale(items: tuple[str, ...]) -> dict:
    """CLASS=X pairs, X > 0 and finite."""
    scales = {}
    for item in items:
        cls, sep, value = item.partition("=")
        if not sep or cls not in CLASSES:
            raise GapprofError(f"--kernel-scale {item!r}: expected CLASS=X with CLASS one of {', '.join(CLASSES)}")
        try:
            scales[cls] = float(value)
        except ValueError:
            raise GapprofError(f"--kernel-scale {item!r}: {value!r} is not a number") from None
        if not (math.isfinite(scales[cls]) and 0 < scales[cls] <= WHAT_IF_MAX):
            raise GapprofError(
                f"--kernel-scale {item!r}: the factor must be a finite number > 0, up to {WHAT_IF_MAX:,.0f}"
            )
    return scales


def check_drop_kernels(what: str | None) -> None:
    """Refuse a --drop-kernels value that is neither a kernel class nor a valid regular expression."""
    if what is None or what in CLASSES:
        return
    error = regex_error(what)
    if error is not None:
        raise GapprofError(
            f"--drop-kernels {what!r}: neither a kernel class ({', '.join(CLASSES)}) nor a regular expression ({error})"
        )


def without_kernels(timeline: Timeline, what: str) -> Timeline:
    """The timeline without the kernels of class `what` (or, if it is no class, whose name matches the regular
    expression `what`), as if their work were folded into the kernels around them at no cost: their time and the
    gap before each go. The calls that launched them stay (in a CUDA graph there is one call for all its nodes)."""
    matches = pl.col("class").cast(pl.String) == what if what in CLASSES else pl.col("name").str.contains(what)
    dropped = (pl.col("kind") == "kernel") & matches
    left = timeline.ops.filter(~dropped)
    if left.height == timeline.ops.height:
        raise GapprofError(
            f"--drop-kernels {what!r}: no kernel of the measured steps is of that class or has a matching name "
            f"(classes: {', '.join(CLASSES)}; `gapprof attribute --tables kernels` lists the names)"
        )
    if left.filter(pl.col("kind") == "kernel").is_empty():
        raise GapprofError(f"--drop-kernels {what!r}: it matches every kernel of the measured steps")
    return replace(timeline, ops=left)


def source_bandwidth(analysis: Attribution) -> float:
    """The captured GPU's datasheet bandwidth (GB/s), which the target's is compared with."""
    if analysis.floor is None or "datasheet" not in analysis.floor.bandwidths:
        raise GapprofError(
            f"{analysis.frames.trace.path}: no datasheet bandwidth for the captured GPU "
            f"({analysis.device_name or 'unnamed'}); project needs it to rescale kernels"
        )
    return analysis.floor.bandwidths["datasheet"][0]


def with_kernel_bytes(
    analysis: Attribution, timeline: Timeline, ops: pl.DataFrame, profiles: dict | None = None
) -> Timeline:
    """timeline whose kernels carry `bytes_ns`, their bytes' time at the source's achievable bandwidth (the kernel
    model); ops: the measured ops with `bytes` (kernel_bytes.KernelBytes.ops); profiles: GPU key ->
    gapprof.gpu_profile.Found."""
    source_bandwidth(analysis)  # the kernel model rescales to other GPUs: the source's datasheet entry is needed
    reference_gbps = reference_bandwidth(analysis, profiles or {}).gbps
    # bytes per ns is GB/s; memcpys and memsets carry 0 bytes there but keep their own rule here.
    bytes_ns = pl.when(pl.col("kind") == "kernel").then(pl.col("bytes") / reference_gbps)
    timed = timeline.ops.join(ops.select("op", bytes_ns=bytes_ns), on="op", how="left")
    missing = timed.filter((pl.col("kind") == "kernel") & pl.col("bytes_ns").is_null()).height
    if missing:
        raise GapprofError(f"{missing} kernels of the measured steps have no bytes; the kernel model needs them all")
    return replace(timeline, ops=timed, profiles=profiles or {})


def durations(ops: pl.DataFrame, ratio: float, knobs: Knobs, kernel: tuple[float, float] | None = None) -> pl.Series:
    """New duration (ns, float) of each op: ratio = source peak / target peak; kernels with `bytes_ns` take the
    kernel model, kernel = (R_s / R_t, f) (default (ratio, 1))."""
    fixed = pl.min_horizontal("dur", pl.lit(knobs.fixed_ns))
    scaled = pl.when(IN_DRAM).then(fixed + (pl.col("dur") - fixed) * ratio).otherwise(pl.col("dur").cast(pl.Float64))
    if "bytes_ns" in ops.columns:
        bytes_ratio, f = kernel or (ratio, 1.0)
        model = pl.col("dur") + pl.col("bytes_ns") * (bytes_ratio - 1)
        if f != 1.0:
            model = model + (pl.col("dur") - pl.col("bytes_ns")) * (f - 1)
        model = model.clip(lower_bound=0)
        scaled = pl.when(pl.col("bytes_ns").is_not_null()).then(model).otherwise(scaled)
    factor = pl.col("class").cast(pl.String).replace_strict(knobs.kernel_scale, default=1.0, return_dtype=pl.Float64)
    return ops.select(new=scaled * factor)["new"]


def as_graph(timeline: Timeline, launch_ns: int) -> Timeline:
    """Each step's launches before its first blocking call, from the first to the last call that launched only
    graph-capturable work (kernels, memsets, device-to-device copies), become one graph launch of `launch_ns`
    CPU time at the first one's place; the calls and think time between them go. Its nodes start after the
    typical launch latency, each queued behind the one before (a starved op gets the typical queued gap)."""
    ops, calls = timeline.ops, timeline.calls
    by_call = ops.group_by("step", "seq").agg(capturable=IN_DRAM.all())
    first_block = calls.filter("blocking").group_by("step").agg(block=pl.col("seq").min())
    region = (
        by_call.join(first_block, on="step", how="left")
        .filter(pl.col("capturable") & (pl.col("seq") < pl.col("block").fill_null(pl.col("seq") + 1)))
        .group_by("step")
        .agg(first=pl.col("seq").min(), last=pl.col("seq").max())
    )
    calls = calls.join(region, on="step", how="left")
    inside = pl.col("seq").is_between("first", "last")
    calls = calls.filter(~inside.fill_null(False) | (pl.col("seq") == pl.col("first"))).with_columns(
        pl.when(pl.col("seq") == pl.col("first"))
        .then(pl.struct(dur=pl.lit(launch_ns), post=pl.lit(launch_ns), blocking=pl.lit(False)))
        .otherwise(pl.struct("dur", "post", "blocking"))
        .struct.unnest()
    )
    ops = ops.join(region, on="step", how="left")
    node = inside.fill_null(False)
    ops = ops.with_columns(
        seq=pl.when(node).then("first").otherwise("seq"),
        lat=pl.when(node).then(pl.lit(timeline.launch_latency)).otherwise("lat"),
        gap=pl.when(node & ~pl.col("queued"))
        .then(pl.min_horizontal("gap", pl.lit(timeline.queued_gap)))
        .otherwise("gap"),
    )
    # The replay walks calls by position, so renumber both sides densely.
    calls = calls.drop("first", "last").sort("step", "seq").with_columns(new=pl.int_range(pl.len()).over("step"))
    ops = (
        ops.drop("first", "last")
        .join(calls.select("step", "seq", "new"), on=["step", "seq"])
        .with_columns(seq="new")
        .drop("new")
        .sort("step", "seq", "start", "op")
    )
    return replace(timeline, calls=calls.with_columns(seq="new").drop("new"), ops=ops)


def kernel_rates(analysis: Attribution, target: GpuSpec, profiles: dict) -> tuple[float, float]:
    """(R_s / R_t, f) of the kernel model from `analysis`'s GPU to `target` (see the module docstring)."""
    source = reference_bandwidth(analysis, profiles)
    there = of_target(target, profiles)
    if not source.measured and there.profile is None:
        # The assumed-only model in its own arithmetic, so that its figures stay exactly as they were.
        return source_bandwidth(analysis) / target.peak_gbps, 1.0
    return source.gbps / there.gbps, fixed_scale(source.parameters, there)


def replayed(
    analysis: Attribution, timeline: Timeline, target: GpuSpec, knobs: Knobs
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(steps, calls, gpu) frames of the timeline replayed on `target` (see replay.replay); a timeline
    `with_kernel_bytes` takes the kernel model, with its GPU profiles."""
    ratio = source_bandwidth(analysis) / target.peak_gbps
    kernel = kernel_rates(analysis, target, timeline.profiles) if "bytes_ns" in timeline.ops.columns else None
    if knobs.graph_launch_ns is not None:
        timeline = as_graph(timeline, knobs.graph_launch_ns)
    if knobs.drop_kernels is not None:
        timeline = without_kernels(timeline, knobs.drop_kernels)
    replay_steps = replay.replay_on_gpu if analysis.frames.on_gpu else replay.replay
    return replay_steps(timeline, durations(timeline.ops, ratio, knobs, kernel), knobs.launch_cost_scale)


def with_target_floor(table: pl.DataFrame, analysis: Attribution, target: GpuSpec) -> pl.DataFrame:
    """The floor of each replayed step against the target's datasheet bandwidth."""
    target_floor = replace(
        analysis.floor, bandwidths={"datasheet": (float(target.peak_gbps), f"{target.label} datasheet")}
    )
    return apply_floor(table, target_floor, pl.col("ctx"))


def project(analysis: Attribution, timeline: Timeline, target: GpuSpec, knobs: Knobs) -> pl.DataFrame:
    """The replayed per-step table on `target`, with the floor against its datasheet bandwidth. What-ifs that
    leave kernel time below the floor, in a trace whose measured steps are above theirs, are refused: the bytes of a
    dropped or shortened kernel still have to move."""
    table = anatomy.step_anatomy(*replayed(analysis, timeline, target, knobs), analysis.frames.on_gpu)[0]
    table = with_target_floor(table, analysis, target)
    shortened = knobs.drop_kernels is not None or any(scale < 1 for scale in knobs.kernel_scale.values())
    above = "floor" in table.columns and analysis.measured.select((pl.col("busy") >= pl.col("floor")).all()).item()
    below = table.filter(pl.col("busy") < pl.col("floor")).height if shortened and above else 0
    if below:
        raise GapprofError(
            f"the what-ifs (--drop-kernels, --kernel-scale below 1) leave the kernel time of {below:,} of "
            f"{table.height:,} steps on {target.key} below their DRAM floor: the bytes of the kernels dropped or "
            "shortened still have to move; drop or shorten kernels that move few of them"
        )
    return table


def launches_graphs(timeline: Timeline) -> bool:
    """Whether the measured steps launch CUDA graphs (cudaGraphLaunch and its driver twin)."""
    return bool(timeline.calls["name"].str.contains("GraphLaunch").any())
