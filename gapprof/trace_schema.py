"""The subset of the Nsight Systems SQLite export that gapprof reads, and gapprof's own metadata table.

The CUPTI backend writes exactly these tables and columns, and tests build fixtures from them, so one loader
serves nsys exports and CUPTI traces alike. Column names and meanings follow `nsys export --type sqlite`:
timestamps are integer ns; kernel names are StringIds ids; globalTid = (pid << 24) | tid with higher bits
for the host, and globalPid is globalTid with the tid bits cleared.
"""

import json
import re
import sqlite3
from pathlib import Path

META_TABLE = "GAPPROF_META"
# globalTid = (pid << TID_BITS) | tid, as nsys numbers threads; globalPid is globalTid with the tid bits cleared.
TID_BITS = 24

# NVTX_EVENTS.eventType values used by nsys.
NVTX_PUSH_POP_RANGE = 59
NVTX_START_END_RANGE = 60
NVTX_DOMAIN_CREATE = 75

TABLES = {
    "StringIds": "id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL",
    "CUPTI_ACTIVITY_KIND_KERNEL": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, "
        "streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, demangledName INTEGER NOT NULL, "
        "shortName INTEGER NOT NULL, mangledName INTEGER, gridX INTEGER, gridY INTEGER, gridZ INTEGER, "
        "blockX INTEGER, blockY INTEGER, blockZ INTEGER, graphNodeId INTEGER"
    ),
    "CUPTI_ACTIVITY_KIND_MEMCPY": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, "
        "streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL, "
        "copyKind INTEGER NOT NULL, srcKind INTEGER, dstKind INTEGER, graphNodeId INTEGER"
    ),
    "CUPTI_ACTIVITY_KIND_MEMSET": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, "
        "streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, value INTEGER NOT NULL, "
        "bytes INTEGER NOT NULL, graphNodeId INTEGER, memKind INTEGER"
    ),
    # Graph-level tracing: one row per graph execution, its nodes not traced (nsys --cuda-graph-trace=graph).
    "CUPTI_ACTIVITY_KIND_GRAPH_TRACE": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, "
        "greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, "
        "graphId INTEGER NOT NULL, graphExecId INTEGER NOT NULL"
    ),
    "CUPTI_ACTIVITY_KIND_RUNTIME": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER NOT NULL, globalTid INTEGER, "
        "correlationId INTEGER, nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, callchainId INTEGER"
    ),
    "CUPTI_ACTIVITY_KIND_DRIVER": (
        "start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER NOT NULL, globalTid INTEGER, "
        "correlationId INTEGER, nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, callchainId INTEGER"
    ),
    "NVTX_EVENTS": (
        "start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, rangeId INTEGER, category INTEGER, "
        "color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER, textId INTEGER, domainId INTEGER, "
        "uint64Value INTEGER, int64Value INTEGER, doubleValue REAL, uint32Value INTEGER, int32Value INTEGER, "
        "floatValue REAL, jsonTextId INTEGER, jsonText TEXT"
    ),
    "TARGET_INFO_GPU": (
        "id INTEGER NOT NULL, name TEXT, busLocation TEXT, totalMemory INTEGER, memoryBandwidth INTEGER, "
        "clockRate INTEGER, smCount INTEGER, uuid TEXT, cuDevice INTEGER"
    ),
    META_TABLE: "key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL",
}


_API_VERSION = re.compile(r"_v\d+$")


def api_name(name: str) -> str:
    """A CUDA API name without the version suffix the export gives runtime calls (cudaLaunchKernel_v7000)."""
    return _API_VERSION.sub("", name)


def create_tables(conn: sqlite3.Connection, tables=TABLES) -> None:
    for name, columns in tables.items():
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")


def column_names(table: str) -> list[str]:
    return [column.split()[0] for column in TABLES[table].split(", ")]


def insert_rows(conn: sqlite3.Connection, table: str, rows) -> None:
    """Rows given as dicts by column name; a column a row leaves out is NULL."""
    columns = column_names(table)
    conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [tuple(row.get(c) for c in columns) for row in rows],
    )


def write_meta(conn: sqlite3.Connection, meta: dict) -> None:
    """Store capture metadata as JSON values, one row per key."""
    create_tables(conn, {META_TABLE: TABLES[META_TABLE]})
    conn.executemany(
        f"INSERT OR REPLACE INTO {META_TABLE} (key, value) VALUES (?, ?)",
        [(key, json.dumps(value)) for key, value in meta.items()],
    )
    conn.commit()


def read_meta_text(conn: sqlite3.Connection) -> dict[str, str]:
    """The capture metadata as stored, key -> JSON text, or {} for a trace that was not made by gapprof."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (META_TABLE,)).fetchone()
    if not exists:
        return {}
    return dict(conn.execute(f"SELECT key, value FROM {META_TABLE}"))


def global_tid(pid: int, tid: int) -> int:
    return (pid << TID_BITS) | (tid & ((1 << TID_BITS) - 1))


def global_pid(pid: int) -> int:
    return pid << TID_BITS


GPU_OP_TABLES = (
    "CUPTI_ACTIVITY_KIND_KERNEL",
    "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET",
    "CUPTI_ACTIVITY_KIND_GRAPH_TRACE",
)


def gpu_op_counts(path: Path) -> dict[str, int]:
    """Rows of each GPU op table in the trace at `path`; a table nsys did not write (a graph-level trace has no
    kernel table, a node-level one no graph table) counts as empty."""
    with sqlite3.connect(path) as conn:
        present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] if table in present else 0
            for table in GPU_OP_TABLES
        }


def gpu_op_count(path: Path) -> int:
    """Kernels, memcpys, memsets and graph executions in the trace at `path`."""
    return sum(gpu_op_counts(path).values())


def ops_per_step(path: Path, steps: int) -> tuple[float, float]:
    """Kernels and CUDA graph executions in the trace at `path` over its `steps` traced steps (capture's summary)."""
    counts = gpu_op_counts(path)
    return counts["CUPTI_ACTIVITY_KIND_KERNEL"] / steps, counts["CUPTI_ACTIVITY_KIND_GRAPH_TRACE"] / steps
