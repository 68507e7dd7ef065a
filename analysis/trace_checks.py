"""Checks that a trace is whole enough to attribute. Each check counts what it finds: where that would make the
step anatomy wrong, the trace is refused with a one-line GapprofError giving the count; otherwise the count goes
to the facts table. So anatomy.IdentityError stays the sign of a bug in the anatomy, never of a damaged trace.

Refused:
- any interval that ends before it starts, has no start or end (NULL), has a negative timestamp, or lies more
  than a day (MAX_DISTANCE_NS) from the median timestamp of the trace, among the NVTX ranges, the step threads'
  API calls and the GPU ops: nsys counts ns from the session start and CUPTI from its own epoch, a capture lasts
  minutes, so each is damage (an end of 2^62 ns would make a step last decades), and clipping to a step would
  drop such work silently or break the identity;
- GPU ops or the step threads' API calls recorded twice (every column the same): the kernel and API tables would
  count their time twice, and a step's host time its waits (a negative CPU time per launch);
- correlation ids outside 0 .. 2^32 - 1 (CUPTI's are unsigned 32-bit): launches are joined to their GPU work on
  one integer made of the process and the id (raw_trace.launch_keys), which holds no other;
- launch calls inside measured steps whose GPU op is missing (a kernel or graph launch that no GPU op of its
  process carries the correlationId of): the trace lost GPU records (or the launch was captured into a CUDA
  graph rather than run, as in a warm-up step), and the step's busy time would lack the work. Not checked in
  graph-level traces (a CUPTI_ACTIVITY_KIND_GRAPH_TRACE table), where a few plain launches per step go
  untraced in real captures;
- any GPU op without a launch call (no runtime or driver call of its process, on any thread, carries its
  correlationId) that starts inside a measured step's range in the step's process: that step's busy time
  would lack its work. With steps of one process overlapping in time, the op is checked against the step
  that began last before it;
- measured steps none of which ran a kernel: busy would be copies alone and excess negative.
Counted only (facts table):
- GPU ops without a launch call, trace-wide: outside the measured steps they change no measured term;
- open NVTX ranges (pushed or started, never ended, such as a step cut off by the end of the capture): left
  out of the ranges, so a step never closed is no step;
- capture metadata values that are not JSON: left out by readers.capture_meta.parse_meta, with a note;
- measured steps without kernels, when some measured step has them (summary.facts);
- measured steps whose number of GPU ops differs from the most common step's (`uneven_steps`), with a note: in a
  CUDA-graph replay every node carries the graph launch's correlationId, so a lost kernel record leaves no launch
  without its op, and only the count of the step shows it (a decode step repeats the same work).
"""

import polars as pl
from gapprof.analysis.api import calls_where
from gapprof.analysis.readers.raw_trace import CORRELATION_IDS, GLOBAL_PID, GRAPH, RawTrace, launch_keys

from gapprof.errors import GapprofError

UNLAUNCHED = "GPU ops without a launch call"
MAX_DISTANCE_NS = 86_400 * 10**9
LAUNCH_CATEGORIES = ("launch", "graph launch")
OPEN_RANGES = "open NVTX ranges (never ended, left out)"
UNPARSABLE_META = "metadata values not JSON (left out)"


def check_frames(
    trace: RawTrace,
    ranges: pl.DataFrame,
    steps: pl.DataFrame,
    calls: pl.DataFrame,
    gpu: pl.DataFrame,
    open_ranges: int,
) -> dict:
    """Refuse a trace whose anatomy would be wrong; else the counts for the facts table, label -> count.

    steps: with `warmup` marked; open_ranges: as RawTrace holds it.
    """
    refuse_bad_times(trace, {"NVTX ranges": ranges, "API calls": calls, "GPU ops": gpu})
    refuse_duplicates(trace, {"GPU ops": gpu, "API calls": calls})
    refuse_bad_correlation_ids(trace, {"API calls": trace.calls, "GPU ops": gpu})
    measured = steps.filter(~pl.col("warmup"))
    call_key, op_key = launch_keys(trace.calls)
    unlaunched = gpu.select("start", "globalPid", op_key).join(
        trace.calls.select(call_key), on="launch", how="anti"
    )  # a null key joins nothing
    refuse_unlaunched_work(trace, unlaunched, measured)
    if GRAPH not in trace.tables:
        refuse_lost_ops(trace, launches_without_ops(calls, gpu, trace.strings, measured))
    return {UNLAUNCHED: unlaunched.height, OPEN_RANGES: open_ranges, UNPARSABLE_META: len(trace.unparsable_meta)}


def bad_times(frame: pl.DataFrame, median: int | None) -> tuple[int, int, int, int]:
    """(intervals that end before they start, without a start or end, with a negative timestamp, further than
    MAX_DISTANCE_NS from `median`) of a start/end frame."""
    inverted = (pl.col("end") < pl.col("start")).sum()
    missing = pl.any_horizontal(pl.col("start").is_null(), pl.col("end").is_null()).sum()
    negative = (pl.min_horizontal("start", "end") < 0).sum()
    far = (
        pl.max_horizontal((pl.col("start") - median).abs(), (pl.col("end") - median).abs()) > MAX_DISTANCE_NS
        if median is not None
        else pl.lit(False)
    ).sum()
    return frame.select(
        inverted.alias("inverted"), missing.alias("missing"), negative.alias("negative"), far.alias("far")
    ).row(0)


def median_time(frames: dict[str, pl.DataFrame]) -> int | None:
    """The median start of every interval: a point inside the capture that a few damaged values cannot move."""
    starts = pl.concat([frame.select("start") for frame in frames.values()])
    median = starts.select(pl.col("start").median()).item()
    return None if median is None else int(median)


def refuse_bad_times(trace: RawTrace, frames: dict[str, pl.DataFrame]) -> None:
    """Raise naming every frame (name -> frame) with inverted, missing, negative or far-off times."""
    found, median = [], median_time(frames)
    for name, frame in frames.items():
        inverted, missing, negative, far = bad_times(frame, median)
        if inverted:
            found.append(f"{inverted:,} {name} end before they start")
        if missing:
            found.append(f"{missing:,} {name} have no start or end")
        if negative:
            found.append(f"{negative:,} {name} have negative timestamps")
        if far:
            found.append(f"{far:,} {name} lie more than a day from the rest of the trace")
    if found:
        raise GapprofError(f"{trace.path}: damaged timestamps ({'; '.join(found)}): the steps cannot be attributed")


def recorded_twice(frame: pl.DataFrame) -> int:
    """Rows (GPU ops, API calls) equal in every column to an earlier one. Only rows sharing their start with another
    can be: those are found on the sorted starts, so no hash table over every row and column is built."""
    starts = frame["start"].sort()
    shared = starts.filter(starts == starts.shift(1)).unique()
    candidates = frame.filter(pl.col("start").is_in(shared.implode()))
    return candidates.height - candidates.n_unique()


def refuse_bad_correlation_ids(trace: RawTrace, frames: dict[str, pl.DataFrame]) -> None:
    """Raise naming every frame (name -> frame) with correlation ids that are not CUPTI's unsigned 32-bit ones."""
    outside = ~pl.col("correlationId").is_between(0, CORRELATION_IDS - 1)
    found = [f"{n:,} {name}" for name, frame in frames.items() if (n := frame.select(outside.sum()).item())]
    if found:
        raise GapprofError(
            f"{trace.path}: {' and '.join(found)} have correlation ids outside 0 .. 2^32 - 1, which CUPTI never "
            "gives: a damaged trace, whose launches cannot be matched to their GPU work"
        )


def refuse_duplicates(trace: RawTrace, frames: dict[str, pl.DataFrame]) -> None:
    """Raise naming every frame (name -> frame) with rows recorded twice."""
    found = [f"{n:,} {name}" for name, frame in frames.items() if (n := recorded_twice(frame))]
    if found:
        raise GapprofError(
            f"{trace.path}: {' and '.join(found)} are recorded twice (every column the same): a damaged "
            "or twice-merged export, whose tables would count them twice"
        )


def launches_without_ops(
    calls: pl.DataFrame, gpu: pl.DataFrame, strings: pl.DataFrame, measured: pl.DataFrame
) -> pl.DataFrame:
    """Per measured step (step, calls): its launch calls that no GPU op of their process carries the
    correlationId of."""
    call_key, op_key = launch_keys(calls)
    launches = calls_where(calls, strings, pl.col("category").is_in(LAUNCH_CATEGORIES)).select(
        "start", "globalTid", call_key
    )
    lost = launches.join(gpu.select(op_key), on="launch", how="anti")
    ranges = measured.select("step", "t0", "t1", "globalTid").sort("t0")
    return (
        lost.sort("start")
        .join_asof(
            ranges, left_on="start", right_on="t0", by="globalTid", strategy="backward", check_sortedness=False
        )  # both sorted on time
        .filter(pl.col("start") <= pl.col("t1"))
        .group_by("step")
        .len("calls")
        .sort("step")
    )


def refuse_lost_ops(trace: RawTrace, lost: pl.DataFrame) -> None:
    """Raise when launch calls inside measured steps have no GPU op (launches_without_ops)."""
    if not lost.is_empty():
        raise GapprofError(
            f"{trace.path}: {lost['calls'].sum():,} launch calls inside {lost.height} measured steps (the first: step "
            f"{lost['step'][0]}) have no GPU op (none carries their correlationId): the trace lost GPU records, or "
            f"those launches were captured into a CUDA graph; their steps' busy time would be wrong (--skip past "
            f"such steps)"
        )


def unlaunched_in_steps(unlaunched: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """Per step (step, ops): the GPU ops without a launch call that start inside its range, in its process."""
    ranges = steps.select("step", "t0", "t1", globalPid=GLOBAL_PID).sort("t0")
    return (
        unlaunched.select("start", "globalPid")
        .sort("start")
        .join_asof(
            ranges, left_on="start", right_on="t0", by="globalPid", strategy="backward", check_sortedness=False
        )  # both sides are sorted on the time key above
        .filter(pl.col("start") <= pl.col("t1"))
        .group_by("step")
        .len("ops")
        .sort("step")
    )


def refuse_unlaunched_work(trace: RawTrace, unlaunched: pl.DataFrame, measured: pl.DataFrame) -> None:
    """Raise when GPU ops without a launch call run inside measured steps."""
    found = unlaunched_in_steps(unlaunched, measured)
    if not found.is_empty():
        raise GapprofError(
            f"{trace.path}: {found['ops'].sum():,} GPU ops inside {found.height} measured steps (the first: step "
            f"{found['step'][0]}) have no launch call (no API call carries their correlationId): their steps' "
            f"busy time would be wrong; the trace lost API records"
        )


UNEVEN_STEPS = "measured steps with another number of GPU ops than the most common step"


def uneven_steps(measured: pl.DataFrame) -> tuple[int, int]:
    """(measured steps whose kernels + memcpys + memsets + graph executions differ from the most common count,
    that count)."""
    counts = measured.select(n=pl.sum_horizontal("kernels", "memcpys", "memsets", "graphs"))["n"]
    if counts.is_empty():
        return 0, 0
    common = int(counts.mode().sort()[0])
    return int((counts != common).sum()), common


def refuse_without_kernels(trace: RawTrace, measured: pl.DataFrame, kernels_in_trace: int) -> None:
    """Raise when no measured step (the anatomy's per-step table) ran a kernel."""
    if measured["kernels"].sum() + measured["graphs"].sum() == 0:
        raise GapprofError(
            f"{trace.path}: none of the {measured.height} measured steps ran a kernel (the trace holds "
            f"{kernels_in_trace:,} kernels): busy would be copies alone; check --range, or the capture lost its "
            f"kernels"
        )
