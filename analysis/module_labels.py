"""Which module each op of a step belongs to, by time, in a trace captured with `capture --modules`: the
innermost `module:<kind>` range (gapprof.nvtx_names) around its launch call on the step's thread.

Ranges nest as the modules do (layer > attention > q_proj); an op launched outside every module range is
labelled OUTSIDE.
"""

import polars as pl

from gapprof.nvtx_names import MODULE_PREFIX

OUTSIDE = "(outside modules)"


def module_ranges(ranges: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """The `module:` ranges inside step ranges: range, step, globalTid, start, end, kind, layer, parent (the
    enclosing module range, or null)."""
    modules = (
        ranges.filter(pl.col("message").str.starts_with(MODULE_PREFIX))
        .select("globalTid", "start", "end", kind=pl.col("message").str.strip_prefix(MODULE_PREFIX), layer="payload")
        .sort("globalTid", "start", pl.col("end"), descending=[False, False, True])
    )
    modules = (
        modules.join_asof(
            steps.select("globalTid", "step", "t0", "t1").sort("t0"),
            left_on="start",
            right_on="t0",
            by="globalTid",
            check_sortedness=False,
        )
        .filter(pl.col("end") <= pl.col("t1"))
        .drop("t0", "t1")
        .sort("globalTid", "start", pl.col("end"), descending=[False, False, True])
        .with_row_index("range")
        .with_columns(pl.col("range").cast(pl.Int64))
    )
    # NVTX push/pop ranges nest properly on a thread: a stack walk in start order finds each one's parent.
    parents, stack = [], []
    for index, tid, end in modules.select("range", "globalTid", "end").iter_rows():
        while stack and (stack[-1][1] != tid or stack[-1][2] < end):
            stack.pop()
        parents.append(stack[-1][0] if stack else None)
        stack.append((index, tid, end))
    return modules.with_columns(parent=pl.Series(parents, dtype=pl.Int64))


def _innermost(modules: pl.DataFrame) -> pl.DataFrame:
    """Points where the innermost open range changes: at a start it is that range, at an end its parent."""
    starts = modules.select("globalTid", time="start", range="range", order=pl.lit(1))
    ends = modules.select("globalTid", time="end", range="parent", order=pl.lit(0))
    # At equal times the start wins (it is applied after the end), and one row per instant is kept.
    return (
        pl.concat([starts, ends])
        .sort("globalTid", "time", "order")
        .unique(["globalTid", "time"], keep="last", maintain_order=True)
        .drop("order")
        .sort("time")
    )


def label_by_time(ops: pl.DataFrame, modules: pl.DataFrame) -> pl.DataFrame:
    """ops (with launch_start and the step's globalTid, the thread that launched them) plus kind and layer of the
    innermost module range around the launch."""
    points = _innermost(modules)
    labelled = (
        ops.sort("launch_start")
        .join_asof(
            points, left_on="launch_start", right_on="time", by="globalTid", strategy="backward", check_sortedness=False
        )
        .join(modules.select("range", "kind", "layer"), on="range", how="left")
    )
    return labelled.with_columns(pl.col("kind").fill_null(OUTSIDE)).drop("time", "range").sort("op")
