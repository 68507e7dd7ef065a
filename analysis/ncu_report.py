"""Nsight Compute results (`gapprof ncu-report`): measured DRAM bytes per kernel, per class and per module.

Input: `ncu --import R.ncu-rep --csv --page raw` output (or that file gzipped, .csv.gz: every row repeats the
device's attributes, so it compresses about 25x), one row per profiled kernel in launch order; row 1
holds column names, row 2 the unit of each metric column (empty for the others). Units are read, not assumed:
byte, Kbyte, Mbyte, Gbyte (powers of 1000), KiB-style (powers of 1024), nsecond/usecond/msecond/second (also
ns/us/ms/s). Values may carry thousands separators; `n/a` reads as null.

DRAM time at peak = measured bytes / peak bandwidth: the least time the kernel could take if it only moved its
bytes at peak; kernel time = DRAM time at peak + the rest (latency, launch ramp, compute, poor occupancy).
"""
import csv
import io
import json
from pathlib import Path

import polars as pl

from gapprof import gpus, models
from gapprof.analysis import kernels, modules
from gapprof.analysis.compressed import contents
from gapprof.analysis.module_alignment import align, difference_frame, reference_step
from gapprof.analysis.module_labels import OUTSIDE
from gapprof.nvtx_names import KINDS
from gapprof.analysis.floor import resolve_spec
from gapprof.analysis.attribution import Options, analyze
from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name
from gapprof.log import progress
from gapprof.paths import sibling
from gapprof.quant_floor import recorded
from gapprof.step_bytes import kind_bytes

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


def _measures(peak_gbps: float) -> list[pl.Expr]:
    moved = pl.col("bytes_read") + pl.col("bytes_write")
    return [pl.len().alias("kernels"), (pl.col("bytes_read").sum() / 1e6).alias("read_mb"),
            (pl.col("bytes_write").sum() / 1e6).alias("write_mb"),
            (pl.col("duration_ns").sum() / 1e3).alias("time_us"),
            (moved.sum() / pl.col("duration_ns").sum()).alias("achieved_gbps"),  # bytes per ns is GB/s
            (moved.sum() / peak_gbps / 1e3).alias("dram_at_peak_us")]


def _finish(table: pl.DataFrame, total_ns: float, peak_gbps: float) -> pl.DataFrame:
    return table.with_columns(rest_us=pl.col("time_us") - pl.col("dram_at_peak_us"),
                              peak_pct=100.0 * pl.col("achieved_gbps") / peak_gbps,
                              time_share_pct=100.0 * pl.col("time_us") * 1e3 / total_ns)


def kernel_tables(rows: pl.DataFrame, peak_gbps: float) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(per kernel name, per class, totals) over every profiled kernel."""
    named = rows.with_columns(
        short=pl.col("name").map_elements(short_name, return_dtype=pl.String),
        **{"class": pl.col("name").map_elements(kernels.classify, return_dtype=pl.String)})
    total_ns = float(rows["duration_ns"].sum())
    by_kernel = _finish(named.group_by("short", "class").agg(_measures(peak_gbps)), total_ns, peak_gbps)
    by_class = _finish(named.group_by("class").agg(_measures(peak_gbps)), total_ns, peak_gbps)
    moved = float((rows["bytes_read"] + rows["bytes_write"]).sum())
    totals = {"kernels profiled": rows.height, "kernel time, us": total_ns / 1e3,
              "DRAM bytes read + written, MB": moved / 1e6, "DRAM time at peak, us": moved / peak_gbps / 1e3,
              "rest (kernel time above DRAM time at peak), us": (total_ns - moved / peak_gbps) / 1e3,
              "achieved bandwidth over kernel time, GB/s": moved / total_ns, "peak bandwidth, GB/s": peak_gbps}
    return (by_kernel.rename({"short": "name"}).sort("time_us", descending=True),
            by_class.sort("time_us", descending=True), totals)


def module_comparison(rows: pl.DataFrame, reference: pl.DataFrame, analytic: dict[str, float],
                      peak_gbps: float) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Measured against analytic bytes per module kind, per step, over the complete steps ncu covered.

    reference: a module-annotated step (module_alignment.reference_step: position, short, kind, layer); ncu rows are
    aligned with it repeated, and a step counts only when ncu profiled past its end. analytic: bytes per step
    by kind (gapprof.step_bytes.kind_bytes). Returns (table, sequence differences, complete steps).
    """
    names = rows["name"].map_elements(short_name, return_dtype=pl.String).to_list()
    ref_names = reference["short"].to_list()
    repeats = -(-len(names) // len(ref_names))
    matched, diffs = align(ref_names * repeats, names)
    # The last matched reference position tells how far ncu got; steps before it are complete.
    last = max((m for m in matched if m is not None), default=-1)
    complete = (last + 1) // len(ref_names)
    if complete == 0:
        raise GapprofError(f"ncu profiled {len(names)} kernels, less than one complete step of the reference "
                           f"({len(ref_names)} ops); raise --launch-count")
    kinds = reference["kind"].to_list()
    labelled = rows.with_columns(
        ref=pl.Series(matched, dtype=pl.Int64)).filter(pl.col("ref") < complete * len(ref_names))
    labelled = labelled.with_columns(kind=pl.col("ref").map_elements(lambda i: kinds[i % len(ref_names)],
                                                                     return_dtype=pl.String))
    moved = pl.col("bytes_read") + pl.col("bytes_write")
    table = (labelled.group_by("kind").agg(kernels=pl.len() / complete, measured_mb=moved.sum() / (1e6 * complete),
                                           time_us=pl.col("duration_ns").sum() / (1e3 * complete))
             .with_columns(analytic_mb=pl.col("kind").replace_strict(analytic, default=0.0,
                                                                     return_dtype=pl.Float64) / 1e6)
             .with_columns(measured_over_analytic=pl.when(pl.col("analytic_mb") > 0)
                           .then(pl.col("measured_mb") / pl.col("analytic_mb")),
                           dram_at_peak_us=pl.col("measured_mb") * 1e3 / peak_gbps)
             .with_columns(rest_us=pl.col("time_us") - pl.col("dram_at_peak_us")))
    order = {k: i for i, k in enumerate((*KINDS, OUTSIDE))}
    table = table.sort(pl.col("kind").replace_strict(order, default=len(order), return_dtype=pl.Int64))
    diff_rows = [d for d in diffs if d[1] < complete * len(ref_names)]
    return table, difference_frame(diff_rows, 1), complete


def _peak(gpu: str | None, meta: dict) -> tuple[float, str]:
    spec = gpus.resolve_gpu(gpu) if gpu else gpus.gpu_for_device_name(meta.get("gpu_name", ""))
    if spec is None:
        raise GapprofError("no GPU for the peak bandwidth: pass --gpu (no gpu_name in the .json beside the CSV); "
                           f"known GPUs: {', '.join(gpus.known_gpus())}")
    return float(spec.peak_gbps), f"{spec.label} datasheet"


def _stored(meta: dict) -> dict | None:
    """The quantised layers' bytes that the ncu run's capture recorded (gapprof.quant_floor), or None."""
    quant = recorded(meta)
    return quant.stored if quant else None


def report_sections(csv_path: Path, gpu: str | None, reference: Path | None, model: str | None, ctx: int | None,
                    top: int) -> tuple[list, list[str]]:
    """The sections (title, table) and notes of `gapprof ncu-report`: totals, classes, kernels and, against a
    module-annotated reference trace, measured vs analytic bytes per module."""
    meta = read_sidecar(csv_path)
    rows = read_ncu_csv(csv_path)
    peak, peak_label = _peak(gpu, meta)
    by_kernel, by_class, totals = kernel_tables(rows, peak)
    totals["peak bandwidth source"] = peak_label
    notes = []
    sections = [("totals", totals), ("classes", by_class), ("kernels", by_kernel.head(top) if top else by_kernel)]
    if reference is not None:
        ref = analyze(reference, Options(), progress)
        modules.check_same_model(meta, ref.frames.trace.meta)
        labelled, ref_modules = modules.labelled_by_time(ref)
        if ref_modules.is_empty():
            raise modules.NoModuleRanges(reference, "reference")
        spec = resolve_spec(meta, model) or (ref.floor.spec if ref.floor else None)
        context = ctx if ctx is not None else meta.get("ctx")
        if spec is None or context is None:
            raise GapprofError("the analytic bytes need a model and a context: pass --model and --ctx")
        dtype_bytes = int(meta.get("dtype_bytes", models.DTYPE_BYTES["bfloat16"]))
        # ncu profiles kernels only: the reference's memcpys and memsets ("[memcpy ...]", "[memset]") go.
        kernels_only = labelled.filter(~pl.col("name").str.starts_with("["))
        table, differences, complete = module_comparison(
            rows, reference_step(kernels_only), kind_bytes(spec, context, dtype_bytes, stored=_stored(meta)), peak)
        sections.append(("modules (per step)", table))
        notes.append(f"modules: {complete} complete step(s) of {rows.height} profiled kernels, mapped by position "
                     f"onto {reference}; analytic bytes at ctx {context} (weights once, KV read at ctx + one "
                     "token written); measured/analytic < 1 means bytes served from L2 (50 MB on H100), > 1 "
                     "re-reads, partial sums or activations")
        if differences.height:
            sections.append(("sequence differences", differences))
            notes.append(f"the ncu kernel sequence differs from the reference in {differences.height} runs; "
                         "those kernels are left out of the module table")
    return sections, notes
