"""Nsight Compute results (`gapprof ncu-report`): measured DRAM bytes per kernel, per class and per module.

Input: the `ncu --csv --page raw` export and the capture metadata beside it, as analysis.readers.ncu reads them.

DRAM time at peak = measured bytes / peak bandwidth: the least time the kernel could take if it only moved its
bytes at peak; kernel time = DRAM time at peak + the rest (latency, launch ramp, compute, poor occupancy). A kernel
faster than the peak would leave a negative rest: the CSV is then refused as measured on another GPU.
"""

from pathlib import Path

import polars as pl
from gapprof.analysis import kernels, modules
from gapprof.analysis.attribution import Options, analyze
from gapprof.analysis.floor import check_context, check_step_bytes, resolve_spec
from gapprof.analysis.module_alignment import align, difference_frame, reference_step
from gapprof.analysis.module_labels import OUTSIDE
from gapprof.analysis.readers.ncu import read_ncu_csv, read_sidecar
from gapprof.analysis.tables import first_rows

from gapprof import gpus, models
from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name
from gapprof.log import progress
from gapprof.nvtx_names import KINDS
from gapprof.quant_floor import recorded
from gapprof.step_bytes import kind_bytes


def _measures(peak_gbps: float) -> list[pl.Expr]:
    moved = pl.col("bytes_read") + pl.col("bytes_write")
    return [
        pl.len().alias("kernels"),
        (pl.col("bytes_read").sum() / 1e6).alias("read_mb"),
        (pl.col("bytes_write").sum() / 1e6).alias("write_mb"),
        (pl.col("duration_ns").sum() / 1e3).alias("time_us"),
        (moved.sum() / pl.col("duration_ns").sum()).alias("achieved_gbps"),  # bytes per ns is GB/s
        (moved.sum() / peak_gbps / 1e3).alias("dram_at_peak_us"),
    ]


def _finish(table: pl.DataFrame, total_ns: float, peak_gbps: float) -> pl.DataFrame:
    return table.with_columns(
        rest_us=pl.col("time_us") - pl.col("dram_at_peak_us"),
        peak_pct=100.0 * pl.col("achieved_gbps") / peak_gbps,
        time_share_pct=100.0 * pl.col("time_us") * 1e3 / total_ns,
    )


def kernel_tables(rows: pl.DataFrame, peak_gbps: float) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(per kernel name, per class, totals) over every profiled kernel."""
    named = rows.with_columns(
        short=pl.col("name").map_elements(short_name, return_dtype=pl.String),
        **{"class": pl.col("name").map_elements(kernels.classify, return_dtype=pl.String)},
    )
    total_ns = float(rows["duration_ns"].sum())
    by_kernel = _finish(named.group_by("short", "class").agg(_measures(peak_gbps)), total_ns, peak_gbps)
    by_class = _finish(named.group_by("class").agg(_measures(peak_gbps)), total_ns, peak_gbps)
    moved = float((rows["bytes_read"] + rows["bytes_write"]).sum())
    totals = {
        "kernels profiled": rows.height,
        "kernel time, us": total_ns / 1e3,
        "DRAM bytes read + written, MB": moved / 1e6,
        "DRAM time at peak, us": moved / peak_gbps / 1e3,
        "rest (kernel time above DRAM time at peak), us": (total_ns - moved / peak_gbps) / 1e3,
        "achieved bandwidth over kernel time, GB/s": moved / total_ns,
        "peak bandwidth, GB/s": peak_gbps,
    }
    return (
        by_kernel.rename({"short": "name"}).sort("time_us", descending=True),
        by_class.sort("time_us", descending=True),
        totals,
    )


def module_comparison(
    rows: pl.DataFrame, reference: pl.DataFrame, analytic: dict[str, float], peak_gbps: float
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
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
        raise GapprofError(
            f"ncu profiled {len(names)} kernels, less than one complete step of the reference "
            f"({len(ref_names)} ops); raise --launch-count"
        )
    kinds = reference["kind"].to_list()
    labelled = rows.with_columns(ref=pl.Series(matched, dtype=pl.Int64)).filter(
        pl.col("ref") < complete * len(ref_names)
    )
    labelled = labelled.with_columns(
        kind=pl.col("ref").map_elements(lambda i: kinds[i % len(ref_names)], return_dtype=pl.String)
    )
    moved = pl.col("bytes_read") + pl.col("bytes_write")
    table = (
        labelled.group_by("kind")
        .agg(
            kernels=pl.len() / complete,
            measured_mb=moved.sum() / (1e6 * complete),
            time_us=pl.col("duration_ns").sum() / (1e3 * complete),
        )
        .with_columns(analytic_mb=pl.col("kind").replace_strict(analytic, default=0.0, return_dtype=pl.Float64) / 1e6)
        .with_columns(
            measured_over_analytic=pl.when(pl.col("analytic_mb") > 0).then(
                pl.col("measured_mb") / pl.col("analytic_mb")
            ),
            dram_at_peak_us=pl.col("measured_mb") * 1e3 / peak_gbps,
        )
        .with_columns(rest_us=pl.col("time_us") - pl.col("dram_at_peak_us"))
    )
    order = {k: i for i, k in enumerate((*KINDS, OUTSIDE))}
    table = table.sort(pl.col("kind").replace_strict(order, default=len(order), return_dtype=pl.Int64))
    diff_rows = [d for d in diffs if d[1] < complete * len(ref_names)]
    return table, difference_frame(diff_rows, 1), complete


def _peak(gpu: str | None, meta: dict) -> tuple[float, str]:
    spec = gpus.resolve_gpu(gpu) if gpu else gpus.gpu_for_device_name(meta.get("gpu_name", ""))
    if spec is None:
        raise GapprofError(
            "no GPU for the peak bandwidth: pass --gpu (no gpu_name in the .json beside the CSV); "
            f"known GPUs: {', '.join(gpus.known_gpus())}"
        )
    return float(spec.peak_gbps), f"{spec.label} datasheet"


def _refuse_above_peak(rows: pl.DataFrame, peak_gbps: float, peak_label: str) -> None:
    """Raise on kernels that moved their bytes faster than the peak: DRAM time at peak would exceed their time
    (a negative rest), so the CSV was measured on a faster GPU than the one --gpu (or its .json) names."""
    moved = pl.col("bytes_read").fill_null(0) + pl.col("bytes_write").fill_null(0)
    fast = rows.filter(moved > peak_gbps * pl.col("duration_ns"))  # bytes per ns is GB/s
    if fast.height:
        first = fast.row(0, named=True)
        rate = ((first["bytes_read"] or 0) + (first["bytes_write"] or 0)) / first["duration_ns"]
        raise GapprofError(
            f"{fast.height:,} kernels move their bytes faster than the {peak_label} peak of {peak_gbps:,.0f} GB/s "
            f"(ID {first['id']}: {rate:,.0f} GB/s): the CSV was measured on a faster GPU; pass --gpu with its own"
        )


def _stored(meta: dict) -> dict | None:
    """The quantised layers' bytes that the ncu run's capture recorded (gapprof.quant_floor), or None."""
    quant = recorded(meta)
    return quant.stored if quant else None


def ncu_report_sections(
    csv_path: Path, gpu: str | None, reference: Path | None, model: str | None, ctx: int | None, top: int
) -> tuple[list, list[str]]:
    """The sections (title, table) and notes of `gapprof ncu-report`: totals, classes, kernels and, against a
    module-annotated reference trace, measured vs analytic bytes per module."""
    meta = read_sidecar(csv_path)
    rows = read_ncu_csv(csv_path)
    peak, peak_label = _peak(gpu, meta)
    _refuse_above_peak(rows, peak, peak_label)
    by_kernel, by_class, totals = kernel_tables(rows, peak)
    totals["peak bandwidth source"] = peak_label
    notes = []
    sections = [
        ("totals", totals),
        ("classes", by_class),
        ("kernels", first_rows(by_kernel, top)),
    ]
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
        check_context(context)
        dtype_bytes = int(meta.get("dtype_bytes", models.DTYPE_BYTES["bfloat16"]))
        # ncu profiles kernels only: the reference's memcpys and memsets ("[memcpy ...]", "[memset]") go.
        kernels_only = labelled.filter(~pl.col("name").str.starts_with("["))
        analytic = kind_bytes(spec, context, dtype_bytes, stored=_stored(meta))
        check_step_bytes(spec, sum(analytic.values()))
        table, differences, complete = module_comparison(rows, reference_step(kernels_only), analytic, peak)
        sections.append(("modules (per step)", table))
        notes.append(
            f"modules: {complete} complete step(s) of {rows.height} profiled kernels, mapped by position "
            f"onto {reference}; analytic bytes at ctx {context} (weights once, KV read at ctx + one "
            "token written); measured/analytic < 1 means bytes served from L2 (50 MB on H100), > 1 "
            "re-reads, partial sums or activations"
        )
        if differences.height:
            sections.append(("sequence differences", differences))
            notes.append(
                f"the ncu kernel sequence differs from the reference in {differences.height} runs; "
                "those kernels are left out of the module table"
            )
    return sections, notes
