"""The step anatomy as intervals on the trace's timeline: where each term's ns lie, not only how many there are.

For every step (analysis.anatomy's definitions): head [t0, g0], tail [g1, t1], busy the union of the step's GPU
intervals clipped to [t0, t1], one starved or latency interval per gap (ending where the op that ends it starts,
clipped), and spill the union of the parts of its ops outside [t0, t1]. head, busy, starved, latency and tail tile
the range, so per step and term the lengths sum exactly to the per-step table's column (`check` raises otherwise);
spill lies outside the range. Zero-length intervals are left out.
"""

import polars as pl
from gapprof.analysis.anatomy import IdentityError

TERMS = ("head", "busy", "starved", "latency", "tail", "spill")
SCHEMA = {"step": pl.Int64, "term": pl.Enum(TERMS), "start": pl.Int64, "end": pl.Int64}


def _union(parts: pl.LazyFrame) -> pl.LazyFrame:
    """Per step, the union of (start, end) intervals as disjoint intervals: a new one starts past every earlier end."""
    reach = pl.col("end").cum_max().shift(1).over("step")
    return (
        parts.sort("step", "start")
        .with_columns(group=(reach.is_null() | (pl.col("start") > reach)).cum_sum())
        .group_by("step", "group")
        .agg(pl.col("start").min(), pl.col("end").max())
        .drop("group")
    )


def intervals(steps: pl.DataFrame, ops: pl.DataFrame) -> pl.DataFrame:
    """step, term, start, end (integer ns) of every step of `steps` (the per-step table) from `ops` (its ops, as
    analysis.anatomy.step_anatomy gives them), sorted by step and start.

    busy is found as what the other terms leave of the range: the gaps are the holes of the union of the step's
    clipped GPU intervals between g0 and g1, so the union is [g0, g1] less the gaps, with no sweep over the ops.
    """
    ranges = steps.lazy().select("step", "t0", "t1", "g0", "g1")
    edges = ranges.select(
        "step",
        head_start="t0",
        head_end=pl.col("g0").fill_null(pl.col("t1")),
        tail_start=pl.col("g1").fill_null(pl.col("t1")),
        tail_end="t1",
    )
    gapped = (
        ops.lazy()
        .filter(pl.col("gap") > 0)
        .join(ranges, on="step")
        .with_columns(cs=pl.col("start").clip(pl.col("t0"), pl.col("t1")))
    )
    not_busy = pl.concat(
        [
            edges.select("step", term=pl.lit("head"), start="head_start", end="head_end"),
            gapped.select(
                "step",
                term=pl.when("starved").then(pl.lit("starved")).otherwise(pl.lit("latency")),
                start=pl.col("cs") - pl.col("gap"),
                end="cs",
            ),
            edges.select("step", term=pl.lit("tail"), start="tail_start", end="tail_end"),
        ]
    ).sort("step", "start", "end")
    busy = (
        not_busy.with_columns(after=pl.col("end").shift(1), same_step=pl.col("step") == pl.col("step").shift(1))
        .filter("same_step", pl.col("start") > pl.col("after"))
        .select("step", term=pl.lit("busy"), start="after", end="start")
    )
    spilled = (
        ops.lazy().join(ranges, on="step").filter((pl.col("start") < pl.col("t0")) | (pl.col("end") > pl.col("t1")))
    )
    spill = _union(
        pl.concat(
            [
                spilled.filter(pl.col("start") < pl.col("t0")).select(
                    "step", "start", end=pl.min_horizontal("end", "t0")
                ),
                spilled.filter(pl.col("end") > pl.col("t1")).select(
                    "step", start=pl.max_horizontal("start", "t1"), end="end"
                ),
            ]
        )
    ).with_columns(term=pl.lit("spill"))
    return (
        pl.concat(
            [
                part.select("step", pl.col("term").cast(SCHEMA["term"]), "start", "end")
                for part in (not_busy, busy, spill)
            ]
        )
        .filter(pl.col("end") > pl.col("start"))
        .sort("step", "start", "term")
        .collect()
    )


def check(steps: pl.DataFrame, found: pl.DataFrame) -> None:
    """Raise IdentityError unless each step's intervals of each term sum to its column of `steps`."""
    sums = found.group_by("step", "term").agg(ns=(pl.col("end") - pl.col("start")).sum())
    expected = steps.unpivot(list(TERMS), index="step", variable_name="term", value_name="expected").with_columns(
        pl.col("term").cast(SCHEMA["term"])
    )
    joined = expected.join(sums, on=["step", "term"], how="full", coalesce=True).fill_null(0)
    bad = joined.filter(pl.col("ns") != pl.col("expected"))
    if not bad.is_empty():
        raise IdentityError(
            f"anatomy intervals do not sum to the per-step table on steps "
            f"{bad['step'].unique().sort().head(10).to_list()}"
        )
