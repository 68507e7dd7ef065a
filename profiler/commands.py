"""CLI commands of the capture side: `gapprof capture` and `gapprof models`."""
import sqlite3
from pathlib import Path

import click

from gapprof.provenance import invocation
from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.paths import sibling
from gapprof.profiler import cli_options as options
from gapprof.models import DTYPE_BYTES, get_spec, known_models
from gapprof.runtime_names import RUNTIMES


@click.command()
def models():
    """List the known models with their parameter bytes (bf16)."""
    click.echo(f"{'model':<18} {'layers':>6} {'hidden':>6} {'heads':>5} {'kv':>3} {'params':>14} {'bf16 bytes':>15}")
    for name in known_models():
        spec = get_spec(name)
        params = spec.total_params()
        click.echo(f"{name:<18} {spec.layers:>6} {spec.hidden:>6} {spec.heads:>5} {spec.kv_heads:>3} "
                   f"{params:>14,} {params * DTYPE_BYTES['bfloat16']:>15,}")


def _kernels_per_step(sqlite_path: Path, traced_steps: int) -> float:
    with sqlite3.connect(sqlite_path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()
    return count / traced_steps


def trace_output(output: Path | None, model: str, runtime: str, backend: str) -> Path:
    """Where capture writes: `output`, else traces/MODEL-RUNTIME (-cupti under cupti, so that it does not overwrite
    the .sqlite exported beside an nsys report); a .nsys-rep (the .sqlite goes beside it) under nsys, a .sqlite
    under cupti."""
    output = output or Path("traces", f"{model}-{runtime}{'-cupti' if backend == 'cupti' else ''}")
    return sibling(output, ".nsys-rep" if backend == "nsys" else ".sqlite")


@click.command()
@options.MODEL
@options.CTX
@click.option("--steps", default=20, show_default=True, help="Measured decode steps.")
@click.option("--warmup", default=4, show_default=True, help="Warm-up decode steps before the measured ones.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="eager", show_default=True)
@click.option("--backend", type=click.Choice(["nsys", "cupti"]), default="nsys", show_default=True)
@options.DTYPE
@options.ATTN
@options.WEIGHTS
@click.option("--seed", default=0, show_default=True)
@click.option("--modules", is_flag=True, help="NVTX ranges around every module of every layer (eager and static "
                                              "runtimes), and an extra unprofiled pass that times their cost.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Trace path (default traces/MODEL-RUNTIME.nsys-rep, or traces/MODEL-RUNTIME-cupti.sqlite).")
def capture(model, ctx, steps, warmup, runtime, backend, dtype, attn, weights, seed, modules, output):
    """Run batch-1 decode with every step in an NVTX range and write a trace."""
    torch = options.import_torch("capture")
    from gapprof.profiler.session import CaptureRequest, summary_line, validate

    request = CaptureRequest(model=model, ctx=ctx, steps=steps, warmup=warmup, runtime=runtime, backend=backend,
                             dtype=dtype, attn=attn, weights=weights, seed=seed, modules=modules)
    validate(request)
    if not torch.cuda.is_available():
        raise GapprofError("capture needs a CUDA GPU and none is visible to torch")
    output = trace_output(output, model, runtime, backend)
    command = invocation()
    if backend == "nsys":
        from gapprof.profiler.nsys_capture import capture_with_nsys

        report, sqlite_path, meta = capture_with_nsys(request, output, command)
        written = [report, sqlite_path]
    else:
        from gapprof.profiler.cupti_backend import CuptiCollector
        from gapprof.profiler.session import run_session

        collector = CuptiCollector()
        meta, spans = run_session(request, collector, clock=collector.clock)
        meta["command"] = command
        sqlite_path = output
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        collector.write(sqlite_path, spans, meta)
        written = [sqlite_path]
    progress("done")
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(summary_line(meta, _kernels_per_step(sqlite_path, warmup + steps)))


@click.command()
@options.MODEL
@options.CTX
@click.option("--steps", default=2, show_default=True, help="Decode steps of the profiled pass after warm-up.")
@click.option("--warmup", default=4, show_default=True, help="Warm-up decode steps before them.")
@click.option("--runtime", type=click.Choice(["eager", "static", "graphs"]), default="eager", show_default=True)
@options.DTYPE
@options.ATTN
@options.WEIGHTS
@click.option("--seed", default=0, show_default=True)
@click.option("--launch-count", type=click.IntRange(min=1), default=1400, show_default=True,
              help="Kernels to profile, from the first decode step of the profiled pass (warm-up steps included: "
                   "the earlier passes have already warmed everything up); cover one or two steps.")
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), default=None, help="Stop ncu after this many s.")
@click.option("--keep-report", is_flag=True, help="Keep the .ncu-rep beside the CSV (about 80 KB a kernel).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV path (default traces/MODEL-RUNTIME-ncu.csv); the metadata goes beside it as .json.")
def ncu(model, ctx, steps, warmup, runtime, dtype, attn, weights, seed, launch_count, timeout_s, keep_report,
        output):
    """Nsight Compute DRAM bytes and duration of every kernel of a few decode steps (`gapprof ncu-report`)."""
    torch = options.import_torch("ncu")
    from gapprof.profiler.ncu_capture import run_ncu
    from gapprof.profiler.session import CaptureRequest, validate

    request = CaptureRequest(model=model, ctx=ctx, steps=steps, warmup=warmup, runtime=runtime, backend="ncu",
                             dtype=dtype, attn=attn, weights=weights, seed=seed)
    validate(request)
    if not torch.cuda.is_available():
        raise GapprofError("ncu needs a CUDA GPU and none is visible to torch")
    output = output or Path("traces", f"{model}-{runtime}-ncu.csv")
    written = run_ncu(request, output, launch_count, invocation(), keep_report, timeout_s)
    progress("done")
    for path in written:
        click.echo(f"wrote {path}")
