"""Nsight Compute's per-kernel DRAM bytes: the CSV of `ncu --import R.ncu-rep --csv --page raw` (or that file
gzipped, .csv.gz: every row repeats the device's attributes, so it compresses about 25x) and the capture metadata
`gapprof ncu` writes beside it.

The CSV has one row per profiled kernel in launch order; row 1 holds column names, row 2 the unit of each metric
column (empty for the others). Units are read, not assumed: byte, Kbyte, Mbyte, Gbyte (powers of 1000),
KiB-style (powers of 1024), nsecond/usecond/msecond/second (also ns/us/ms/s). Values may carry thousands
separators; `n/a` reads as null.
"""
import csv
import io
import json
from pathlib import Path

import polars as pl

from gapprof.analysis.readers.compressed import contents
from gapprof.errors import GapprofError
from gapprof.paths import sibling

READ, WRITE, DURATION = "dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum"
_BYTES = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12,
          "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
          "Kibyte": 2**10, "Mibyte": 2**20, "Gibyte": 2**30}
_NS = {"nsecond": 1, "ns": 1, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9}
SCHEMA = {"id": pl.Int64, "name": pl.String, "bytes_read": pl.Float64, "bytes_write": pl.Float64,
          "duration_ns": pl.Float64}


def _number(text: str, unit: float) -> float | None:
    text = text.strip().replace(",", "")
    if text in ("", "n/a"):
        return None
    return float(text) * unit


def _scale(path: Path, column: str, unit: str, table: dict) -> float:
    if unit not in table:
        raise GapprofError(f"{path}: unknown unit {unit!r} for {column} (known: {', '.join(table)})")
    return table[unit]


def read_ncu_csv(path: Path) -> pl.DataFrame:
    """id, name, bytes_read, bytes_write, duration_ns per profiled kernel, in the export's order."""
    path = Path(path)
    if not path.exists():
        raise GapprofError(f"{path}: no such file")
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
        raise GapprofError(f"{path}: no column {', '.join(missing)} (profile with `gapprof ncu` or "
                           f"`ncu --metrics {READ},{WRITE},{DURATION}`)")
    ragged = next((i for i, row in enumerate(data) if len(row) != len(header)), None)
    if ragged is not None:
        raise GapprofError(f"{path}: kernel row {ragged + 1} has {len(data[ragged])} fields where the header has "
                           f"{len(header)}: a truncated or edited export")
    at = {c: header.index(c) for c in ("ID", "Kernel Name", READ, WRITE, DURATION)}
    scale = {c: _scale(path, c, units[at[c]], _BYTES) for c in (READ, WRITE)}
    scale[DURATION] = _scale(path, DURATION, units[at[DURATION]], _NS)
    records = [(int(row[at["ID"]].replace(",", "")), row[at["Kernel Name"]],
                *(_number(row[at[c]], scale[c]) for c in (READ, WRITE, DURATION)))
               for row in data]
    if not records:
        raise GapprofError(f"{path}: no kernel rows")
    return pl.DataFrame(records, schema=SCHEMA, orient="row").sort("id")


def read_sidecar(path: Path) -> dict:
    """The capture metadata `gapprof ncu` writes beside the CSV (same name, .json), or {}."""
    sidecar = sibling(Path(path), ".json")
    return json.loads(sidecar.read_text()) if sidecar.exists() else {}
