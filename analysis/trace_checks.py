"""Checks that a trace is whole enough to attribute. Each check counts what it finds: where that would make the
step anatomy wrong, the trace is refused with a one-line GapprofError giving the count; otherwise the count goes
to the facts table. So anatomy.IdentityError stays the sign of a bug in the anatomy, never of a damaged trace.

Refused:
- any interval that ends before it starts, or any negative timestamp, among the NVTX ranges, the step threads'
  API calls and the GPU ops: nsys counts ns from the session start and CUPTI from its own epoch, so either is
  damage, and clipping to a step would drop such work silently or break the identity;
- any GPU op without a launch call (no runtime or driver call of its process, on any thread, carries its
  correlationId) that starts inside a measured step's range in the step's process: that step's busy time
  would lack its work. With steps of one process overlapping in time, the op is checked against the step
  that began last before it;
- measured steps none of which ran a kernel: busy would be copies alone and excess negative.
Counted only (facts table):
- GPU ops without a launch call, trace-wide: outside the measured steps they change no measured term;
- open NVTX ranges (pushed or started, never ended, such as a step cut off by the end of the capture): left
  out of the ranges, so a step never closed is no step;
- capture metadata values that are not JSON: left out by readers.nsys.parse_meta, with a note;
- measured steps without kernels, when some measured step has them (summary.facts).
"""
import polars as pl

from gapprof.analysis.readers.raw_trace import GLOBAL_PID, RawTrace
from gapprof.errors import GapprofError

UNLAUNCHED = "GPU ops without a launch call"
OPEN_RANGES = "open NVTX ranges (never ended, left out)"
UNPARSABLE_META = "metadata values not JSON (left out)"


def check_frames(trace: RawTrace, ranges: pl.DataFrame, steps: pl.DataFrame, calls: pl.DataFrame,
                 gpu: pl.DataFrame, launch_keys: pl.DataFrame, open_ranges: int) -> dict:
    """Refuse a trace whose anatomy would be wrong; else the counts for the facts table, label -> count.

    steps: with `warmup` marked; launch_keys and open_ranges: as RawTrace holds them.
    """
    refuse_bad_times(trace, {"NVTX ranges": ranges, "API calls": calls, "GPU ops": gpu})
    unlaunched = gpu.join(launch_keys, on=["globalPid", "correlationId"], how="anti")  # a null id joins nothing
    refuse_unlaunched_work(trace, unlaunched, steps.filter(~pl.col("warmup")))
    return {UNLAUNCHED: unlaunched.height, OPEN_RANGES: open_ranges, UNPARSABLE_META: len(trace.unparsable_meta)}


def bad_times(frame: pl.DataFrame) -> tuple[int, int]:
    """(intervals that end before they start, intervals with a negative timestamp) of a start/end frame."""
    inverted = (pl.col("end") < pl.col("start")).sum()
    negative = (pl.min_horizontal("start", "end") < 0).sum()
    return frame.select(inverted, negative).row(0)


def refuse_bad_times(trace: RawTrace, frames: dict[str, pl.DataFrame]) -> None:
    """Raise naming every frame (name -> frame) with inverted intervals or negative timestamps."""
    found = []
    for name, frame in frames.items():
        inverted, negative = bad_times(frame)
        if inverted:
            found.append(f"{inverted:,} {name} end before they start")
        if negative:
            found.append(f"{negative:,} {name} have negative timestamps")
    if found:
        raise GapprofError(f"{trace.path}: damaged timestamps ({'; '.join(found)}): the steps cannot be attributed")


def unlaunched_in_steps(unlaunched: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Per step (step, ops): the GPU ops without a launch call that start inside its range, in its process."""
    ranges = steps.select("step", "t0", "t1", globalPid=GLOBAL_PID).sort("t0")
    return (unlaunched.select("start", "globalPid").sort("start")
            .join_asof(ranges, left_on="start", right_on="t0", by="globalPid", strategy="backward",
                       check_sortedness=False)  # both sides are sorted on the time key above
            .filter(pl.col("start") <= pl.col("t1"))
            .group_by("step").len("ops").sort("step"))


def refuse_unlaunched_work(trace: RawTrace, unlaunched: pl.DataFrame, measured: pl.DataFrame) -> None:
    """Raise when GPU ops without a launch call run inside measured steps."""
    found = unlaunched_in_steps(unlaunched, measured)
    if not found.is_empty():
        raise GapprofError(
            f"{trace.path}: {found['ops'].sum():,} GPU ops inside {found.height} measured steps (the first: step "
            f"{found['step'][0]}) have no launch call (no API call carries their correlationId): their steps' "
            f"busy time would be wrong; the trace lost API records")


def refuse_without_kernels(trace: RawTrace, measured: pl.DataFrame, kernels_in_trace: int) -> None:
    """Raise when no measured step (the anatomy's per-step table) ran a kernel."""
    if measured["kernels"].sum() + measured["graphs"].sum() == 0:
        raise GapprofError(
            f"{trace.path}: none of the {measured.height} measured steps ran a kernel (the trace holds "
            f"{kernels_in_trace:,} kernels): busy would be copies alone; check --range, or the capture lost its "
            f"kernels")
