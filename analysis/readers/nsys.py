"""Nsight Systems SQLite exports and gapprof CUPTI traces (the same tables): a .sqlite, a .sqlite.xz, or a
.nsys-rep read through the export beside it (exported if need be).

Bulk tables (kernels, copies, API calls) are read through ADBC, which hands SQLite rows to polars as Arrow
columns without building a Python object per value, each table once and only the columns the analyses use; the
table list and the metadata go through sqlite3.
"""

import re
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import adbc_driver_manager
import adbc_driver_sqlite
import polars as pl
from gapprof.analysis.readers import memory
from gapprof.analysis.readers.capture_meta import check_meta, parse_meta
from gapprof.analysis.readers.compressed import unpacked
from gapprof.analysis.readers.raw_trace import (
    API_SCHEMA,
    DRIVER,
    GPU_INFO,
    GPU_INFO_SCHEMA,
    GPU_SCHEMA,
    GRAPH,
    KERNEL,
    MEMCPY,
    MEMSET,
    NVTX,
    PID_MASK,
    RANGES_SCHEMA,
    RUNTIME,
    STRINGS_SCHEMA,
    RawTrace,
)

from gapprof import trace_schema
from gapprof.errors import GapprofError
from gapprof.input_files import regular_file
from gapprof.nsight import find_nsys, nsys_export_command
from gapprof.paths import sibling

SQLITE_HEADER = b"SQLite format 3\x00"
NOT_SQLITE = "not an SQLite file (expected `nsys export --type sqlite` output or a .nsys-rep)"
# An export compressed with xz, as traces/ ships them (5-9x smaller than the .sqlite).
PACKED = ".sqlite.xz"


def beside(path: Path) -> Path | None:
    """The export beside a .nsys-rep: its .sqlite, else its .sqlite.xz, else None."""
    return next((p for p in (sibling(path, ".sqlite"), sibling(path, PACKED)) if p.exists()), None)


def sqlite_for(path: Path) -> Path:
    """The SQLite file to read for `path`: itself (unpacked if it is a .sqlite.xz), or for a .nsys-rep the export
    beside it (exported if need be)."""
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
            f"and put the .sqlite beside the .nsys-rep, or set GAPPROF_NSYS to the nsys executable"
        ) from None
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
    return (
        f"{target} is {behind / 60:.0f} min older than {Path(path).name}, so it may be the export of an earlier "
        "report; it was read as it is (delete it to export the report again)"
    )


def claims(path: Path) -> bool:
    """A report or a packed export by its name (read through the SQLite file it stands for), else an SQLite file
    by its header."""
    return path.suffix == ".nsys-rep" or path.name.endswith(PACKED) or _is_sqlite(path)


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def read(path: Path, progress: Callable[[str], None] = lambda _: None) -> RawTrace:
    """Every frame of the export or CUPTI trace at `path` (a .sqlite, a .sqlite.xz, or a .nsys-rep with its export
    beside it), refusing one without the tables attribution needs."""
    path = Path(path)
    file = regular_file(sqlite_for(path))
    if not _is_sqlite(file):
        raise GapprofError(f"{path}: {NOT_SQLITE}")
    tables, meta, unparsable, (gpu_ops, calls) = _header(file, path)
    memory.check_fits(file, gpu_ops + calls, f"{gpu_ops:,} GPU ops, {calls:,} API calls")
    progress(f"reading {file}" + (f" (for {path})" if file != path else ""))
    try:
        with _connect(file) as conn:
            return RawTrace(
                path=path,
                tables=tables,
                meta=meta,
                unparsable_meta=unparsable,
                ranges=_ranges(conn, tables),
                calls=_api_calls(conn, tables),
                gpu=_gpu_ops(conn, tables),
                strings=_read(conn, "SELECT id, value FROM StringIds", STRINGS_SCHEMA),
                gpu_info=_gpu_info(conn, tables),
                open_ranges=_read(conn, OPEN_RANGES_QUERY, {"n": pl.Int64})["n"][0] if NVTX in tables else 0,
                notes=tuple(note for note in [stale_export_note(path)] if note),
            )
    except (adbc_driver_manager.Error, pl.exceptions.PolarsError) as error:
        # A damaged page past the header surfaces here, in ADBC's or polars' words; say it as for page 0.
        raise GapprofError(f"{path}: {unreadable(error)}") from None


def unreadable(error: Exception) -> str:
    """One line for an SQLite file that cannot be read: SQLite's own words, as sqlite3, ADBC or polars passes
    them on."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    # ADBC's low-level API puts its status and step before SQLite's words ("IO: Failed to step query: ...").
    words = re.sub(r"^(got external error: )?([A-Z_]+: Failed to [^:]*: )?", "", lines[0])
    return f"unreadable SQLite file ({words})"


def _header(file: Path, path: Path) -> tuple[frozenset, dict, tuple[str, ...], tuple[int, int]]:
    """(tables present, metadata, unparsable metadata keys, (GPU ops, API calls)) of an SQLite trace with the tables
    attribution needs; errors name `path`, the trace as given. The rows are each table's largest rowid: a lookup,
    not a scan (an export never deletes rows, so it is the count)."""
    conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        tables = frozenset(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
        meta, unparsable = parse_meta(trace_schema.read_meta_text(conn))
        rows = [
            sum(conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {t}").fetchone()[0] for t in names if t in tables)
            for names in ((KERNEL, MEMCPY, MEMSET, GRAPH), (RUNTIME, DRIVER))
        ]
    except sqlite3.DatabaseError as error:
        raise GapprofError(f"{path}: {unreadable(error)}") from None
    finally:
        conn.close()
    check_meta(meta, path)
    missing = []
    if KERNEL not in tables and GRAPH not in tables:
        missing.append(f"no {KERNEL} table (capture with `nsys profile -t cuda`)")
    if RUNTIME not in tables and DRIVER not in tables:
        missing.append(f"no {RUNTIME} or {DRIVER} table (capture with `nsys profile -t cuda`)")
    if "StringIds" not in tables:
        missing.append("no StringIds table (not an `nsys export --type sqlite` file)")
    if missing:
        raise GapprofError(f"{path}: " + "; ".join(missing))
    return tables, meta, unparsable, (rows[0], rows[1])


def _ranges(conn, tables: frozenset) -> pl.DataFrame:
    """Every closed NVTX range; none in a trace captured without NVTX (`-t cuda`), whose steps are found."""
    return _read(conn, RANGES_QUERY, RANGES_SCHEMA) if NVTX in tables else pl.DataFrame(schema=RANGES_SCHEMA)


# Rows per Arrow batch: large enough that the per-batch cost vanishes (ADBC's default is 1,024), small enough
# that a batch stays a few MB.
BATCH_ROWS = 65_536


@contextmanager
def _connect(file: Path):
    """An ADBC connection through the driver's low-level API: its DB-API module imports pyarrow and pandas
    where they are installed, a second of start-up that nothing here needs."""
    database = adbc_driver_sqlite.connect(str(file))
    conn = adbc_driver_manager.AdbcConnection(database)
    try:
        yield conn
    finally:
        conn.close()
        database.close()


def _read(conn, query: str, schema: dict) -> pl.DataFrame:
    statement = adbc_driver_manager.AdbcStatement(conn)
    try:
        statement.set_options(**{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: str(BATCH_ROWS)})
        statement.set_sql_query(query)
        stream, _ = statement.execute_query()
        frame = pl.DataFrame(stream)
    finally:
        statement.close()
    # ADBC infers column types from values (an empty result comes back all Int64), so cast to the fixed schema.
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


# Every closed NVTX push/pop or start/end range, with its message and domain name resolved.
RANGES_QUERY = f"""
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
# The ranges that never ended, which RANGES_QUERY leaves out.
OPEN_RANGES_QUERY = (
    f"SELECT COUNT(*) AS n FROM {NVTX} WHERE eventType IN ({trace_schema.NVTX_PUSH_POP_RANGE}, "
    f'{trace_schema.NVTX_START_END_RANGE}) AND "end" IS NULL'
)


def _api_calls(conn, tables: frozenset) -> pl.DataFrame:
    """Runtime and driver API calls of every thread, read once: the steps' threads take theirs, and every GPU op
    looks for its launch among all of them. Each table is read on its own and its source added here, so no
    per-row constant passes through SQLite."""
    columns = [c for c in API_SCHEMA if c != "source"]
    quoted = ", ".join(f'"{c}"' for c in columns)  # "end" is an SQL keyword
    return pl.concat(
        _read(conn, f"SELECT {quoted} FROM {table}", {c: API_SCHEMA[c] for c in columns}).with_columns(
            source=pl.lit(source, API_SCHEMA["source"])
        )
        for source, table in (("runtime", RUNTIME), ("driver", DRIVER))
        if table in tables
    )


def _gpu_ops(conn, tables: frozenset) -> pl.DataFrame:
    """Kernels, memcpys, memsets and graph executions (graph-level traces) in one frame; names stay StringIds ids
    until a table needs them. Each table is read on its own rather than through a UNION, so no per-row constants
    pass through SQLite."""
    common = ("start", "end", "deviceId", "streamId", "correlationId", "globalPid")
    own = {"kernel": ("shortName", "demangledName"), "memcpy": ("copyKind",), "memset": (), "graph": ("graphExecId",)}
    frames = []
    for kind, table in (("kernel", KERNEL), ("memcpy", MEMCPY), ("memset", MEMSET), ("graph", GRAPH)):
        if table in tables:
            columns = common + own[kind]
            quoted = ", ".join(f'"{c}"' for c in columns)  # "end" is an SQL keyword
            part = _read(conn, f"SELECT {quoted} FROM {table}", {c: GPU_SCHEMA[c] for c in columns})
            frames.append(part.with_columns(kind=pl.lit(kind, GPU_SCHEMA["kind"])))
    frame = pl.concat(frames, how="diagonal")
    return frame.select(
        (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in GPU_SCHEMA.items()
    )


def _gpu_info(conn, tables: frozenset) -> pl.DataFrame:
    """TARGET_INFO_GPU rows: id, name, memoryBandwidth (bytes/s); empty when the export has none."""
    if GPU_INFO not in tables:
        return pl.DataFrame(schema=GPU_INFO_SCHEMA)
    return _read(conn, f"SELECT id, COALESCE(name, '') AS name, memoryBandwidth FROM {GPU_INFO}", GPU_INFO_SCHEMA)
