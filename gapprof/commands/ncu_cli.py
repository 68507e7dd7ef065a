"""`gapprof ncu` (Nsight Compute DRAM bytes of every kernel of a few decode steps, on the GPU) and
`gapprof ncu-report` (those bytes per kernel, class and module, where polars is)."""

from pathlib import Path

import click

from gapprof import render
from gapprof.commands import options
from gapprof.log import progress
from gapprof.profiler.request import CaptureRequest, validate
from gapprof.provenance import invocation
from gapprof.quant import check_library
from gapprof.runtime_table import RUNTIMES


@click.command()
@options.MODEL
@options.CTX
@options.steps_and_warmup(steps=2, warmup=4)
@click.option("--runtime", type=click.Choice(RUNTIMES), default="eager", show_default=True)
@options.model_build
@click.option(
    "--launch-count",
    type=click.IntRange(min=1),
    default=1400,
    show_default=True,
    help="Kernels to profile, from the first decode step of the profiled pass (warm-up steps included: "
    "the earlier passes have already warmed everything up); cover one or two steps.",
)
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), default=None, help="Stop ncu after this many s.")
@click.option("--keep-report", is_flag=True, help="Keep the .ncu-rep beside the CSV (about 80 KB a kernel).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV path (default traces/MODEL-RUNTIME-ncu.csv, RUNTIME-QUANT with --quant); the metadata goes "
    "beside it as .json.",
)
def ncu(
    model,
    ctx,
    steps,
    warmup,
    runtime,
    dtype,
    attn,
    weights,
    seed,
    quant,
    quant_lm_head,
    launch_count,
    timeout_s,
    keep_report,
    output,
):
    """Nsight Compute DRAM bytes and duration of every kernel of a few decode steps (`gapprof ncu-report`).

    \b
    Example:
      gapprof ncu --runtime eager --steps 1 --warmup 0 --launch-count 1400
    """
    request = CaptureRequest(
        model=model,
        ctx=ctx,
        steps=steps,
        warmup=warmup,
        runtime=runtime,
        backend="ncu",
        dtype=dtype,
        attn=attn,
        weights=weights,
        seed=seed,
        quant=quant,
        quant_lm_head=quant_lm_head,
    )
    options.check_session_device("ncu")
    validate(request)
    check_library(quant)
    from gapprof.profiler.ncu_capture import run_ncu

    name = runtime if quant == "none" else f"{runtime}-{quant}"
    written = run_ncu(
        request, output or Path("traces", f"{model}-{name}-ncu.csv"), launch_count, invocation(), keep_report, timeout_s
    )
    progress("done")
    for path in written:
        click.echo(f"wrote {path}")


@click.command("ncu-report")
@click.argument("csv_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--gpu", default=None, help="GPU for the peak bandwidth [default: gpu_name in the .json beside CSV].")
@click.option(
    "--reference",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A module-annotated trace (capture --modules) of the same model: compare measured with analytic "
    "bytes per module, kernels mapped by position.",
)
@click.option(
    "--model", default=None, help="Model for the analytic bytes [default: the .json's, else the reference's]."
)
@click.option(
    "--ctx",
    type=click.IntRange(min=0),
    default=None,
    help="Context of the first profiled step, for the KV bytes [default: the .json's ctx].",
)
@click.option("--top", type=click.IntRange(min=0), default=25, show_default=True, help="Kernel rows (0: all).")
@options.FORMAT
@options.OUTPUT
def ncu_report(csv_path, gpu, reference, model, ctx, top, fmt, output):
    """Measured DRAM bytes, achieved bandwidth and DRAM time at peak per kernel and class from CSV_PATH
    (`gapprof ncu` output); kernel time = DRAM time at peak + the rest.

    \b
    Example:
      gapprof ncu-report traces/h100-graphs-ncu.csv.gz --reference traces/h100-static-modules.sqlite.xz
    """
    options.check_csv_output(fmt, output, several=True)  # totals, classes, kernels (and modules)
    from gapprof.analysis.modules import NoModuleRanges
    from gapprof.analysis.ncu_bytes import ncu_report_sections

    try:
        sections, notes = ncu_report_sections(csv_path, gpu, reference, model, ctx, top)
    except NoModuleRanges as missing:
        raise options.module_ranges_error(missing) from None
    render.emit(sections, fmt, notes, output, inputs=[csv_path, reference])
