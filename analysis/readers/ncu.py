"""Nsight Compute's per-kernel DRAM bytes: the CSV of `ncu --import R.ncu-rep --csv --page raw` (or that file
gzipped, .csv.gz: every row repeats the device's attributes, so it compresses about 25x) and the capture metadata
`gapprof ncu` writes beside it.

The CSV has one row per profiled kernel in launch order; row 1 holds column names, row 2 the unit of each metric
column (empty for the others). Units are read, not assumed: byte, Kbyte, Mbyte, Gbyte (powers of 1000),
KiB-style (powers of 1024), nsecond/usecond/msecond/second (also ns/us/ms/s). Values may carry thousands
separators; `n/a` (or an empty field) reads as null, which kernel_bytes counts as a kernel without bytes.
Refused in one line: a value that is not a number, negative, infinite or NaN; a kernel faster than any DRAM
(more than MAX_BYTES_PER_NS, as a wrong unit gives); an ID twice; a sidecar that is not a JSON object.
"""

import csv
import io
import json
import math
from pathlib import Path

import polars as pl
from gapprof.analysis.readers.compressed import contents

from gapprof.errors import GapprofError
from gapprof.gpus import DRAM_GBPS
from gapprof.input_files import regular_file
from gapprof.paths import sibling

READ, WRITE, DURATION = "dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum"
_BYTES = {
    "byte": 1,
    "Kbyte": 1e3,
    "Mbyte": 1e6,
    "Gbyte": 1e9,
    "Tbyte": 1e12,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "Kibyte": 2**10,
    "Mibyte": 2**20,
    "Gibyte": 2**30,
}
_NS = {"nsecond": 1, "ns": 1, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9}
# Bytes per ns are GB/s: above any DRAM's (gpus.DRAM_GBPS), only a wrong unit or a damaged value goes.
MAX_BYTES_PER_NS = DRAM_GBPS[1]
SCHEMA = {
    "id": pl.Int64,
    "name": pl.String,
    "bytes_read": pl.Float64,
    "bytes_write": pl.Float64,
    "duration_ns": pl.Float64,
}


def _number(path: Path, row: int, column: str, text: str, unit: float) -> float | None:
    """The value of one field in base units (bytes, ns); None for n/a."""
    text = text.strip().replace(",", "")
    if text in ("", "n/a"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise GapprofError(f"{path}: kernel row {row} has {text!r} for {column}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise GapprofError(
            f"{path}: kernel row {row} has {text} for {column}; a count of bytes or a duration is "
            "a finite number, 0 or more"
        )
    return value * unit


def _id(path: Path, row: int, text: str) -> int:
    try:
        return int(text.strip().replace(",", ""))
    except ValueError:
        raise GapprofError(f"{path}: kernel row {row} has ID {text!r}, not a whole number") from None


def _refuse_impossible(path: Path, rows: pl.DataFrame) -> None:
    """Raise on a repeated ID, or a kernel whose bytes would move faster than any DRAM."""
    repeated = rows.filter(pl.col("id").is_duplicated())["id"]
    if repeated.len():
        raise GapprofError(
            f"{path}: ID {repeated[0]} appears {repeated.len()} times; each profiled kernel has one row "
            "(a damaged or concatenated export)"
        )
    moved = pl.col("bytes_read").fill_null(0) + pl.col("bytes_write").fill_null(0)
    fast = rows.filter(moved > MAX_BYTES_PER_NS * pl.col("duration_ns"))
    if fast.height:
        first = fast.row(0, named=True)
        rate = (first["bytes_read"] or 0) + (first["bytes_write"] or 0)
        raise GapprofError(
            f"{path}: kernel ID {first['id']} moves {rate:,.0f} bytes in {first['duration_ns']:,.0f} "
            f"ns, faster than any GPU's DRAM ({fast.height} such kernels): check the units row"
        )


def _scale(path: Path, column: str, unit: str, table: dict) -> float:
    if unit not in table:
        raise GapprofError(f"{path}: unknown unit {unit!r} for {column} (known: {', '.join(table)})")
    return table[unit]


def read_ncu_csv(path: Path) -> pl.DataFrame:
    """id, name, bytes_read, bytes_write, duration_ns per profiled kernel, in the export's order."""
    path = Path(path)
    try:
        text = contents(path).decode()
    except (UnicodeDecodeError, OSError, EOFError):
        raise GapprofError(f"{path}: not an ncu CSV (a binary file; expected the .csv `gapprof ncu` writes)") from None
    # ncu may prefix its own `==PROF==` lines when the CSV comes from a profiling run's stdout.
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("==")]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if len(rows) < 2 or "Kernel Name" not in rows[0]:
        raise GapprofError(f"{path}: not an `ncu --csv --page raw` export (no header with 'Kernel Name')")
    header, units, data = rows[0], rows[1], rows[2:]
    missing = [c for c in ("ID", READ, WRITE, DURATION) if c not in header]
    if missing:
        raise GapprofError(
            f"{path}: no column {', '.join(missing)} (profile with `gapprof ncu` or "
            f"`ncu --metrics {READ},{WRITE},{DURATION}`)"
        )
    ragged = next((i for i, row in enumerate(data) if len(row) != len(header)), None)
    if ragged is not None:
        raise GapprofError(
            f"{path}: kernel row {ragged + 1} has {len(data[ragged])} fields where the header has "
            f"{len(header)}: a truncated or edited export"
        )
    at = {c: header.index(c) for c in ("ID", "Kernel Name", READ, WRITE, DURATION)}
    scale = {c: _scale(path, c, units[at[c]], _BYTES) for c in (READ, WRITE)}
    scale[DURATION] = _scale(path, DURATION, units[at[DURATION]], _NS)
    records = [
        (
            _id(path, i, row[at["ID"]]),
            row[at["Kernel Name"]],
            *(_number(path, i, c, row[at[c]], scale[c]) for c in (READ, WRITE, DURATION)),
        )
        for i, row in enumerate(data, start=1)
    ]
    if not records:
        raise GapprofError(f"{path}: no kernel rows")
    rows = pl.DataFrame(records, schema=SCHEMA, orient="row").sort("id")
    _refuse_impossible(path, rows)
    return rows


def read_sidecar(path: Path) -> dict:
    """The capture metadata `gapprof ncu` writes beside the CSV (same name, .json), or {}."""
    sidecar = sibling(Path(path), ".json")
    if not sidecar.exists():
        return {}
    try:
        meta = json.loads(regular_file(sidecar).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GapprofError(f"{sidecar}: the metadata beside {Path(path).name} is not JSON ({error})") from None
    if not isinstance(meta, dict):
        raise GapprofError(f"{sidecar}: the metadata beside {Path(path).name} is not a JSON object")
    return meta
