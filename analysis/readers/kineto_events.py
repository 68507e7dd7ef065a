"""Chrome trace events streamed into columns (analysis.readers.json_stream): per frame (ranges, API calls, GPU
ops) the integers packed as int64, 8 bytes a value, and every name interned once; times rounded to integer ns
exactly as analysis.readers.kineto defines them.
"""

from array import array
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
from gapprof.analysis.readers import json_stream
from gapprof.analysis.readers.json_stream import Fraction

from gapprof.errors import GapprofError

# Event category, in lower case (older Kineto releases wrote Runtime, Kernel, Memcpy, Memset) -> (frame, kind).
CATEGORIES = {
    "user_annotation": ("ranges", None),
    "cuda_runtime": ("calls", "runtime"),
    "runtime": ("calls", "runtime"),
    "cuda_driver": ("calls", "driver"),
    "kernel": ("gpu", "kernel"),
    "gpu_memcpy": ("gpu", "memcpy"),
    "memcpy": ("gpu", "memcpy"),
    "gpu_memset": ("gpu", "memset"),
    "memset": ("gpu", "memset"),
}
NUMBERS = (int, Fraction)  # what a time may be as parsed


def to_ns(us) -> int:
    """Integer ns of a time in µs (an int, or a Fraction or Decimal): round(1000 us), ties to even, exactly."""
    if type(us) is int:
        return us * 1000
    return int(Decimal(us).scaleb(3).to_integral_value(ROUND_HALF_EVEN))


def _exact_ns(us) -> int | None:
    """1000 us when that is an integer read straight off the text (at most three decimals, as Kineto writes),
    else None."""
    if type(us) is int:
        return us * 1000
    whole, _, fraction = us.partition(".")
    if len(fraction) <= 3 and fraction.isdigit():
        return int(whole + fraction.ljust(3, "0"))
    return None


def _times(start, dur) -> tuple[int, int]:
    """(start ns, end ns) of an event: both ends rounded as points, end = round(1000 (ts + dur))."""
    if type(start) not in NUMBERS or type(dur) not in NUMBERS:
        raise TypeError("ts or dur is not a number")
    start_ns, dur_ns = _exact_ns(start), _exact_ns(dur)
    if start_ns is None or dur_ns is None:  # a fraction beyond ns: round each end exactly
        return to_ns(start), to_ns(Decimal(start) + Decimal(dur))
    return start_ns, start_ns + dur_ns


# An absent correlation id, in a column of 64-bit integers; CUPTI's ids are unsigned 32-bit, never this.
NO_ID = -(1 << 63)


class Columns:
    """One frame's rows as they stream in: integer columns packed as int64, names as ids of first appearance."""

    def __init__(self):
        self.start, self.end, self.where, self.within = array("q"), array("q"), array("q"), array("q")
        self.correlation, self.kind, self.name = array("q"), array("q"), array("q")

    def integers(self, column: str) -> np.ndarray:
        return np.frombuffer(getattr(self, column), dtype=np.int64) if len(self.start) else np.zeros(0, np.int64)


class Rows:
    """The events read, per frame (ranges, calls, gpu), with every name interned once."""

    def __init__(self):
        self.frames = {"ranges": Columns(), "calls": Columns(), "gpu": Columns()}
        self.names: dict[str, int] = {}  # name -> id of first appearance
        self.kinds: dict[str, int] = {}
        self.pids: set[int] = set()  # processes of the CPU events
        self.properties: list = []  # deviceProperties

    def add(self, frame: str, kind: str, event: dict) -> None:
        args = event.get("args") or {}
        start, end = _times(event["ts"], event.get("dur", 0))
        correlation = args.get("correlation")
        if correlation is not None and type(correlation) is not int:
            raise TypeError("correlation is not an integer")
        if frame == "gpu":
            where, within = int(args.get("device", event.get("pid"))), int(args.get("stream", event.get("tid")))
        else:
            where, within = int(event["pid"]), int(event["tid"])
            self.pids.add(where)
        name = event.get("name", "")
        columns = self.frames[frame]
        columns.start.append(start)
        columns.end.append(end)
        columns.where.append(where)
        columns.within.append(within)
        columns.correlation.append(NO_ID if correlation is None else correlation)
        columns.kind.append(self.kinds.setdefault(kind or "range", len(self.kinds)))
        columns.name.append(self.names.setdefault(name if type(name) is str else str(name), len(self.names)))


def read_events(path: Path) -> Rows:
    """Complete events ('X') of the categories read, streamed from the file into columns."""
    rows, found = Rows(), {}
    try:
        for index, event in enumerate(json_stream.walk(path, found)):
            if type(event) is not dict or event.get("ph") != "X":
                continue
            frame, kind = CATEGORIES.get(str(event.get("cat", "")).lower(), (None, None))
            if frame is None:
                continue
            try:
                rows.add(frame, kind, event)
            except OverflowError:  # an ArithmeticError too: caught first
                raise GapprofError(
                    f"{path}: event {index} ({event.get('cat')} {event.get('name')!r}) has a "
                    f"number beyond 64 bits: a damaged trace"
                ) from None
            except (KeyError, TypeError, ValueError, ArithmeticError):
                raise GapprofError(
                    f"{path}: event {index} ({event.get('cat')} {event.get('name')!r}) lacks a "
                    f"numeric ts, dur, pid, tid or correlation: a damaged trace"
                ) from None
    except json_stream.UNREADABLE as error:
        raise GapprofError(f"{path}: not a Chrome trace: unreadable JSON ({error})") from None
    except RecursionError:
        raise GapprofError(f"{path}: not a Chrome trace: JSON nested deeper than a trace event ever is") from None
    if not found.get("events"):
        raise GapprofError(
            f"{path}: JSON but not a Chrome trace (no traceEvents list); expected the output of "
            f"torch.profiler's export_chrome_trace"
        )
    properties = found.get("deviceProperties")
    rows.properties = properties if isinstance(properties, list) else []
    return rows
