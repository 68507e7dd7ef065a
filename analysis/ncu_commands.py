"""`gapprof ncu-report`: per kernel, per class and (with --reference) per module DRAM bytes from an ncu CSV."""
from pathlib import Path

import click
import polars as pl

from gapprof.analysis import modules, ncu_report as ncu, render
from gapprof.analysis.floor import resolve_spec
from gapprof.analysis.pipeline import Options, analyze
from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof import gpus, models
from gapprof.step_bytes import kind_bytes


def _peak(gpu: str | None, meta: dict) -> tuple[float, str]:
    spec = gpus.resolve_gpu(gpu) if gpu else gpus.gpu_for_device_name(meta.get("gpu_name", ""))
    if spec is None:
        raise GapprofError("no GPU for the peak bandwidth: pass --gpu (no gpu_name in the .json beside the CSV); "
                           f"known GPUs: {', '.join(gpus.known_gpus())}")
    return float(spec.peak_gbps), f"{spec.label} datasheet"


@click.command("ncu-report")
@click.argument("csv_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--gpu", default=None, help="GPU for the peak bandwidth [default: gpu_name in the .json beside CSV].")
@click.option("--reference", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A module-annotated trace (capture --modules) of the same model: compare measured with analytic "
                   "bytes per module, kernels mapped by position.")
@click.option("--model", default=None, help="Model for the analytic bytes [default: the .json's, else the reference's].")
@click.option("--ctx", type=click.IntRange(min=0), default=None,
              help="Context of the first profiled step, for the KV bytes [default: the .json's ctx].")
@click.option("--top", type=click.IntRange(min=0), default=25, show_default=True, help="Kernel rows (0: all).")
@click.option("--format", "fmt", type=click.Choice(render.FORMATS), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None)
def ncu_report(csv_path, gpu, reference, model, ctx, top, fmt, output):
    """Measured DRAM bytes, achieved bandwidth and DRAM time at peak per kernel and class from CSV_PATH
    (`gapprof ncu` output); kernel time = DRAM time at peak + the rest."""
    meta = ncu.read_sidecar(csv_path)
    rows = ncu.read_ncu_csv(csv_path)
    peak, peak_label = _peak(gpu, meta)
    by_kernel, by_class, totals = ncu.kernel_tables(rows, peak)
    totals["peak bandwidth source"] = peak_label
    notes = []
    sections = [("totals", totals), ("classes", by_class), ("kernels", by_kernel.head(top) if top else by_kernel)]
    if reference is not None:
        ref = analyze(reference, Options(), progress)
        modules.check_same_model(meta, ref.trace.meta)
        labelled, ref_modules = modules.labelled_by_time(ref)
        if ref_modules.is_empty():
            raise GapprofError(f"--reference {reference}: no `module:` ranges in its steps (capture it with --modules)")
        spec = resolve_spec(meta, model) or (ref.floor.spec if ref.floor else None)
        context = ctx if ctx is not None else meta.get("ctx")
        if spec is None or context is None:
            raise GapprofError("the analytic bytes need a model and a context: pass --model and --ctx")
        dtype_bytes = int(meta.get("dtype_bytes", models.DTYPE_BYTES["bfloat16"]))
        # ncu profiles kernels only: the reference's memcpys and memsets ("[memcpy ...]", "[memset]") go.
        kernels_only = labelled.filter(~pl.col("name").str.starts_with("["))
        table, differences, complete = ncu.module_comparison(
            rows, modules.reference_step(kernels_only), kind_bytes(spec, context, dtype_bytes), peak)
        sections.append(("modules (per step)", table))
        notes.append(f"modules: {complete} complete step(s) of {rows.height} profiled kernels, mapped by position "
                     f"onto {reference}; analytic bytes at ctx {context} (weights once, KV read at ctx + one "
                     "token written); measured/analytic < 1 means bytes served from L2 (50 MB on H100), > 1 "
                     "re-reads, partial sums or activations")
        if differences.height:
            sections.append(("sequence differences", differences))
            notes.append(f"the ncu kernel sequence differs from the reference in {differences.height} runs; "
                         "those kernels are left out of the module table")
    for note in notes:
        progress(note)
    render.emit(render.render(sections, fmt, notes), output)
