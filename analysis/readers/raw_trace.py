"""What every trace reader gives: one `RawTrace`, its frames in the schemas defined here and nowhere else.

Table names are those of the Nsight Systems SQLite export, the vocabulary gapprof traces are written in: a reader
of another format names the tables its events stand for. Times are integer ns; names stay StringIds ids.
"""

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from gapprof import trace_schema

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

# CUPTI numbers the launches of each process with unsigned 32-bit correlation ids.
CORRELATION_IDS = 1 << 32


def launch_keys(calls: pl.DataFrame) -> tuple[pl.Expr, pl.Expr]:
    """(key of an API call in `calls`, key of a GPU op): (process, correlationId) as one Int64, the position of the
    process among those of `calls` times 2^32 plus the id, so a launch is found by a join on one integer (polars
    joins on two columns through a table several times the size of the frames). Null where the op's process made
    none of the calls or the id is outside 0 .. 2^32 - 1 (trace_checks refuses such ids)."""
    processes = calls.select(GLOBAL_PID.unique().sort()).to_series().drop_nulls()  # no process: no key
    positions = pl.Series(range(processes.len()), dtype=pl.Int64)
    correlation = pl.col("correlationId")

    def key(process: pl.Expr) -> pl.Expr:
        position = process.replace_strict(processes, positions, default=None, return_dtype=pl.Int64)
        in_range = (correlation >= 0) & (correlation < CORRELATION_IDS)
        return pl.when(in_range).then(position * CORRELATION_IDS + correlation).alias("launch")

    return key(GLOBAL_PID), key(pl.col("globalPid"))


GPU_KINDS = ("kernel", "memcpy", "memset", "graph")
API_SOURCES = ("runtime", "driver")

RANGES_SCHEMA = {
    "start": pl.Int64,
    "end": pl.Int64,
    "globalTid": pl.Int64,
    "message": pl.String,
    "domain": pl.String,
    "payload": pl.Int64,
}
API_SCHEMA = {
    "start": pl.Int64,
    "end": pl.Int64,
    "globalTid": pl.Int64,
    "correlationId": pl.Int64,
    "nameId": pl.Int64,
    "source": pl.Enum(API_SOURCES),
}
GPU_SCHEMA = {
    "start": pl.Int64,
    "end": pl.Int64,
    "deviceId": pl.Int64,
    "streamId": pl.Int64,
    "correlationId": pl.Int64,
    "globalPid": pl.Int64,
    "kind": pl.Enum(GPU_KINDS),
    "shortName": pl.Int64,
    "demangledName": pl.Int64,
    "copyKind": pl.Int64,
    "graphExecId": pl.Int64,
}
STRINGS_SCHEMA = {"id": pl.Int64, "value": pl.String}
GPU_INFO_SCHEMA = {"id": pl.Int64, "name": pl.String, "memoryBandwidth": pl.Int64}
SCHEMAS = {
    "ranges": RANGES_SCHEMA,
    "calls": API_SCHEMA,
    "gpu": GPU_SCHEMA,
    "strings": STRINGS_SCHEMA,
    "gpu_info": GPU_INFO_SCHEMA,
}


@dataclass(frozen=True)
class RawTrace:
    """A trace file as read, before any step is chosen."""

    path: Path  # the trace as given (a .nsys-rep or .sqlite.xz, not the SQLite file read for it)
    tables: frozenset  # the tables present, by their nsys names
    meta: dict  # capture metadata, {} for a trace gapprof did not make
    unparsable_meta: tuple[str, ...]  # metadata keys left out because their value is not JSON
    ranges: pl.DataFrame  # every closed NVTX range (or record_function range)
    calls: pl.DataFrame  # runtime and driver API calls, every thread
    gpu: pl.DataFrame  # kernels, memcpys, memsets and graph executions
    strings: pl.DataFrame  # StringIds: id -> text of API and kernel names
    gpu_info: pl.DataFrame  # TARGET_INFO_GPU: name and memory bandwidth (null where unknown) per device
    open_ranges: int  # ranges never ended, left out of `ranges`
    notes: tuple[str, ...]  # what the reader saw worth telling about the file

    def __post_init__(self):
        # Every reader fills the same frames: a reader that drifts from a schema fails here, not in an analysis.
        for name, schema in SCHEMAS.items():
            if dict(getattr(self, name).schema) != schema:
                raise TypeError(f"{self.path}: {name} has schema {dict(getattr(self, name).schema)}, not {schema}")
