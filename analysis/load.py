"""Open an Nsight Systems SQLite export (or a gapprof CUPTI trace) and read it into normalized polars frames.

Bulk tables (kernels, copies, API calls) are read through ADBC, which hands SQLite rows to polars as Arrow
columns without building a Python object per value; small tables go through sqlite3.
"""
import json
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_sqlite.dbapi as adbc
import polars as pl

from gapprof.analysis.compressed import unpacked
from gapprof.errors import GapprofError
from gapprof.paths import sibling
from gapprof import trace_schema
from gapprof.nsight import find_nsys, nsys_export_command

KERNEL = "CUPTI_ACTIVITY_KIND_KERNEL"
MEMCPY = "CUPTI_ACTIVITY_KIND_MEMCPY"
MEMSET = "CUPTI_ACTIVITY_KIND_MEMSET"
# Graph-level tracing (`nsys --cuda-graph-trace=graph`): one row per graph execution, its nodes not traced.
GRAPH = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
DRIVER = "CUPTI_ACTIVITY_KIND_DRIVER"
NVTX = "NVTX_EVENTS"
GPU_INFO = "TARGET_INFO_GPU"

PID_MASK = 1 << trace_schema.TID_BITS  # globalPid = globalTid with the tid bits cleared
# The process of a thread, as the GPU tables name it (globalPid), from its globalTid column.
GLOBAL_PID = pl.col("globalTid") - pl.col("globalTid") % PID_MASK

GPU_KINDS = ("kernel", "memcpy", "memset", "graph")
API_SOURCES = ("runtime", "driver")

RANGES_SCHEMA = {"start": pl.Int64, "end": pl.Int64, "globalTid": pl.Int64, "message": pl.String,
                 "domain": pl.String, "payload": pl.Int64}
API_SCHEMA = {"start": pl.Int64, "end": pl.Int64, "globalTid": pl.Int64, "correlationId": pl.Int64,
              "nameId": pl.Int64, "source": pl.Enum(API_SOURCES)}
GPU_SCHEMA = {"start": pl.Int64, "end": pl.Int64, "deviceId": pl.Int64, "streamId": pl.Int64,
              "correlationId": pl.Int64, "globalPid": pl.Int64, "kind": pl.Enum(GPU_KINDS),
              "shortName": pl.Int64, "demangledName": pl.Int64, "copyKind": pl.Int64, "graphExecId": pl.Int64}


@dataclass(frozen=True)
class Trace:
    """An opened trace: its path, the tables present, the capture metadata ({} for foreign traces) and the
    metadata keys left out of it because their value is not JSON."""
    path: Path
    tables: frozenset
    meta: dict
    unparsable_meta: tuple[str, ...]


# An export compressed with xz, as traces/ ships them (5-9x smaller than the .sqlite).
PACKED = ".sqlite.xz"


def beside(path: Path) -> Path | None:
    """The export beside a .nsys-rep: its .sqlite, else its .sqlite.xz, else None."""
    return next((p for p in (sibling(path, ".sqlite"), sibling(path, PACKED)) if p.exists()), None)


def sqlite_for(path: Path) -> Path:
    """The SQLite file to read for `path`: itself (unpacked if it is a .sqlite.xz), or for a .nsys-rep the export
    beside it (exported if need be)."""
    if not path.exists():
        raise GapprofError(f"{path}: no such file")
    if path.name.endswith(PACKED):
        return unpacked(path)
    if path.suffix != ".nsys-rep":
        return path
    target = beside(path)
    if target is not None:
        return unpacked(target) if target.name.endswith(PACKED) else target
    target = sibling(path, ".sqlite")
    try:
        nsys = find_nsys()
    except GapprofError:
        raise GapprofError(
            f"{path}: no {target.name} beside it and no nsys here to export it; run "
            f"`nsys export --type sqlite --output {target} {path}` where Nsight Systems is installed "
            f"and put the .sqlite beside the .nsys-rep, or set GAPPROF_NSYS to the nsys executable") from None
    result = subprocess.run(nsys_export_command(nsys, path, target), capture_output=True, text=True)
    if result.returncode != 0 or not target.exists():
        last = (result.stderr or result.stdout).strip().splitlines()
        raise GapprofError(f"{path}: `{nsys} export --type sqlite` failed: {last[-1] if last else result.returncode}")
    return target


# A .sqlite older than its .nsys-rep by more than this was exported from an earlier report (a fresh clone or
# copy leaves both with about the same time, so only a clear gap says so).
STALE_EXPORT_S = 60


def stale_export_note(path: Path) -> str | None:
    """A note when `path` is a .nsys-rep whose export beside it is older than the report."""
    target = beside(Path(path)) if Path(path).suffix == ".nsys-rep" else None
    if target is None:
        return None
    behind = Path(path).stat().st_mtime - target.stat().st_mtime
    if behind <= STALE_EXPORT_S:
        return None
    return (f"{target} is {behind / 60:.0f} min older than {Path(path).name}, so it may be the export of an earlier "
            "report; it was read as it is (delete it to export the report again)")


def open_trace(path: Path) -> Trace:
    """Check that `path` is an SQLite trace with the tables attribution needs, and read its metadata."""
    path = sqlite_for(Path(path))
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise GapprofError(f"{path}: not an SQLite file "
                               "(expected `nsys export --type sqlite` output or a .nsys-rep)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = frozenset(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
        meta, unparsable = parse_meta(trace_schema.read_meta_text(conn))
    except sqlite3.DatabaseError as error:
        raise GapprofError(f"{path}: unreadable SQLite file ({error})") from None
    finally:
        conn.close()
    missing = []
    if KERNEL not in tables and GRAPH not in tables:
        missing.append(f"no {KERNEL} table (capture with `nsys profile -t cuda`)")
    if RUNTIME not in tables and DRIVER not in tables:
        missing.append(f"no {RUNTIME} or {DRIVER} table (capture with `nsys profile -t cuda`)")
    if NVTX not in tables:
        missing.append(f"no {NVTX} table (capture with `nsys profile -t nvtx`)")
    if "StringIds" not in tables:
        missing.append("no StringIds table (not an `nsys export --type sqlite` file)")
    if missing:
        raise GapprofError(f"{path}: " + "; ".join(missing))
    return Trace(path=path, tables=tables, meta=meta, unparsable_meta=unparsable)


def parse_meta(stored: dict[str, str]) -> tuple[dict, tuple[str, ...]]:
    """The metadata values that are JSON, and the keys of those that are not: a damaged value is left out
    (the analysis goes on as for a trace without that key) rather than guessed at."""
    meta, unparsable = {}, []
    for key, text in stored.items():
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError:
            unparsable.append(key)
    return meta, tuple(unparsable)


def _read(trace: Trace, query: str, schema: dict) -> pl.DataFrame:
    # ADBC infers column types from values (an empty result comes back all Int64), so cast to the fixed schema.
    with adbc.connect(str(trace.path)) as conn:
        frame = pl.read_database(query, conn)
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def read_strings(trace: Trace) -> pl.DataFrame:
    return _read(trace, "SELECT id, value FROM StringIds", {"id": pl.Int64, "value": pl.String})


def read_ranges(trace: Trace) -> pl.DataFrame:
    """Every closed NVTX push/pop or start/end range, with its message and domain name resolved."""
    query = f"""
        SELECT e.start, e."end", e.globalTid,
               COALESCE(e.text, s.value, '') AS message,
               COALESCE(d.name, '') AS domain,
               COALESCE(e.uint64Value, e.int64Value) AS payload
        FROM {NVTX} e
        LEFT JOIN StringIds s ON s.id = e.textId
        LEFT JOIN (SELECT domainId, globalTid / {PID_MASK} AS pid,
                          MIN(COALESCE(text, (SELECT value FROM StringIds WHERE id = textId))) AS name
                   FROM {NVTX} WHERE eventType = {trace_schema.NVTX_DOMAIN_CREATE} GROUP BY domainId, pid) d
               ON d.domainId = e.domainId AND d.pid = e.globalTid / {PID_MASK}
        WHERE e.eventType IN ({trace_schema.NVTX_PUSH_POP_RANGE}, {trace_schema.NVTX_START_END_RANGE})
          AND e."end" IS NOT NULL"""
    return _read(trace, query, RANGES_SCHEMA)


def count_open_ranges(trace: Trace) -> int:
    """NVTX push/pop and start/end ranges that never ended (read_ranges leaves them out)."""
    query = (f"SELECT COUNT(*) AS n FROM {NVTX} WHERE eventType IN ({trace_schema.NVTX_PUSH_POP_RANGE}, "
             f'{trace_schema.NVTX_START_END_RANGE}) AND "end" IS NULL')
    return _read(trace, query, {"n": pl.Int64})["n"][0]


def read_launch_keys(trace: Trace) -> pl.DataFrame:
    """(globalPid, correlationId) of every runtime and driver API call, on any thread: what a GPU op joins."""
    parts = [f"SELECT globalTid, correlationId FROM {table} WHERE correlationId IS NOT NULL"
             for table in (RUNTIME, DRIVER) if table in trace.tables]
    calls = _read(trace, " UNION ALL ".join(parts), {"globalTid": pl.Int64, "correlationId": pl.Int64})
    return calls.select(GLOBAL_PID.alias("globalPid"), "correlationId").unique()


def read_api_calls(trace: Trace, threads: list[int] | None = None) -> pl.DataFrame:
    """Runtime and driver API calls made on the given threads (globalTid), on every thread for None."""
    if threads is not None and not threads:
        return pl.DataFrame(schema=API_SCHEMA)
    where = "TRUE" if threads is None else f"globalTid IN ({', '.join(str(int(t)) for t in threads)})"
    parts = [f"SELECT start, \"end\", globalTid, correlationId, nameId, '{source}' AS source FROM {table} WHERE {where}"
             for source, table in (("runtime", RUNTIME), ("driver", DRIVER)) if table in trace.tables]
    return _read(trace, " UNION ALL ".join(parts), API_SCHEMA)


def read_gpu_ops(trace: Trace) -> pl.DataFrame:
    """Kernels, memcpys, memsets and graph executions (graph-level traces) in one frame; names stay StringIds ids
    until a table needs them.

    Each table is read on its own rather than through a UNION, so no per-row constants pass through SQLite.
    """
    common = ("start", "end", "deviceId", "streamId", "correlationId", "globalPid")
    own = {"kernel": ("shortName", "demangledName"), "memcpy": ("copyKind",), "memset": (), "graph": ("graphExecId",)}
    frames = []
    for kind, table in (("kernel", KERNEL), ("memcpy", MEMCPY), ("memset", MEMSET), ("graph", GRAPH)):
        if table in trace.tables:
            columns = common + own[kind]
            quoted = ", ".join(f'"{c}"' for c in columns)  # "end" is an SQL keyword
            query = f"SELECT {quoted} FROM {table}"
            part = _read(trace, query, {c: GPU_SCHEMA[c] for c in columns})
            frames.append(part.with_columns(kind=pl.lit(kind, GPU_SCHEMA["kind"])))
    frame = pl.concat(frames, how="diagonal")
    return frame.select((pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
                        for c, t in GPU_SCHEMA.items())


def read_gpu_info(trace: Trace) -> pl.DataFrame:
    """TARGET_INFO_GPU rows: id, name, memoryBandwidth (bytes/s); empty when the export has none."""
    schema = {"id": pl.Int64, "name": pl.String, "memoryBandwidth": pl.Int64}
    if GPU_INFO not in trace.tables:
        return pl.DataFrame(schema=schema)
    return _read(trace, f"SELECT id, COALESCE(name, '') AS name, memoryBandwidth FROM {GPU_INFO}", schema)
