"""Step anatomy: wall = busy + starved + latency + head + tail, exactly, in integer ns, for every step.

A step's GPU work is every kernel, memcpy and memset whose launching API call (joined by correlationId and
process) starts inside the step range [t0, t1] on the range's thread; with per-node CUDA graph tracing every
node carries the cudaGraphLaunch's correlationId, so graph replays join like single launches.

Definitions (t0, t1: the range; intervals are the GPU intervals clipped to [t0, t1]):
- g0, g1: first start and last end of the clipped intervals; head = g0 - t0, tail = t1 - g1.
- busy: length of the union of the clipped intervals (streams that overlap count once; the time
  counted twice is reported as `overlap`).
- a gap between g0 and g1 is starved when the launch call of the work that ends it began after the gap
  began (the GPU waited for the CPU), else latency (the work was already submitted).
- spill: busy time of the step's work outside [t0, t1] (work still running after the range ended, or
  before t0 under clock skew). It is clipped off rather than added, so the wall is always the range and
  consecutive steps never count the same ns twice; `spill_ops` counts the ops involved.
- a step without GPU work inside its range (`empty`): head = wall, the other terms 0.
GPU-timeline steps (`on_gpu`, found by analysis.step_finding where the host does not wait for each token) take
their ops from the calls each step was given, and g0 = t0: the gap before the first op is starved or latency like
any other, so head is 0.
"""

import polars as pl
from gapprof.analysis.readers.raw_trace import launch_keys

TERMS = ("busy", "starved", "latency", "head", "tail")
COUNTS = (
    "kernels",
    "memcpys",
    "memsets",
    "graphs",
    "spill_ops",
    "launch_calls",
    "launch_cpu",
    "api_calls",
    "streams",
    "starved_gaps",
    "latency_gaps",
    "overlap",
)


class IdentityError(AssertionError):
    """The attribution broke wall = busy + starved + latency + head + tail: a bug, never a data problem."""


def assign_calls(steps: pl.DataFrame, calls: pl.DataFrame) -> pl.DataFrame:
    """API calls that start inside a step range on that range's thread, with their step id, in the order of `calls`.
    Only their starts and threads are sorted to find the steps, so where every call is in a step the calls' columns
    are shared, not copied."""
    ranges = steps.select("step", "globalTid", "t0", "t1").sort("t0")
    step = (
        calls.select("start", "globalTid")
        .with_row_index("row")
        .sort("start")
        .join_asof(
            ranges, left_on="start", right_on="t0", by="globalTid", strategy="backward", check_sortedness=False
        )  # both sides are sorted on the time key above
        .sort("row")
        .select(pl.when(pl.col("start") <= pl.col("t1")).then("step").alias("step"))
        .to_series()
    )
    # A filter copies every column even where it keeps every row.
    return calls.with_columns(step).filter(step.is_not_null()) if step.has_nulls() else calls.with_columns(step)


def _sweep(ops: pl.LazyFrame, start: str, end: str, from_t0: bool = False) -> pl.LazyFrame:
    """Per op, in start order within its step: the gap before it and the busy time it adds to the union; with
    `from_t0` the first op's gap runs from the step's start. The rows keep their order: each step's ops are put in
    start order inside the window, which costs less than sorting every column of the frame.

    Ties in start go to the op launched first, so a gap ends with already-submitted work when there is any.
    """
    prev_end = pl.col(end).cum_max().shift(1).over("step", order_by=[start, "launch_start"])
    if from_t0:
        prev_end = prev_end.fill_null(pl.col("t0"))
    return ops.with_columns(prev_end=prev_end).with_columns(
        gap=(pl.col(start) - pl.col("prev_end")).clip(lower_bound=0).fill_null(0),
        added=(pl.col(end) - pl.max_horizontal(start, "prev_end")).clip(lower_bound=0),
    )


def _launched_ops(steps: pl.DataFrame, step_calls: pl.DataFrame, gpu: pl.DataFrame) -> pl.DataFrame:
    """The GPU ops launched by `step_calls` (`call` indexes them), each once, with its step, launch start and its
    interval clipped to the step (cs, ce)."""
    call_key, op_key = launch_keys(step_calls)
    launchers = step_calls.lazy().select("call", "step", "source", call_key, launch_start="start")
    ranges = steps.lazy().select("step", "t0", "t1")
    ops = (
        gpu.lazy()
        .select("start", "end", "streamId", "kind", op_key)
        .with_row_index("op")
        .join(launchers, on="launch", how="inner")
        .join(ranges, on="step", how="left")
        .select(
            "op",
            "call",
            "step",
            "start",
            "end",
            "streamId",
            "kind",
            "launch_start",
            "source",
            "t0",
            cs=pl.col("start").clip(pl.col("t0"), pl.col("t1")),
            ce=pl.col("end").clip(pl.col("t0"), pl.col("t1")),
        )
        .collect()
    )
    if ops["op"].n_unique() < ops.height:
        # One correlationId in both API tables would count its work twice; the runtime call launched it.
        ops = ops.sort("source").unique("op", keep="first")
    return ops


def step_anatomy(
    steps: pl.DataFrame, calls: pl.DataFrame, gpu: pl.DataFrame, on_gpu: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(per-step table, the steps' GPU ops, the steps' API calls with `step`).

    steps: from steps.find_steps; calls: API calls of the step threads; gpu: every GPU op of the trace.
    on_gpu: GPU-timeline steps (analysis.step_finding): `calls` already carry their `step`, the gap before a
    step's first op is an inter-op gap (starved or latency) and head is 0.
    The ops frame is narrow (op = row of `gpu`, step, start, end, kind, launch_start = when its launching call
    began, gap, starved): names stay in `gpu`.
    """
    step_calls = (calls if on_gpu else assign_calls(steps, calls)).with_row_index("call")
    ops = _launched_ops(steps, step_calls, gpu)
    lazy = ops.lazy().drop("source")
    outside = (pl.col("cs") != pl.col("start")) | (pl.col("ce") != pl.col("end"))
    # Zero-length ops inside the range stay (they can end a gap); work wholly outside it has nothing inside.
    inside = (pl.col("ce") > pl.col("cs")) | ~outside
    swept = _sweep(lazy.filter(inside), "cs", "ce", from_t0=on_gpu).with_columns(
        starved=(pl.col("gap") > 0) & (pl.col("launch_start") > pl.col("prev_end"))
    )
    gap, kind, starved = pl.col("gap"), pl.col("kind"), pl.col("starved")
    terms = swept.group_by("step").agg(
        g0=pl.col("t0" if on_gpu else "cs").min(),
        g1=pl.col("ce").max(),
        busy=pl.col("added").sum(),
        starved=gap.filter(starved).sum(),
        latency=gap.filter(~starved).sum(),
        starved_gaps=((gap > 0) & starved).sum(),
        latency_gaps=((gap > 0) & ~starved).sum(),
        overlap=(pl.col("ce") - pl.col("cs")).sum() - pl.col("added").sum(),
        streams=pl.col("streamId").n_unique(),
    )
    counts = lazy.group_by("step").agg(
        kernels=(kind == "kernel").sum(),
        memcpys=(kind == "memcpy").sum(),
        memsets=(kind == "memset").sum(),
        graphs=(kind == "graph").sum(),
        spill_ops=outside.sum(),
    )
    spilled_steps = ops.filter(outside)["step"].unique().implode()
    unclipped = (
        _sweep(lazy.filter(pl.col("step").is_in(spilled_steps)), "start", "end")
        .group_by("step")
        .agg(unclipped=pl.col("added").sum())
    )
    # The calls that launched some op, marked by their row: no join over the calls.
    launched = pl.repeat(False, step_calls.height, eager=True).scatter(ops["call"], True)
    calls_per_step = (
        step_calls.lazy()
        .with_columns(launched=launched)
        .group_by("step")
        .agg(
            launch_calls=pl.col("launched").sum(),
            launch_cpu=(pl.col("end") - pl.col("start")).filter("launched").sum(),
            api_calls=pl.len(),
        )
    )
    table = steps.lazy()
    for part in (terms, counts, unclipped, calls_per_step):
        table = table.join(part, on="step", how="left")
    table, swept = pl.collect_all(
        [
            table.with_columns(
                pl.col(*COUNTS, "busy", "starved", "latency").fill_null(0).cast(pl.Int64),
                empty=pl.col("g0").is_null(),
                wall=pl.col("t1") - pl.col("t0"),
            )
            .with_columns(
                head=pl.col("g0").fill_null(pl.col("t1")) - pl.col("t0"),
                tail=pl.col("t1") - pl.col("g1").fill_null(pl.col("t1")),
                # The union outside [t0, t1] is the unclipped union less the clipped one.
                spill=(pl.col("unclipped") - pl.col("busy")).fill_null(0),
            )
            .drop("unclipped")
            .sort("step"),
            pl.concat(
                [
                    swept.select("op", "step", "start", "end", "kind", "launch_start", "gap", "starved"),
                    lazy.filter(~inside).select(
                        "op",
                        "step",
                        "start",
                        "end",
                        "kind",
                        "launch_start",
                        gap=pl.lit(0, pl.Int64),
                        starved=pl.lit(False),
                    ),
                ]
            ),
        ]
    )
    check_identity(table)
    return table, swept, step_calls.drop("call")


def check_identity(table: pl.DataFrame) -> None:
    """Raise IdentityError unless every step has wall = busy + starved + latency + head + tail, terms >= 0."""
    total = pl.sum_horizontal(TERMS)
    bad = table.filter((total != pl.col("wall")) | pl.any_horizontal(pl.col(TERMS) < 0))
    if not bad.is_empty():
        raise IdentityError(f"identity broken on steps {bad['step'].head(10).to_list()}")
