"""Per-API table: what the step thread's CPU time went to, by runtime/driver API name."""

import re

import polars as pl

from gapprof.trace_schema import api_name

CATEGORIES = [
    ("graph launch", r"GraphLaunch"),
    ("launch", r"Launch"),
    ("sync", r"Synchronize|WaitEvent|StreamWait|Query"),
    ("memcpy", r"Memcpy"),
    ("memset", r"Memset"),
    ("alloc", r"Malloc|Free|MemPool|MemAlloc|MemCreate|MemMap|MemUnmap|MemRelease|HostAlloc|HostRegister"),
    ("event", r"Event"),
    ("stream", r"Stream"),
    ("graph", r"Graph"),
]
_COMPILED = [(category, re.compile(pattern)) for category, pattern in CATEGORIES]


def category(name: str) -> str:
    for cat, pattern in _COMPILED:
        if pattern.search(name):
            return cat
    return "other"


def _names(ids: list, strings: pl.DataFrame) -> pl.DataFrame:
    """nameId -> API `name` (version suffix dropped) and `category`, once per distinct id."""
    known = dict(zip(*strings.filter(pl.col("id").is_in(ids)).select("id", "value").to_dict().values()))
    names = [api_name(known.get(i, f"<string {i}>")) for i in ids]
    return pl.DataFrame(
        {"nameId": ids, "name": names, "category": [category(n) for n in names]},
        schema={"nameId": pl.Int64, "name": pl.String, "category": pl.String},
    )


def named_calls(calls: pl.DataFrame, strings: pl.DataFrame) -> pl.DataFrame:
    """calls with their API `name` (version suffix dropped) and `category`, resolved once per distinct name."""
    return calls.join(_names(calls["nameId"].unique().to_list(), strings), on="nameId", how="left")


def calls_where(calls: pl.DataFrame, strings: pl.DataFrame, keep: pl.Expr) -> pl.DataFrame:
    """The calls whose name (`keep` over nameId, name and category) is kept, named: the names are tested once per
    distinct id and the calls filtered by id, so only those kept are joined to their names."""
    names = _names(calls["nameId"].unique().to_list(), strings).filter(keep)
    return calls.filter(pl.col("nameId").is_in(names["nameId"].implode())).join(names, on="nameId", how="left")


def api_table(calls: pl.DataFrame, strings: pl.DataFrame, n_steps: int) -> pl.DataFrame:
    """calls: the measured steps' API calls. Aggregated per name id first (durations kept for the medians), then
    named: ids whose names differ only in the version suffix pool into one row."""
    duration = pl.col("end") - pl.col("start")
    per_id = calls.group_by("nameId", "source").agg(calls=pl.len(), total=duration.sum(), durations=duration)
    durations = pl.col("durations").list.explode(keep_nulls=False, empty_as_null=False)
    return (
        per_id.join(_names(per_id["nameId"].unique().to_list(), strings), on="nameId", how="left")
        .group_by("name", "source", "category")
        .agg(pl.col("calls", "total").sum(), mean_us=durations.mean() / 1000, median_us=durations.median() / 1000)
        .select(
            "name",
            pl.col("source").cast(pl.String),
            "category",
            calls_per_step=pl.col("calls") / n_steps,
            us_per_step=pl.col("total") / (1000.0 * n_steps),
            mean_us="mean_us",
            median_us="median_us",
        )
        .sort(["us_per_step", "name"], descending=[True, False])
    )
