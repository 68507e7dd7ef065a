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
- threads: a CPU event's (pid, tid) becomes globalTid = trace_schema.global_tid(pid, tid) (a tid quoted, as older
  Kineto releases write it, is the integer it spells). Kineto puts GPU events under the device's number, not a
  process; torch.profiler traces one process per file, so every GPU op gets globalPid = trace_schema.global_pid
  of that process (a file with CPU events of several processes, or with a pid or tid outside that numbering, is
  refused).
- times: ts and dur are microseconds written as decimals (Kineto writes integer ns / 1000 with three
  digits, ts counted from its base time; the base is not added back, as only differences matter). A time
  point t µs becomes round(1000 t) ns, computed exactly in decimal arithmetic (the JSON numbers are never
  floats: a double near 5e12 µs cannot hold every ns) with ties to even; an event's end is
  round(1000 (ts + dur)). Both ends are points on one timeline rounded by one non-decreasing function, so no
  two points change order and the identity, checked on the integer ns, holds exactly.
- GPU info: deviceProperties (id, name; no bandwidth, so the floor takes the datasheet's by name).
  There is no capture metadata: the floor needs --model and --ctx.

The file is parsed as a stream of batches of many events, each decoded by msgspec in one call
(analysis.readers.json_stream), never as one document: a trace of millions of events holds one block of text, one
batch of events and the rows read so far (analysis.readers.kineto_events: integers, names as categories). A time
keeps its JSON text (never a float) until it is rounded to ns, a batch at a time (analysis.readers.json_times);
a damaged event (of the wrong shape, a time or id that is not a number, an id beyond 64 bits, nesting too deep)
is refused in one line.
"""

import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
from gapprof.analysis.readers import memory
from gapprof.analysis.readers.json_stream import UTF8_BOM, unpacked
from gapprof.analysis.readers.kineto_events import Events, is_int64, read_events
from gapprof.analysis.readers.raw_trace import (
    API_SCHEMA,
    DRIVER,
    GPU_INFO_SCHEMA,
    GPU_SCHEMA,
    KERNEL,
    MEMCPY,
    MEMSET,
    NVTX,
    RANGES_SCHEMA,
    RUNTIME,
    STRINGS_SCHEMA,
    RawTrace,
)

from gapprof import trace_schema
from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name

TABLES = {"ranges": NVTX, "runtime": RUNTIME, "driver": DRIVER, "kernel": KERNEL, "memcpy": MEMCPY, "memset": MEMSET}
_COPY = re.compile(r"\b([HDAP])to([HDAP])\b")
COPY_KINDS = {
    "HtoD": 1,
    "DtoH": 2,
    "HtoA": 3,
    "AtoH": 4,
    "AtoA": 5,
    "AtoD": 6,
    "DtoA": 7,
    "DtoD": 8,
    "HtoH": 9,
    "PtoP": 10,
}

# Byte order marks of UTF-16 text, as a Windows shell's redirect writes it.
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_TID = 1 << trace_schema.TID_BITS
MAX_PID = 1 << (63 - trace_schema.TID_BITS)


def claims(path: Path) -> bool:
    """Whether `path` is a file whose content (gunzipped if need be) starts as JSON does, after a UTF-8 byte order
    mark if any; or one named .json or .json.gz whose first bytes say nothing (empty, spaces, a gzip stream cut or
    damaged at its start): read as a Chrome trace, whose reader says what is wrong with it. UTF-16 text is refused
    here in one line: no JSON reader of gapprof's takes it."""
    try:
        with unpacked(path) as binary:
            head = binary.read(64)
    except (OSError, EOFError):  # missing, unreadable or a damaged gzip
        head = b""
    if head.startswith(UTF16_BOMS):
        raise GapprofError(f"{path}: UTF-16 text; gapprof reads Chrome traces in UTF-8: save the trace as UTF-8")
    head = head.removeprefix(UTF8_BOM).lstrip()
    return head[:1] in (b"{", b"[") or (not head and path.name.endswith((".json", ".json.gz")))


def _host_pid(path: Path, events: Events) -> int:
    """The one process of the CPU events, each of whose threads has a globalTid of its own."""
    cpu = pl.concat([events.frame(name).select("where", "within") for name in ("ranges", "calls")])
    # pid << TID_BITS must fit 64 bits, and a tid its bits, or two threads would share a globalTid.
    beyond = cpu.filter(
        ~pl.col("where").is_between(0, MAX_PID, closed="left") | ~pl.col("within").is_between(0, MAX_TID, closed="left")
    )
    if len(beyond):
        pid, tid = beyond.row(0)
        raise GapprofError(
            f"{path}: a CPU event of process {pid}, thread {tid}: ids outside nsys's numbering of threads (a process "
            f"id below 2^{63 - trace_schema.TID_BITS}, a thread id below 2^{trace_schema.TID_BITS}, neither negative): "
            "a damaged trace"
        )
    pids = sorted(cpu["where"].unique())
    if not pids:
        raise GapprofError(
            f"{path}: a torch.profiler trace with GPU events but no CPU events (no API calls or ranges); profile "
            f"with activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]"
        )
    if len(pids) > 1:
        raise GapprofError(
            f"{path}: CPU events of {len(pids)} processes ({', '.join(map(str, pids[:5]))}); "
            f"torch.profiler writes one trace per process: pass one process's trace"
        )
    return pids[0]


def _distinct(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """The distinct (kind, name) of a frame's events, by label, with `pair` numbering them; and per event its
    pair, so that a name is looked at once however many events carry it."""
    pairs = rows.select("kind", "name")  # categories: compared as integers
    distinct = pairs.unique(maintain_order=True).with_row_index("pair")
    per_event = pairs.join(distinct, on=["kind", "name"], how="left", maintain_order="left")["pair"]
    return distinct.select(pl.col("kind", "name").cast(pl.String)), per_event


def _global_tid() -> pl.Expr:
    """trace_schema.global_tid of each event's (pid, tid)."""
    tid_mask = (1 << trace_schema.TID_BITS) - 1
    pid_shifted = pl.col("where") * (1 << trace_schema.TID_BITS)  # pid << TID_BITS: polars has no shift
    return pid_shifted | (pl.col("within") & tid_mask)


def _ranges_frame(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select(
        "start",
        "end",
        globalTid=_global_tid(),
        message=pl.col("name").cast(pl.String),
        domain=pl.lit(""),
        payload=pl.lit(None, pl.Int64),
    ).cast(RANGES_SCHEMA)


def _calls_frame(rows: pl.DataFrame, labels: pl.DataFrame, per_event: pl.Series, ids: dict[str, int]) -> pl.DataFrame:
    name_ids = pl.Series([ids[name] for name in labels["name"]], dtype=pl.Int64)
    return rows.select(
        "start",
        "end",
        globalTid=_global_tid(),
        correlationId=pl.col("correlation"),
        nameId=name_ids.gather(per_event),
        source=labels["kind"].gather(per_event),
    ).cast(API_SCHEMA)


def _op_names(kind: str, name: str, ids: dict[str, int]) -> tuple:
    """(shortName id, demangledName id, copyKind) of a GPU op's Kineto name."""
    if kind == "kernel":
        return ids[short_name(name)], ids[name], None
    direction = _COPY.search(name) if kind == "memcpy" else None
    return None, None, COPY_KINDS.get("to".join(direction.groups())) if direction else None


def _gpu_frame(rows: pl.DataFrame, labels: pl.DataFrame, per_event: pl.Series, ids: dict[str, int], pid: int):
    known = pl.DataFrame(
        [_op_names(kind, name, ids) for kind, name in labels.iter_rows()],
        schema={"shortName": pl.Int64, "demangledName": pl.Int64, "copyKind": pl.Int64},
        orient="row",
    )
    frame = rows.select(
        "start",
        "end",
        deviceId="where",
        streamId="within",
        correlationId="correlation",
        kind=labels["kind"].gather(per_event),
    )
    return (
        frame.hstack(known.gather(per_event))
        .with_columns(globalPid=pl.lit(trace_schema.global_pid(pid), pl.Int64), graphExecId=pl.lit(None, pl.Int64))
        .select(*GPU_SCHEMA)
        .cast(GPU_SCHEMA)
    )


def _string_ids(calls: pl.DataFrame, gpu: pl.DataFrame) -> dict[str, int]:
    """StringIds for every API name, kernel name and kernel short name, numbered from 1 in sorted order."""
    kernels = set(gpu.filter(pl.col("kind") == "kernel")["name"])
    names = set(calls["name"]) | kernels | {short_name(n) for n in kernels}
    return {name: i for i, name in enumerate(sorted(names), start=1)}


def _gpu_info(properties: list) -> pl.DataFrame:
    """The devices whose id is an integer (of 64 bits); a damaged entry names no device, as one without an id."""
    rows = [(p["id"], str(p.get("name", ""))) for p in properties if isinstance(p, dict) and is_int64(p.get("id"))]
    return pl.DataFrame(rows, schema={"id": pl.Int64, "name": pl.String}, orient="row").with_columns(
        memoryBandwidth=pl.lit(None, GPU_INFO_SCHEMA["memoryBandwidth"])
    )


def read(path: Path, progress: Callable[[str], None] = lambda _: None) -> RawTrace:
    """Parse the Chrome trace at `path`, refusing one with no GPU kernels, into its frames (without ranges,
    analysis.step_finding finds the steps)."""
    path = Path(path)
    progress(f"reading {path}")
    events = read_events(path)
    # The columns read are a small part of what attribution takes; the file's size does not tell the rows in advance.
    gpu_rows, call_rows = events.frame("gpu"), events.frame("calls")
    memory.check_fits(path, len(gpu_rows) + len(call_rows), f"{len(gpu_rows):,} GPU ops, {len(call_rows):,} API calls")
    (calls, call_pairs), (gpu, gpu_pairs) = _distinct(call_rows), _distinct(gpu_rows)
    if "kernel" not in set(gpu["kind"]):
        raise GapprofError(
            f"{path}: a torch.profiler trace with no GPU kernels (a CPU-only trace?); profile with "
            f"activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] on a GPU"
        )
    pid = _host_pid(path, events)
    ids = _string_ids(calls, gpu)
    present = {"ranges"} | set(calls["kind"]) | set(gpu["kind"])
    return RawTrace(
        path=path,
        tables=frozenset(TABLES[k] for k in present),
        meta={},
        unparsable_meta=(),
        ranges=_ranges_frame(events.frame("ranges")),
        calls=_calls_frame(call_rows, calls, call_pairs, ids),
        gpu=_gpu_frame(gpu_rows, gpu, gpu_pairs, ids, pid),
        strings=pl.DataFrame({"id": list(ids.values()), "value": list(ids)}, schema=STRINGS_SCHEMA),
        gpu_info=_gpu_info(events.properties),
        open_ranges=0,  # Kineto writes complete events only
        notes=(),
    )
