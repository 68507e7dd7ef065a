"""Discrete-event replay of a captured launch timeline with new GPU op durations and CPU speed.

Per step, from t0, in call order:
- a call starts when the previous one ended plus its captured think time (x cpu_scale);
- each op it launched starts at max(call start + launch latency, end of the previous op on its stream + gap)
  and lasts its new duration; the part of the launch latency spent inside the call is CPU time (x cpu_scale);
- a blocking call returns at max(its start, the end of every op launched so far) + its captured post-wait
  time (x cpu_scale); any other call lasts its captured duration (x cpu_scale);
- the step ends its captured trailing think time (x cpu_scale) after its last call.
Steps of a thread follow each other with their captured CPU time in between (x cpu_scale); each step starts
with idle streams: work spilled from the step before is not carried over.
The result is a trace's worth of frames (steps, API calls, GPU ops) that anatomy.step_anatomy takes as it takes
a captured trace's, so a replay is attributed by the very same code.

GPU-timeline steps (analysis.step_finding: the host does not wait for each token and runs ahead) have no CPU
range to replay from: `replay_on_gpu` keeps the captured call times (x cpu_scale from the first call) and runs
the GPU ops of all steps as one timeline, each at max(call start + launch latency, end of the previous op on its
stream + gap) under the same bounds, streams carried from one step into the next; a step runs from the end of
the previous step's work (the first step from its captured start) to the end of its own, as found.
"""

import numpy as np
import polars as pl
from gapprof.analysis.launch_timeline import Timeline
from gapprof.analysis.readers.raw_trace import API_SCHEMA, GPU_SCHEMA

STEP_KEYS = ("step", "globalTid", "index", "payload", "warmup", "t0", "nested", "ctx")


def _step(
    think,
    dur,
    blocking,
    post,
    call_of_op,
    stream,
    lat,
    gap,
    queued,
    op_dur,
    t0,
    trailing,
    launch_latency,
    queued_gap,
    cpu_scale,
):
    """One step's call (start, end) and op (start, end) arrays, and its new end."""
    n_calls, n_ops = len(think), len(call_of_op)
    c_start, c_end = np.zeros(n_calls, np.int64), np.zeros(n_calls, np.int64)
    o_start, o_end = np.zeros(n_ops, np.int64), np.zeros(n_ops, np.int64)
    stream_end = {}
    prior_end = t0  # latest end of any call so far
    drain = None
    waited = 0
    j = 0
    for i in range(n_calls):
        start = prior_end + round(think[i] * cpu_scale)
        while j < n_ops and call_of_op[j] == i:
            # Starved op: its own latency, at most the typical queued gap; queued op: the reverse.
            latency = min(launch_latency, lat[j]) if queued[j] else lat[j]
            inside = min(latency, dur[i])
            latency = round(inside * cpu_scale) + latency - inside
            prev = stream_end.get(stream[j])
            begin = start + latency
            if prev is not None:
                begin = max(begin, prev + (gap[j] if queued[j] else min(queued_gap, gap[j])))
            o_start[j], o_end[j] = begin, begin + op_dur[j]
            stream_end[stream[j]] = o_end[j] if prev is None else max(prev, o_end[j])
            drain = o_end[j] if drain is None else max(drain, o_end[j])
            j += 1
        if blocking[i] and drain is not None:
            waited += max(drain - start, 0)
            end = max(start, drain) + round(post[i] * cpu_scale)
        else:
            end = start + round(dur[i] * cpu_scale)
        c_start[i], c_end[i] = start, end
        prior_end = max(prior_end, end)
    return c_start, c_end, o_start, o_end, prior_end + round(trailing * cpu_scale), waited


def replay(
    timeline: Timeline, op_durations: pl.Series, cpu_scale: float = 1.0
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(steps, calls, gpu) frames of the replayed steps, in the shapes anatomy.step_anatomy takes; steps carry
    `wait`, the time blocking calls spent waiting for the GPU.

    op_durations: new duration (ns) of each row of timeline.ops, in its order."""
    calls = timeline.calls
    ops = timeline.ops.with_columns(new_dur=op_durations.round().cast(pl.Int64))
    steps = timeline.steps.sort("globalTid", "t0")
    call_parts, op_parts, ends, waits = [], [], [], []
    by_step_calls = calls.partition_by("step", as_dict=True, maintain_order=True)
    by_step_ops = ops.partition_by("step", as_dict=True, maintain_order=True)
    starts, previous = [], {}  # thread -> (captured t1, replayed t1) of its latest step
    for step, tid, t0, t1, last_end in steps.select("step", "globalTid", "t0", "t1", "last_end").iter_rows():
        # A step starts the captured CPU time after the replayed end of the thread's step before it, so
        # replayed steps never overlap (attribution assigns each call to the step range it starts in).
        if tid in previous:
            t0 = previous[tid][1] + round((t0 - previous[tid][0]) * cpu_scale)
        starts.append(t0)
        sc = by_step_calls.get((step,))
        so = by_step_ops.get((step,))
        if sc is None:  # no API calls: the step is CPU time only
            ends.append(t0 + round((t1 - t0) * cpu_scale))
            waits.append(0)
            previous[tid] = (t1, ends[-1])
            continue
        so = so if so is not None else ops.clear()
        # Python lists, not numpy arrays: _step's loop runs three times faster on Python ints than on numpy scalars.
        c = {k: sc[k].to_list() for k in ("think", "dur", "blocking", "post")}
        o = {k: so[k].fill_null(0).to_list() for k in ("seq", "streamId", "lat", "gap", "queued", "new_dur")}
        c_start, c_end, o_start, o_end, end, waited = _step(
            c["think"],
            c["dur"],
            c["blocking"],
            c["post"],
            o["seq"],
            o["streamId"],
            o["lat"],
            o["gap"],
            o["queued"],
            o["new_dur"],
            t0,
            t1 - last_end,
            timeline.launch_latency,
            timeline.queued_gap,
            cpu_scale,
        )
        call_parts.append(sc.with_columns(start=pl.Series(c_start), end=pl.Series(c_end)))
        op_parts.append(so.with_columns(start=pl.Series(o_start), end=pl.Series(o_end)))
        ends.append(end)
        waits.append(waited)
        previous[tid] = (t1, end)
    new_calls = pl.concat(call_parts)
    new_ops = (
        pl.concat(op_parts)
        .drop("correlationId")
        .join(new_calls.select("step", "seq", "correlationId"), on=["step", "seq"])
    )  # graph nodes take the graph call's id
    new_steps = steps.select(*(k for k in STEP_KEYS if k in steps.columns)).with_columns(
        t0=pl.Series(starts, dtype=pl.Int64), t1=pl.Series(ends, dtype=pl.Int64), wait=pl.Series(waits, dtype=pl.Int64)
    )
    return (new_steps, new_calls.select(*API_SCHEMA).cast(API_SCHEMA), new_ops.select(*GPU_SCHEMA).cast(GPU_SCHEMA))


def replay_on_gpu(
    timeline: Timeline, op_durations: pl.Series, cpu_scale: float = 1.0
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """replay's frames for GPU-timeline steps (see the module docstring); the calls keep their `step`, as
    anatomy.step_anatomy takes them with `on_gpu`."""
    first_call = timeline.calls["start"].min()
    calls = timeline.calls.with_columns(
        (((pl.col("start", "end") - first_call) * cpu_scale).round() + first_call).cast(pl.Int64)
    )
    ops = (
        timeline.ops.with_columns(new_dur=op_durations.round().cast(pl.Int64))
        .sort("start", "op")
        .drop("correlationId")
        .join(calls.select("step", "seq", "correlationId", launched="start"), on=["step", "seq"], maintain_order="left")
    )
    lat, gap, queued = (ops[k].fill_null(0).to_list() for k in ("lat", "gap", "queued"))
    launched, stream, new_dur = (ops[k].to_list() for k in ("launched", "streamId", "new_dur"))
    start, end, stream_end = [0] * len(lat), [0] * len(lat), {}
    for j in range(len(lat)):
        begin = launched[j] + (min(timeline.launch_latency, lat[j]) if queued[j] else lat[j])
        if stream[j] in stream_end:
            begin = max(begin, stream_end[stream[j]] + (gap[j] if queued[j] else min(timeline.queued_gap, gap[j])))
        start[j], end[j] = begin, begin + new_dur[j]
        stream_end[stream[j]] = max(stream_end.get(stream[j], end[j]), end[j])
    new_ops = ops.with_columns(start=pl.Series(start, dtype=pl.Int64), end=pl.Series(end, dtype=pl.Int64))
    ends = new_ops.group_by("step").agg(t1=pl.col("end").max())
    steps = (
        timeline.steps.rename({"t1": "captured_t1"})
        .join(ends, on="step")
        .sort("t0")
        # A step that followed the one before keeps following it; a run's first starts where it started.
        .with_columns(
            t0=pl.when(pl.col("t0") == pl.col("captured_t1").shift(1)).then(pl.col("t1").shift(1)).otherwise("t0"),
            wait=pl.lit(0, pl.Int64),
        )
    )
    return (
        steps.select(*(k for k in STEP_KEYS if k in steps.columns), "t1", "wait"),
        calls.select(*API_SCHEMA, "step").cast(API_SCHEMA),
        new_ops.select(*GPU_SCHEMA).cast(GPU_SCHEMA),
    )
