"""Launch delays as distributions: per launch call, the CPU time spent in it and the delay until the GPU started
its work, with p50/p90/p99 per launch API, per kernel class and per step.

Every launch that put GPU work into a step counts: runtime and driver-API kernel launches (cudaLaunchKernel,
cuLaunchKernelEx), CUDA graph launches, memcpys and memsets. A launch is joined to its ops as the anatomy joins
them (process, correlationId, the call's start); under per-node graph tracing every node of a graph replay carries
the graph launch's correlationId, so a graph launch has many ops.
- cpu = call end - call start;
- delay of a launch = first start of its ops - call start (negative only under clock skew);
- delay of an op = its start - its launch call's start: for a graph node, how long after the graph launch began the
  GPU reached that node.
Percentiles are nearest-rank: pN is the smallest value with at least N% of the values at or below it, so each is a
value that occurred (integer ns). Times are integer ns; `in_us` converts a table's columns for display.
"""

import polars as pl
from gapprof.analysis import api, kernels
from gapprof.analysis.readers.raw_trace import GLOBAL_PID

PERCENTILES = (50, 90, 99)
NOTE = (
    "launches: cpu is the time in the launch call; delay is from the call's start to its first GPU op's start "
    "(by class: to each op's start, graph nodes from their graph launch's start); percentiles nearest-rank"
)


def nearest_rank(column: str, percent: int) -> pl.Expr:
    """pN of `column` within a group: the value at rank ceil(N% of the count), counted from 1."""
    rank = (pl.len().cast(pl.Int64) * percent + 99) // 100
    return pl.col(column).sort().get(rank - 1)


def _percentiles(what: str) -> list[pl.Expr]:
    """pN of the column `what`_ns as `what`_pN_ns."""
    return [nearest_rank(f"{what}_ns", p).alias(f"{what}_p{p}_ns") for p in PERCENTILES]


def launched_ops(result) -> pl.DataFrame:
    """Every op of the measured steps with its launching call: step, op, start, class, api (the call's name),
    call (row of the steps' calls), call_start, call_end, delay_ns = op start - call start."""
    calls = (
        api.named_calls(result.measured_only(result.calls), result.frames.strings)
        .with_row_index("call")
        .select(
            "call", "step", "correlationId", "source", "name", call_start="start", call_end="end", globalPid=GLOBAL_PID
        )
    )
    ops = kernels.named_ops(result.measured_only(result.ops), result.frames.gpu, result.frames.strings, False)
    keys = result.frames.gpu.select("correlationId", "globalPid").gather(ops["op"])
    joined = (
        ops.select("op", "step", "start", "launch_start", "class")
        .hstack(keys)
        .join(
            calls,
            left_on=["step", "globalPid", "correlationId", "launch_start"],
            right_on=["step", "globalPid", "correlationId", "call_start"],
            how="inner",
            coalesce=False,
        )
    )
    if joined["op"].n_unique() < joined.height:
        # A correlationId in both API tables: the anatomy took the runtime call's, so take it here too.
        joined = joined.sort("source").unique("op", keep="first")
    return joined.select(
        "step",
        "op",
        "start",
        "class",
        "call",
        "call_start",
        "call_end",
        api="name",
        delay_ns=pl.col("start") - pl.col("call_start"),
    )


def launches(ops: pl.DataFrame) -> pl.DataFrame:
    """One row per launch call of `ops` (launched_ops), in no order: step, api, ops, cpu_ns and delay_ns to its
    first op."""
    return (
        ops.group_by("call")
        .agg(pl.col("step", "api", "call_start", "call_end").first(), ops=pl.len(), first=pl.col("start").min())
        .select(
            "step",
            "api",
            "ops",
            cpu_ns=pl.col("call_end") - pl.col("call_start"),
            delay_ns=pl.col("first") - pl.col("call_start"),
        )
    )


def by_api(launched: pl.DataFrame, n_steps: int) -> pl.DataFrame:
    """Per launch API of `launched` (launches): launches and ops per step, cpu and delay percentiles (ns)."""
    return (
        launched.group_by("api")
        .agg(
            (pl.len() / n_steps).alias("launches_per_step"),
            pl.col("ops").mean().alias("ops_per_launch"),
            *_percentiles("cpu"),
            *_percentiles("delay"),
        )
        .sort("launches_per_step", "api", descending=[True, False])
    )


def by_class(ops: pl.DataFrame, n_steps: int) -> pl.DataFrame:
    """Per launch API and op class: ops per step and the percentiles of each op's delay from its launch (ns)."""
    return (
        ops.group_by("api", "class")
        .agg((pl.len() / n_steps).alias("ops_per_step"), *_percentiles("delay"))
        .with_columns(pl.col("class").cast(pl.String))
        .sort("ops_per_step", "api", "class", descending=[True, False, False])
    )


def by_step(launched: pl.DataFrame) -> pl.DataFrame:
    """Per step of `launched` (launches): launches, and the percentiles of their cpu and delay (ns)."""
    return (
        launched.group_by("step")
        .agg(pl.len().alias("launches"), *_percentiles("cpu"), *_percentiles("delay"))
        .sort("step")
    )


def in_us(table: pl.DataFrame) -> pl.DataFrame:
    """The *_ns columns of a table as *_us, for display."""
    ns = [c for c in table.columns if c.endswith("_ns")]
    return table.with_columns((pl.col(c) / 1000).alias(c.removesuffix("_ns") + "_us") for c in ns).select(
        *(c.removesuffix("_ns") + "_us" if c in ns else c for c in table.columns)
    )
