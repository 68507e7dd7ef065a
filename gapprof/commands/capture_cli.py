"""`gapprof capture` (a trace of batch-1 decode steps) and `gapprof models` (the shipped model configs)."""

import statistics
from pathlib import Path

import click

from gapprof.commands import options
from gapprof.log import progress
from gapprof.models import DTYPE_BYTES, get_spec, known_models
from gapprof.output_files import write_files
from gapprof.paths import sibling
from gapprof.profiler.request import CaptureRequest, validate
from gapprof.provenance import invocation
from gapprof.quant import check_library
from gapprof.quant_floor import estimate_line
from gapprof.runtime_table import RUNTIMES
from gapprof.trace_schema import ops_per_step


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=options.existing_folder,
    help="Write the list to FILE instead of stdout.",
)
def models(output):
    """List the known models with their parameter bytes (bf16).

    \b
    Example:
      gapprof models
    """
    lines = [f"{'model':<18} {'layers':>6} {'hidden':>6} {'heads':>5} {'kv':>3} {'params':>14} {'bf16 bytes':>15}"]
    for name in known_models():
        spec = get_spec(name)
        params = spec.total_params()
        lines.append(
            f"{name:<18} {spec.layers:>6} {spec.hidden:>6} {spec.heads:>5} {spec.kv_heads:>3} "
            f"{params:>14,} {params * DTYPE_BYTES['bfloat16']:>15,}"
        )
    text = "\n".join(lines) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        write_files({output: text})


def trace_output(output: Path | None, model: str, runtime: str, backend: str) -> Path:
    """Where capture writes: `output`, else traces/MODEL-RUNTIME (-cupti under cupti, so that it does not overwrite
    the .sqlite exported beside an nsys report); a .nsys-rep (the .sqlite goes beside it) under nsys, a .sqlite
    under cupti."""
    output = output or Path("traces", f"{model}-{runtime}{'-cupti' if backend == 'cupti' else ''}")
    return sibling(output, ".nsys-rep" if backend == "nsys" else ".sqlite")


def summary_line(meta: dict, step_ops: tuple[float, float] | None = None) -> str:
    """One line: median profiled and unprofiled step, the graph-level pass's when there was one, and the ops
    (kernels, CUDA graph executions) a traced step ran."""
    quant = f" {meta['quant']['method']}" if meta.get("quant") else ""
    line = (
        f"{meta['model']} {meta['runtime']}{quant} ctx {meta['ctx']} on {meta['gpu_name']}: median step "
        f"{statistics.median(meta['profiled_step_ms']):.2f} ms profiled, "
        f"{statistics.median(meta['unprofiled_step_ms']):.2f} ms unprofiled"
    )
    if meta.get("graph_level_step_ms"):
        line += f", {statistics.median(meta['graph_level_step_ms']):.2f} ms graph level"
    if step_ops is not None:
        kernels, graphs = step_ops
        line += f", {kernels:.0f} kernels" + (f" and {graphs:.0f} CUDA graph executions" if graphs else "")
        line += " per step"
    return line


@click.command()
@options.MODEL
@options.CTX
@options.steps_and_warmup(steps=20, warmup=4)
@click.option("--runtime", type=click.Choice(RUNTIMES), default="eager", show_default=True)
@options.TRACE_BACKEND
@options.model_build
@click.option(
    "--modules",
    is_flag=True,
    help="NVTX ranges around every module of every layer (eager and static "
    "runtimes), and an extra unprofiled pass that times their cost.",
)
@click.option(
    "--cuda-graph-trace",
    "graph_trace",
    type=click.Choice(["node", "graph", "both"]),
    default="node",
    show_default=True,
    help="Trace every kernel of a CUDA graph replay (node); each graph execution as one range (graph, "
    "nsys: cheaper for the graphs, compile and lean runtimes, no per-kernel tables); or both, "
    "CUPTI: a graph-level pass, then a node-level pass, in one process.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trace path (default traces/MODEL-RUNTIME.nsys-rep, or traces/MODEL-RUNTIME-cupti.sqlite; "
    "RUNTIME-QUANT with --quant).",
)
def capture(
    model,
    ctx,
    steps,
    warmup,
    runtime,
    backend,
    dtype,
    attn,
    weights,
    seed,
    quant,
    quant_lm_head,
    modules,
    graph_trace,
    output,
):
    """Run batch-1 decode with every step in an NVTX range and write a trace.

    \b
    Example:
      gapprof capture --model qwen2.5-7b
      gapprof capture --model qwen2.5-7b --runtime graphs --quant int4    (int4 weights, CUDA graphs)
    """
    request = CaptureRequest(
        model=model,
        ctx=ctx,
        steps=steps,
        warmup=warmup,
        runtime=runtime,
        backend=backend,
        dtype=dtype,
        attn=attn,
        weights=weights,
        seed=seed,
        modules=modules,
        quant=quant,
        quant_lm_head=quant_lm_head,
        graph_trace=graph_trace,
    )
    options.check_session_device("capture")
    validate(request)
    check_library(quant)
    level = {"node": "", "graph": "-graph-level", "both": "-two-pass"}[graph_trace]
    variant = "".join((f"-{quant}" if quant != "none" else "", level))
    output = trace_output(output, model, runtime + variant, backend)
    if backend == "nsys":
        from gapprof.profiler.nsys_capture import capture_with_nsys

        report, sqlite_path, meta = capture_with_nsys(request, output, invocation())
        written = [report, sqlite_path]
    else:
        from gapprof.profiler.cupti_backend import capture_with_cupti

        sqlite_path, meta = capture_with_cupti(request, output, invocation())
        written = [sqlite_path]
    progress("done")
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(summary_line(meta, ops_per_step(sqlite_path, warmup + steps)))
    if quant != "none":
        click.echo(estimate_line(meta))
