"""torch.profiler (Kineto) Chrome traces, .json or .json.gz, read into the RawTrace an nsys export gives.

The mapping onto the export's frames:
- ranges: `user_annotation` events (record_function ranges, and ProfilerStep#N when the profiler has a
  schedule), on their CPU thread; no domain, no payload. Kineto writes only complete ranges, so none is open.
- API calls: `cuda_runtime` and `cuda_driver` events, with args["correlation"] as correlationId.
- GPU ops: `kernel`, `gpu_memcpy` and `gpu_memset` events, joined to their launch through args["correlation"]
  (the CUPTI correlation id, which Kineto keeps; args["External id"] names the torch op and is not used);
  deviceId and streamId from args["device"] and args["stream"]. A kernel's name is the demangled name Kineto
  gives; its shortName is gapprof.kernel_names.short_name of it, as nsys would write. A copy's kind comes from
  the direction in its name ("Memcpy DtoH (Device -> Pinned)"), numbered as CUPTI's copyKind.
- threads: a CPU event's (pid, tid) becomes globalTid = trace_schema.global_tid(pid, tid). Kineto puts GPU
  events under the device's number, not a process; torch.profiler traces one process per file, so every GPU
  op gets globalPid = trace_schema.global_pid of that process (a file with CPU events of several processes
  is refused).
- times: ts and dur are microseconds written as decimals (Kineto writes integer ns / 1000 with three
  digits, ts counted from its base time; the base is not added back, as only differences matter). A time
  point t µs becomes round(1000 t) ns, computed exactly in decimal arithmetic (the JSON numbers are never
  floats: a double near 5e12 µs cannot hold every ns) with ties to even; an event's end is
  round(1000 (ts + dur)). Both ends are points on one timeline rounded by one non-decreasing function, so no
  two points change order and the identity, checked on the integer ns, holds exactly.
- GPU info: deviceProperties (id, name; no bandwidth, so the floor takes the datasheet's by name).
  There is no capture metadata: the floor needs --model and --ctx.
"""
import gzip
import json
import re
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl

from gapprof import trace_schema
from gapprof.analysis.readers.compressed import GZIP_MAGIC, contents
from gapprof.analysis.readers.raw_trace import (API_SCHEMA, DRIVER, GPU_INFO_SCHEMA, GPU_SCHEMA, KERNEL, MEMCPY,
                                                MEMSET, NVTX, RANGES_SCHEMA, RUNTIME, STRINGS_SCHEMA, RawTrace)
from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name

# Event category, in lower case (older Kineto releases wrote Runtime, Kernel, Memcpy, Memset) -> (frame, kind).
CATEGORIES = {"user_annotation": ("ranges", None),
              "cuda_runtime": ("calls", "runtime"), "runtime": ("calls", "runtime"), "cuda_driver": ("calls", "driver"),
              "kernel": ("gpu", "kernel"), "gpu_memcpy": ("gpu", "memcpy"), "memcpy": ("gpu", "memcpy"),
              "gpu_memset": ("gpu", "memset"), "memset": ("gpu", "memset")}
TABLES = {"ranges": NVTX, "runtime": RUNTIME, "driver": DRIVER, "kernel": KERNEL, "memcpy": MEMCPY, "memset": MEMSET}
_COPY = re.compile(r"\b([HDAP])to([HDAP])\b")
COPY_KINDS = {"HtoD": 1, "DtoH": 2, "HtoA": 3, "AtoH": 4, "AtoA": 5, "AtoD": 6, "DtoA": 7, "DtoD": 8, "HtoH": 9,
              "PtoP": 10}
NS_PER_US = Decimal(1000)


def claims(path: Path) -> bool:
    """Whether `path` is a file whose content (gunzipped if need be) starts as JSON does: read as a Chrome trace."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            if head == GZIP_MAGIC:
                f.seek(0)
                with gzip.open(f) as unzipped:
                    head = unzipped.read(64)
            else:
                head += f.read(62)
    except (OSError, EOFError):  # missing, unreadable or a damaged gzip: not this reader's to explain
        return False
    return head.lstrip()[:1] in (b"{", b"[")


def to_ns(us) -> int:
    """Integer ns of a time in µs given as a Decimal or int: round(1000 us), ties to even."""
    return int((Decimal(us) * NS_PER_US).to_integral_value(ROUND_HALF_EVEN))


def _parse(path: Path) -> tuple[list, list]:
    """(traceEvents, deviceProperties) of the Chrome trace at `path`; JSON numbers with a fraction become Decimals."""
    try:
        data = json.loads(contents(path), parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError, OSError) as error:
        raise GapprofError(f"{path}: not a Chrome trace: unreadable JSON ({error})") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise GapprofError(f"{path}: JSON but not a Chrome trace (no traceEvents list); expected the output of "
                           f"torch.profiler's export_chrome_trace")
    properties = data.get("deviceProperties") if isinstance(data, dict) else None
    return events, properties if isinstance(properties, list) else []


def _row(event: dict, frame: str, kind: str) -> tuple:
    """(start ns, end ns, pid or device, tid or stream, correlation, kind, name) of one event."""
    start, args = event["ts"], event.get("args") or {}
    times = (to_ns(start), to_ns(start + event.get("dur", 0)))
    if frame == "gpu":
        where = (int(args.get("device", event.get("pid"))), int(args.get("stream", event.get("tid"))))
    else:
        where = (int(event["pid"]), int(event["tid"]))
    return *times, *where, args.get("correlation"), kind, event.get("name", "")


def _rows(path: Path, events: list) -> dict[str, list]:
    """Complete events ('X') of the categories read, as row tuples per frame: ranges, calls, gpu."""
    rows = {"ranges": [], "calls": [], "gpu": []}
    for index, event in enumerate(events):
        if not isinstance(event, dict) or event.get("ph") != "X":
            continue
        frame, kind = CATEGORIES.get(str(event.get("cat", "")).lower(), (None, None))
        if frame is None:
            continue
        try:
            rows[frame].append(_row(event, frame, kind))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise GapprofError(f"{path}: event {index} ({event.get('cat')} {event.get('name')!r}) lacks a "
                               f"numeric ts, dur, pid or tid: a damaged trace") from None
    return rows


def _host_pid(path: Path, rows: dict[str, list]) -> int:
    pids = sorted({row[2] for frame in ("ranges", "calls") for row in rows[frame]})
    if len(pids) > 1:
        raise GapprofError(f"{path}: CPU events of {len(pids)} processes ({', '.join(map(str, pids[:5]))}); "
                           f"torch.profiler writes one trace per process: pass one process's trace")
    return pids[0]


def _cpu_columns(rows: list, ids: dict[str, int]) -> dict:
    """start, end, globalTid, correlationId, source, name and nameId of CPU event rows."""
    start, end, pid, tid, correlation, kind, name = list(zip(*rows)) or [()] * 7
    return {"start": start, "end": end,
            "globalTid": [trace_schema.global_tid(p, t) for p, t in zip(pid, tid)],
            "correlationId": correlation, "source": kind, "message": name, "nameId": [ids.get(n) for n in name]}


def _ranges_frame(rows: list) -> pl.DataFrame:
    columns = _cpu_columns(rows, {})
    frame = pl.DataFrame({c: columns[c] for c in ("start", "end", "globalTid", "message")},
                         schema={c: RANGES_SCHEMA[c] for c in ("start", "end", "globalTid", "message")})
    return frame.with_columns(domain=pl.lit(""), payload=pl.lit(None, pl.Int64))


def _calls_frame(rows: list, ids: dict[str, int]) -> pl.DataFrame:
    columns = _cpu_columns(rows, ids)
    schema = API_SCHEMA | {"source": pl.String}
    return pl.DataFrame({c: columns[c] for c in schema}, schema=schema).cast(API_SCHEMA)


def _op_names(kind: str, name: str, ids: dict[str, int]) -> tuple:
    """(shortName id, demangledName id, copyKind) of a GPU op's Kineto name."""
    if kind == "kernel":
        return ids[short_name(name)], ids[name], None
    direction = _COPY.search(name) if kind == "memcpy" else None
    return None, None, COPY_KINDS.get("to".join(direction.groups())) if direction else None


def _gpu_frame(rows: list, ids: dict[str, int], pid: int) -> pl.DataFrame:
    start, end, device, stream, correlation, kind, name = list(zip(*rows)) or [()] * 7
    known = {key: _op_names(*key, ids) for key in set(zip(kind, name))}  # once per distinct name, not per op
    short, full, copy = list(zip(*(known[key] for key in zip(kind, name)))) or [()] * 3
    frame = pl.DataFrame({
        "start": start, "end": end, "deviceId": device, "streamId": stream, "correlationId": correlation,
        "globalPid": [trace_schema.global_pid(pid)] * len(start), "kind": kind,
        "shortName": short, "demangledName": full, "copyKind": copy, "graphExecId": [None] * len(start)},
        schema={c: pl.Int64 for c in GPU_SCHEMA if c != "kind"} | {"kind": pl.String})
    return frame.select(*GPU_SCHEMA).cast(GPU_SCHEMA)


def _names(rows: dict[str, list]) -> dict[str, int]:
    """StringIds for every API name, kernel name and kernel short name, numbered from 1."""
    names = {row[6] for row in rows["calls"]}
    kernels = {row[6] for row in rows["gpu"] if row[5] == "kernel"}
    names |= kernels | {short_name(n) for n in kernels}
    return {name: i for i, name in enumerate(sorted(names), start=1)}


def _gpu_info(properties: list) -> pl.DataFrame:
    rows = [(int(p["id"]), str(p.get("name", ""))) for p in properties if isinstance(p, dict) and "id" in p]
    return pl.DataFrame(rows, schema={"id": pl.Int64, "name": pl.String}, orient="row").with_columns(
        memoryBandwidth=pl.lit(None, GPU_INFO_SCHEMA["memoryBandwidth"]))


def read(path: Path, progress: Callable[[str], None] = lambda _: None) -> RawTrace:
    """Parse the Chrome trace at `path`, refusing one with no GPU kernels, into its frames (without ranges,
    analysis.step_finding finds the steps)."""
    path = Path(path)
    progress(f"reading {path}")
    events, properties = _parse(path)
    rows = _rows(path, events)
    if not any(row[5] == "kernel" for row in rows["gpu"]):
        raise GapprofError(
            f"{path}: a torch.profiler trace with no GPU kernels (a CPU-only trace?); profile with "
            f"activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] on a GPU")
    ids = _names(rows)
    present = {"ranges"} | {row[5] for frame in ("calls", "gpu") for row in rows[frame]}
    return RawTrace(path=path, tables=frozenset(TABLES[k] for k in present), meta={}, unparsable_meta=(),
                    ranges=_ranges_frame(rows["ranges"]), calls=_calls_frame(rows["calls"], ids),
                    gpu=_gpu_frame(rows["gpu"], ids, _host_pid(path, rows)),
                    strings=pl.DataFrame({"id": list(ids.values()), "value": list(ids)}, schema=STRINGS_SCHEMA),
                    gpu_info=_gpu_info(properties),
                    open_ranges=0,  # Kineto writes complete events only
                    notes=())
