"""What costs a step the most: a short ranked list of findings, each with the milliseconds a step it accounts
for, the evidence in the trace and the knob to try. A finding appears only when its evidence is in the trace.

Each detector reads an attribution.Attribution (measured steps, their ops and API calls) and, where bytes per
kernel are known, the cost table (analysis.kernel_cost): per class, time, bytes moved, achieved bandwidth, floor
and extra traffic. Times are means over the measured steps.
"""

from dataclasses import dataclass

import polars as pl
from gapprof.analysis import api
from gapprof.analysis.attribution import class_table, kernel_table
from gapprof.analysis.summary import cpu_us_per_launch

from gapprof.runtime_table import names

# API calls that load modules or compile code: work that a decode step should not repeat.
SETUP_CALLS = r"^(cuLibraryLoad|cuModuleLoad|cuLink|nvrtc)"
SHORT_KERNEL_NS = 5_000  # a kernel this short is mostly its fixed cost on these GPUs (DESIGN.md)
EXPOSED_CPU_SHARE = 0.2  # starved time above this share of the wall: the step is CPU-bound
CONCENTRATED_SHARE = 0.5  # one class holding this share of the starved time sits behind one cause
LOW_BANDWIDTH_SHARE = 0.5  # a class moving real bytes below this share of peak
BUSY_SHARE = 0.05  # a class or short-kernel group worth naming holds at least this share of busy
COMPILED_RUNTIMES = names(lambda runtime: runtime.compiled)  # steps torch.compile has already fused
NOT_KERNELS = ("memcpy/memset", "cuda graph")  # kernel_table's rows for copies, memsets and whole graph launches
EXTRA_RATIO, EXTRA_SHARE = 1.5, 0.01  # bytes moved / analytic, and the extra time's least share of busy
FINDINGS_NOTE = (
    "findings: each names the ms a step its evidence accounts for; they can overlap (the starved time "
    "before one class may be the wait after a module load), so they do not add up"
)


@dataclass(frozen=True)
class Finding:
    title: str
    ms: float  # per step
    evidence: str
    knob: str


def _ms(ns: float) -> float:
    return ns / 1e6


def _measured_calls(result, pattern: str) -> pl.DataFrame:
    """The measured steps' API calls whose name matches `pattern`, named."""
    return result.measured_only(
        api.calls_where(result.calls, result.frames.strings, pl.col("name").str.contains(pattern))
    )


def setup_in_step(result) -> Finding | None:
    """Module loads or compilation inside the measured steps, and the GPU idle gap that follows each (the next op's
    gap)."""
    setup = _measured_calls(result, SETUP_CALLS).sort("end")
    if setup.is_empty():
        return None
    ops = result.measured_only(result.ops).sort("start")
    following = setup.join_asof(
        ops.select("step", "start", "gap", "starved"),
        left_on="end",
        right_on="start",
        by="step",
        strategy="forward",
        check_sortedness=False,
    )
    waited = following.filter(pl.col("starved").fill_null(False))["gap"].sum() / result.measured.height
    names = ", ".join(sorted(setup["name"].unique()))
    return Finding(
        "module loading or compilation inside each step",
        _ms(waited),
        f"{setup.height / result.measured.height:.1f} {names} call(s) a step; the GPU then waits "
        f"{_ms(waited):.2f} ms for its next op",
        "work prepared per new shape (an attention backend that plans per KV length, a JIT): force "
        "another SDPA backend, use a static KV cache, or warm every length up before timing",
    )


def starved_before_one_class(result, classes: pl.DataFrame) -> Finding | None:
    """Most of the starved time right before the kernels of one class."""
    measured = result.measured
    starved_us = measured["starved"].mean() / 1000
    if starved_us < EXPOSED_CPU_SHARE * measured["wall"].mean() / 1000:
        return None
    top = classes.sort("starved_before_us_per_step", descending=True).row(0, named=True)
    # Concentrated: much of the wait before a class that holds few of the kernels (not the only class there is).
    if (
        top["starved_before_us_per_step"] < CONCENTRATED_SHARE * starved_us
        or top["calls_per_step"] > CONCENTRATED_SHARE * classes["calls_per_step"].sum()
    ):
        return None
    return Finding(
        f"GPU waits before the {top['class']} kernels",
        top["starved_before_us_per_step"] / 1000,
        f"{top['starved_before_us_per_step'] / 1000:.2f} of the {starved_us / 1000:.2f} ms starved a "
        f"step end at {top['calls_per_step']:.0f} {top['class']} kernels",
        "look at the CPU work just before them (the API table, `--by module` on a trace captured with --modules)",
    )


def host_syncs(result) -> Finding | None:
    """More than one synchronising call a step (the step's own token copy needs one): all but the last cost."""
    syncs = _measured_calls(result, "Synchronize").sort("step", "start")
    per_step = syncs.height / result.measured.height
    if per_step <= 1:
        return None
    extra = syncs.filter(pl.int_range(pl.len()).over("step") < pl.len().over("step") - 1)
    blocked = (extra["end"] - extra["start"]).sum() / result.measured.height
    return Finding(
        "host synchronisation inside the step",
        _ms(blocked),
        f"{per_step:.1f} synchronising calls a step ({', '.join(sorted(syncs['name'].unique()))}); "
        f"those before the last block {_ms(blocked):.3f} ms",
        "keep values on the GPU until the step's end (no .item(), no host-side checks mid-step)",
    )


def short_kernels(result) -> Finding | None:
    """Many kernels too short to reach bandwidth: their time is mostly fixed cost."""
    duration = pl.col("end") - pl.col("start")
    kernel = (pl.col("kind") == "kernel") & pl.col("step").is_in(result.measured["step"].implode())
    short = kernel & (duration < SHORT_KERNEL_NS)
    # Counted in one pass over the ops, none of them copied.
    kernels, shorts, short_ns = result.ops.select(
        kernel.sum().alias("kernels"), short.sum().alias("short"), duration.filter(short).sum().alias("short_ns")
    ).row(0)
    busy = result.measured["busy"].mean()
    n = result.measured.height
    time = short_ns / n
    if time < BUSY_SHARE * busy or shorts < kernels / 2:
        return None
    fused = result.frames.meta.get("runtime") in COMPILED_RUNTIMES
    knob = (
        "fewer kernels than the compiler leaves: one kernel over several matrix products or layers (a persistent "
        "kernel, as a megakernel does)"
        if fused
        else "fewer kernels: fused norms and activations, one GEMV for q/k/v and for gate/up, torch.compile"
    )
    return Finding(
        "many short kernels, each with a fixed cost",
        _ms(time),
        f"{shorts / n:,.0f} of {kernels / n:,.0f} kernels a step run under "
        f"{SHORT_KERNEL_NS / 1000:.0f} us and take {_ms(time):.2f} ms of the {_ms(busy):.2f} ms busy",
        f"{knob}; no bandwidth buys this time back",
    )


def kernel_over_floor(result) -> Finding | None:
    """One kernel (by name) that takes longer a step than the whole step's floor. No bytes per kernel are needed:
    at peak bandwidth it would have to move more than the step must, so it runs below bandwidth or re-reads. Its
    time above the floor is a lower bound on its excess."""
    if result.floor is None:
        return None
    kernel_rows = kernel_table(result).filter(~pl.col("class").is_in(NOT_KERNELS))  # longest first
    if kernel_rows.is_empty():
        return None
    top = kernel_rows.row(0, named=True)
    time, calls, floor = top["us_per_step"] * 1000, top["calls_per_step"], result.measured["floor"].mean()
    if time <= floor:
        return None
    peak = result.floor.bandwidths[result.floor.primary][0]
    counted = "1 call a step takes" if calls == 1 else f"{calls:,.0f} calls a step take"
    return Finding(
        "one kernel takes longer than the step's whole floor",
        _ms(time - floor),
        f"{top['name']}: {counted} {_ms(time):.2f} ms, "
        f"{time / floor:.1f}x the floor of the whole step ({_ms(floor):.2f} ms at {peak:,.0f} GB/s)",
        "measure its bytes (`gapprof ncu`, then `attribute --ncu`) and look for another kernel: one "
        "that dequantises or converts before it multiplies, or one tuned for other shapes, shows here",
    )


def exposed_cpu(result) -> Finding | None:
    """A CPU-bound step: the GPU waits for launches most of the time."""
    measured = result.measured
    starved, wall = measured["starved"].mean(), measured["wall"].mean()
    if starved < EXPOSED_CPU_SHARE * wall:
        return None
    cpu_us = cpu_us_per_launch(measured) or 0
    return Finding(
        "GPU starved by the CPU's launches",
        _ms(starved),
        f"{starved / wall:.0%} of the step the GPU waits for the next launch; "
        f"{measured['launch_calls'].mean():,.0f} launch calls a step, {cpu_us:.1f} us of CPU each",
        "launch the whole step at once: CUDA Graphs (runtime graphs) or torch.compile reduce-overhead",
    )


def low_bandwidth_classes(cost: pl.DataFrame, peak: float) -> list[Finding]:
    """Classes that move real bytes far below peak bandwidth (from the cost table, bytes per kernel known)."""
    classes = cost.filter(pl.col("class") != cost["class"][0])  # the first row is the step total
    total_mb, busy_us = cost["mb_per_step"][0], cost["time_us"][0]
    slow = classes.filter(
        (pl.col("mb_per_step") >= 0.005 * total_mb)
        & (pl.col("time_us") >= BUSY_SHARE * busy_us)
        & (pl.col("achieved_gbps") < LOW_BANDWIDTH_SHARE * peak)
    )
    return [
        Finding(
            f"{row['class']} far below bandwidth",
            (row["shortfall_us"] + row["fixed_us"]) / 1000,
            f"{row['mb_per_step']:,.1f} MB a step at {row['achieved_gbps']:,.0f} GB/s "
            f"({row['achieved_gbps'] / peak:.0%} of peak) in {row['time_us'] / 1000:.2f} ms",
            "larger or fused kernels for this class (more bytes per launch), or fewer copies",
        )
        for row in slow.iter_rows(named=True)
    ]


def extra_traffic(cost: pl.DataFrame, peak: float) -> list[Finding]:
    """Classes that move more bytes than the step must (measured against analytic bytes)."""
    if "floor_us" not in cost.columns:
        return []
    classes = cost.filter(pl.col("class") != cost["class"][0])
    moved_over_analytic = pl.col("at_peak_us") / pl.col("floor_us")
    heavy = classes.filter(
        (pl.col("floor_us") > 0)
        & (moved_over_analytic >= EXTRA_RATIO)
        & (pl.col("extra_us") >= EXTRA_SHARE * cost["time_us"][0])
    )
    return [
        Finding(
            f"{row['class']} moves more than its analytic bytes",
            row["extra_us"] / 1000,
            f"{row['mb_per_step']:,.1f} MB a step where the analytic bytes are "
            f"{row['floor_us'] * peak / 1000:,.1f} MB ({row['at_peak_us'] / row['floor_us']:.1f}x)",
            "read each K and V head once for its query group (no expansion to every head), avoid "
            "re-reads and copies of the cache",
        )
        for row in heavy.iter_rows(named=True)
    ]


def findings(result, cost: pl.DataFrame | None = None) -> list[Finding]:
    """Every finding whose evidence is in the trace, largest first."""
    found = [
        setup_in_step(result),
        starved_before_one_class(result, class_table(result)),
        host_syncs(result),
        short_kernels(result),
        kernel_over_floor(result),
        exposed_cpu(result),
    ]
    if cost is not None and result.floor is not None:
        peak = result.floor.bandwidths[result.floor.primary][0]
        found += low_bandwidth_classes(cost, peak) + extra_traffic(cost, peak)
    return sorted((f for f in found if f is not None), key=lambda f: f.ms, reverse=True)


def findings_table(found: list[Finding]) -> dict:
    """The ranked list as a key/value table: rank, title and ms -> evidence and knob."""
    return {f"{i}. {f.title} ({f.ms:.2f} ms a step)": f"{f.evidence}. Try: {f.knob}." for i, f in enumerate(found, 1)}
