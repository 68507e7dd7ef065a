"""Chrome trace events (analysis.readers.json_stream's batches) into one polars frame: per complete event ('X') of
the categories read, its frame (ranges, API calls, GPU ops), kind and name, and its times and ids as integers,
converted batch by batch in polars from the numbers' JSON text (times rounded to integer ns exactly, as
analysis.readers.json_times defines them).
"""

from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import polars as pl
from gapprof.analysis.readers import json_stream, json_times
from gapprof.analysis.readers.json_stream import Event

from gapprof.errors import GapprofError

# Event category, in lower case (older Kineto releases wrote Runtime, Kernel, Memcpy, Memset) -> (frame, kind).
CATEGORIES = {
    "user_annotation": ("ranges", "range"),
    "cuda_runtime": ("calls", "runtime"),
    "runtime": ("calls", "runtime"),
    "cuda_driver": ("calls", "driver"),
    "kernel": ("gpu", "kernel"),
    "gpu_memcpy": ("gpu", "memcpy"),
    "memcpy": ("gpu", "memcpy"),
    "gpu_memset": ("gpu", "memset"),
    "memset": ("gpu", "memset"),
}
SCHEMA = {
    "frame": pl.Categorical,
    "kind": pl.Categorical,
    "name": pl.Categorical,
    "start": pl.Int64,
    "end": pl.Int64,
    "where": pl.Int64,  # process (CPU) or device (GPU)
    "within": pl.Int64,  # thread (CPU) or stream (GPU)
    "correlation": pl.Int64,  # null where absent
}
NUMBER_BEYOND_64_BITS = "has a number beyond 64 bits"
LACKS_A_NUMBER = "lacks a numeric ts, dur, pid, tid or correlation"


def is_int64(value) -> bool:
    return type(value) is int and -(1 << 63) <= value < 1 << 63


class _Read(dict):
    """Whether a category is read, as written (any case): a category new to the dict is looked at once."""

    def __missing__(self, category: str) -> bool:
        self[category] = read = category.lower() in CATEGORIES
        return read


@dataclass(frozen=True)
class Events:
    """The events read: one row each (SCHEMA), and the deviceProperties list ([] where the trace has none)."""

    rows: pl.DataFrame
    properties: list

    def frame(self, name: str) -> pl.DataFrame:
        return self.rows.filter(pl.col("frame") == name)


class _Batch:
    """The events of one batch kept (complete events of the categories read), to refuse one by its index."""

    def __init__(self, path: Path, events: list[Event], first: int, read: _Read):
        self.path, self.events, self.first = path, events, first
        self.kept = [event for event in events if event.ph == "X" and read[event.cat]]

    def refused(self, row: int, what: str) -> GapprofError:
        event = self.kept[row]
        index = self.first + next(i for i, candidate in enumerate(self.events) if candidate is event)
        return GapprofError(f"{self.path}: event {index} ({event.cat} {event.name!r}) {what}: a damaged trace")

    def texts(self, field: str) -> pl.Series:
        """A time of each event, as its JSON text: joined by NUL (never inside JSON), split in polars."""
        joined = b"\0".join(map(attrgetter(field), self.kept)).decode("utf-8", "replace")
        return pl.Series(field, [joined]).str.split("\0").explode()

    def ids(self, field: str) -> pl.Series:
        """An id of each event, null where absent; one that is no integer of 64 bits is refused, but a tid written
        as a string (older Kineto releases quote it: "1234" for a thread, "stream 7" for a GPU op, whose args give
        its stream) is the integer it spells, else null: refused only where the event reads its tid."""
        values = list(map(attrgetter(field), self.kept))
        try:
            return pl.Series(field, values, dtype=pl.Int64)
        except TypeError:  # a string or an integer beyond 64 bits
            quoted = field == "tid"
            for row, value in enumerate(values):
                if value is not None and not is_int64(value) and not (quoted and type(value) is str):
                    raise self.refused(row, NUMBER_BEYOND_64_BITS if type(value) is int else LACKS_A_NUMBER) from None
        spelt = pl.Series(field, [value if type(value) is str else None for value in values], pl.String)
        numbers = pl.Series(field, [value if type(value) is int else None for value in values], pl.Int64)
        return numbers.fill_null(spelt.str.to_integer(strict=False))


def _batch_rows(batch: _Batch) -> pl.DataFrame:
    categories = pl.Series("cat", list(map(attrgetter("cat"), batch.kept)), pl.String).str.to_lowercase()
    rows = pl.DataFrame(
        {
            "frame": categories.replace_strict({cat: frame for cat, (frame, _) in CATEGORIES.items()}),
            "kind": categories.replace_strict({cat: kind for cat, (_, kind) in CATEGORIES.items()}),
            "name": pl.Series(list(map(attrgetter("name"), batch.kept)), dtype=pl.String),
            "correlation": batch.ids("args.correlation"),
            **{field: batch.ids(field) for field in ("pid", "tid", "args.device", "args.stream")},
        }
    )
    gpu = pl.col("frame") == "gpu"  # a GPU op's device and stream are its args', its pid and tid where absent
    rows = rows.with_columns(
        where=pl.when(gpu & pl.col("args.device").is_not_null()).then("args.device").otherwise("pid"),
        within=pl.when(gpu & pl.col("args.stream").is_not_null()).then("args.stream").otherwise("tid"),
    )
    ts, dur = batch.texts("ts"), batch.texts("dur").replace("", "0")
    rows = rows.hstack(json_times.times_ns(ts, dur))
    unconverted = rows.select(pl.any_horizontal(pl.col("start", "end", "where", "within").is_null()).arg_true())
    if len(unconverted):
        row = unconverted.item(0, 0)
        why = json_times.why_not_ns(ts[row], dur[row]) if rows["end"][row] is None else "not a number"
        if why == "beyond 64 bits":
            raise batch.refused(row, NUMBER_BEYOND_64_BITS)
        raise batch.refused(row, LACKS_A_NUMBER if why == "not a number" else f"has a ts + dur of {why}")
    return rows.select(*SCHEMA).cast(SCHEMA)


def read_events(path: Path) -> Events:
    """Complete events ('X') of the categories read, batch by batch from the file, in one frame."""
    found: dict = {}
    read = _Read()
    batches = (_Batch(path, events, first, read) for first, events in json_stream.batches(path, found))
    rows = [_batch_rows(batch) for batch in batches if batch.kept]
    properties = found.get("deviceProperties")
    return Events(
        rows=pl.concat(rows) if rows else pl.DataFrame(schema=SCHEMA),
        properties=properties if isinstance(properties, list) else [],
    )
