"""Decode steps: the NVTX ranges whose message matches a pattern, in any domain, on any thread.

A matching range that begins inside another matching range on the same thread (nested, or overlapping a
start/end range) is not a step of its own: it is counted in its enclosing step's `nested` column, so no
time is attributed twice. Steps are numbered per thread from 0 in start order; the first `skip` steps of
each thread are warm-up.
"""

import polars as pl
from gapprof.analysis.regex import regex_error

from gapprof.errors import GapprofError
from gapprof.nvtx_names import PREFILL_MESSAGE, STEP_MESSAGE

DEFAULT_RANGE = STEP_MESSAGE


class NoStepRanges(GapprofError):
    """No NVTX range matches the step pattern; the message lists the ranges the trace has."""


def _check_pattern(pattern: str) -> None:
    error = regex_error(_whole(pattern))
    if error is not None:
        raise GapprofError(f"--range {pattern!r} is not a valid regular expression ({error})")


def range_names(ranges: pl.DataFrame) -> pl.DataFrame:
    """Distinct (domain, message) with counts, most frequent first: what the trace offers when nothing matches."""
    return (
        ranges.group_by("domain", "message")
        .len("count")
        .sort(["count", "domain", "message"], descending=[True, False, False])
    )


def _no_match_error(ranges: pl.DataFrame, pattern: str) -> NoStepRanges:
    if ranges.is_empty():
        return NoStepRanges(f"no NVTX ranges match --range {pattern!r}: the trace has no closed NVTX ranges")
    names = range_names(ranges)
    shown = ", ".join(f"{d + ':' if d else ''}{m} ({c})" for d, m, c in names.head(20).iter_rows())
    more = f", and {names.height - 20} more" if names.height > 20 else ""
    return NoStepRanges(f"no NVTX ranges match --range {pattern!r}; ranges found: {shown}{more}")


def _whole(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _whole_match(pattern: str) -> pl.Expr:
    return pl.col("message").str.contains(_whole(pattern))


def left_out_prefills(ranges: pl.DataFrame, pattern: str) -> int:
    """Prefill ranges (gapprof.mark_steps, `profile --mark forward`) that the step pattern does not match: a
    forward of the whole prompt is no decode step, and attribute says how many it left out."""
    return ranges.filter((pl.col("message") == PREFILL_MESSAGE) & ~_whole_match(pattern)).height


def find_steps(ranges: pl.DataFrame, pattern: str) -> pl.DataFrame:
    """One row per step: step (global id), globalTid, index (per thread), t0, t1, payload, nested.

    `pattern` is a regular expression that must match the whole message, so `decode_step` does not pick up
    `decode_step_inner` while `decode_.*` does.
    """
    _check_pattern(pattern)
    matched = ranges.filter(_whole_match(pattern))
    if matched.is_empty():
        raise _no_match_error(ranges, pattern)
    # Outer ranges first on ties so an inner range pushed in the same ns counts as nested.
    matched = matched.sort(["globalTid", "start", "end"], descending=[False, False, True])
    prior_end = pl.col("end").cum_max().shift(1).over("globalTid")
    matched = matched.with_columns(is_nested=prior_end.is_not_null() & (pl.col("start") < prior_end))
    outer = (
        matched.filter(~pl.col("is_nested"))
        .with_columns(index=pl.int_range(pl.len()).over("globalTid"))
        .select("globalTid", "index", t0="start", t1="end", payload="payload")
    )
    nested = (
        matched.filter(pl.col("is_nested"))
        .select("globalTid", t0="start")
        .join_asof(
            outer.select("globalTid", "t0", parent_t0="t0"), on="t0", by="globalTid", check_sortedness=False
        )  # both sorted by (globalTid, start) above
        .group_by("globalTid", "parent_t0")
        .len("nested")
    )
    steps = (
        outer.join(nested, left_on=["globalTid", "t0"], right_on=["globalTid", "parent_t0"], how="left")
        .with_columns(pl.col("nested").fill_null(0).cast(pl.Int64))
        .sort("t0", "globalTid")
    )
    return steps.with_row_index("step").with_columns(pl.col("step").cast(pl.Int64))


def default_skip(steps: pl.DataFrame, meta: dict) -> tuple[int, str]:
    """Warm-up steps to skip per thread, and why: the capture's own warm-up, else a tenth of the steps (1 to 5)."""
    if "warmup" in meta:
        return int(meta["warmup"]), "the capture's warm-up steps"
    per_thread = steps.group_by("globalTid").len()["len"].max()
    if per_thread < 2:
        return 0, "a single step per thread"
    # The first steps carry one-off costs (allocator growth, library handles, graph capture).
    why = "no warm-up in the trace's metadata" if meta else "no capture metadata"
    return min(5, max(1, per_thread // 10)), f"{why}: a tenth of the steps, 1 to 5"


def mark_warmup(steps: pl.DataFrame, skip: int) -> pl.DataFrame:
    if skip < 0:
        raise GapprofError(f"--skip must be >= 0, got {skip}")
    steps = steps.with_columns(warmup=pl.col("index") < skip)
    if steps["warmup"].all():
        most = steps.group_by("globalTid").len()["len"].max()
        raise GapprofError(f"all steps are warm-up: --skip {skip} but at most {most} steps per thread")
    return steps
