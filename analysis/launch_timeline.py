"""The captured launch timeline of the measured steps, decomposed into what a replay keeps and what it rescales.

Per API call on the step thread (in start order, `seq` from 0 within the step):
- think: CPU time since the previous call ended (the first call: since t0); negative when calls nest;
- blocking: the call returns only when the GPU drains: a *Synchronize call, or a memcpy call that returned
  after its own copy finished (a synchronous copy such as .item()'s); its `wait` is the part of the call
  spent waiting (D - start, D = the end of every op launched so far in the step) and `post` the rest.
Per GPU op (kernel, memcpy, memset) of those calls:
- lat: op start - launching call start; gap: op start - end of the previous op on its stream in the step;
- queued: its call started no later than that previous op ended (the op waited for the GPU, not the CPU).
The replay starts an op at max(call start + launch latency, previous op end + gap): a starved op keeps its own
latency and at most the trace's typical queued gap, a queued op its own gap and at most the typical launch
latency. Both bounds hold with equality on the captured GPU, so a replay with nothing rescaled is exact.
"""

from dataclasses import dataclass, field

import polars as pl
from gapprof.analysis import api, kernels
from gapprof.analysis.attribution import Attribution
from gapprof.analysis.readers.raw_trace import GLOBAL_PID

DTOD = 8  # CUPTI copyKind of a device-to-device copy, the only copy that stays in DRAM


@dataclass(frozen=True)
class Timeline:
    steps: pl.DataFrame  # the measured steps' rows of the step table, plus last_end and wait (time blocked)
    calls: pl.DataFrame  # step, seq, start, end, think, blocking, wait, post, name, category, ...
    ops: pl.DataFrame  # step, seq, op, streamId, kind, copyKind, class, start, end, lat, gap, queued, ...
    launch_latency: int  # median lat of the starved ops: what a queued op waits once the queue drains
    queued_gap: int  # median gap between queued ops on a stream: what a starved op waits once it is queued
    # GPU key -> gapprof.gpu_profile.Found: the measured GPUs of the kernel model (projection.with_kernel_bytes)
    profiles: dict = field(default_factory=dict)


def _median(values: pl.Series) -> int:
    return int(values.median()) if values.len() else 0


def build(result: Attribution) -> Timeline:
    measured, gpu, strings = result.measured, result.frames.gpu, result.frames.strings
    calls = (
        api.named_calls(result.measured_only(result.calls), strings)
        .sort("step", "start", "end")
        .with_columns(seq=pl.int_range(pl.len()).over("step"))
    )
    gpu_cols = gpu.select("deviceId", "streamId", "correlationId", "globalPid").gather(result.ops["op"])
    ops = kernels.named_ops(result.measured_only(result.ops.hstack(gpu_cols)), gpu, strings, False)
    launchers = calls.select("step", "seq", "correlationId", globalPid=GLOBAL_PID, call_start="start", call_end="end")
    ops = (
        ops.drop("gap", "starved")
        .join(launchers, on=["step", "globalPid", "correlationId"], how="inner")
        .sort("step", "seq", "start", "op")
    )
    # GPU-timeline steps (analysis.step_finding) tile one GPU timeline: a step's first op follows the step before's.
    prev_end = pl.col("end").cum_max().shift(1).over(*([] if result.frames.on_gpu else ["step"]), "streamId")
    ops = ops.with_columns(prev_end=prev_end).with_columns(
        dur=pl.col("end") - pl.col("start"),
        lat=pl.col("start") - pl.col("call_start"),
        gap=pl.col("start") - pl.col("prev_end"),
        queued=pl.col("prev_end").is_not_null() & (pl.col("call_start") <= pl.col("prev_end")),
    )

    # Drain point of a blocking call: the end of every op launched by it or before it in the step.
    drained = (
        ops.group_by("step", "seq")
        .agg(op_end=pl.col("end").max())
        .sort("step", "seq")
        .with_columns(drain=pl.col("op_end").cum_max().over("step"))
    )
    own_copy_done = (pl.col("category") == "memcpy") & (pl.col("op_end") <= pl.col("end"))
    calls = (
        calls.join(drained, on=["step", "seq"], how="left")
        .sort("step", "seq")
        .with_columns(pl.col("drain").forward_fill().over("step"))
        .join(measured.select("step", "t0"), on="step")
        .with_columns(
            think=pl.col("start") - pl.coalesce(pl.col("end").cum_max().shift(1).over("step"), "t0"),
            dur=pl.col("end") - pl.col("start"),
            blocking=(pl.col("name").str.contains("Synchronize") | own_copy_done.fill_null(False))
            & pl.col("drain").is_not_null(),
        )
    )
    wait = (pl.col("drain") - pl.col("start")).clip(lower_bound=0)
    calls = calls.with_columns(
        wait=pl.when("blocking").then(wait).otherwise(0),
        post=pl.when("blocking").then(pl.col("end") - pl.max_horizontal("drain", "start")).otherwise("dur"),
    ).drop("t0", "op_end")
    per_step = calls.group_by("step").agg(last_end=pl.col("end").max(), wait=pl.col("wait").sum())
    steps = measured.join(per_step, on="step", how="left").with_columns(pl.col("wait").fill_null(0))
    # On a GPU timeline only a run's first op has no op before it: it says nothing of the launch latency.
    starved = ~pl.col("queued") & (pl.col("prev_end").is_not_null() | pl.lit(not result.frames.on_gpu))
    return Timeline(
        steps=steps,
        calls=calls,
        ops=ops,
        launch_latency=_median(ops.filter(starved)["lat"]),
        queued_gap=_median(ops.filter(pl.col("queued"))["gap"]),
    )
