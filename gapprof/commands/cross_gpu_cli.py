"""`gapprof compare`, `gapprof project` and `gapprof plot`: step anatomy across GPUs, measured and replayed.
Data on stdout (or -o), notes after the tables (in JSON under "notes"), progress on stderr."""

from pathlib import Path

import click

from gapprof import gpus
from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.log import progress

TRACE = options.TRACE


def _trace_options(f):
    return options.RANGE(options.SKIP(options.COUNT_EMBEDDING(f)))


def _output_options(f):
    f = click.option(
        "--plot",
        "plot_path",
        type=options.TRACE,
        default=None,
        callback=options.picture_path,
        help="Also draw the step anatomy of every column to FILE (.png, .svg or .pdf).",
    )(f)
    return options.FORMAT(options.OUTPUT(f))


def _kernel_model_options(f):
    f = click.option(
        "--reference",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="Without --ncu: a module-annotated trace of the same model whose step labels TRACE's "
        "kernels by position, for analytic bytes per kernel.",
    )(f)
    f = options.GPU_PROFILE(f)
    return click.option(
        "--ncu",
        "ncu_csv",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="The CSV of `gapprof ncu` for this trace's model and runtime: each "
        "kernel's measured bytes, for the kernel model (a kernel keeps its fixed "
        "part and moves its bytes at the target's achievable bandwidth).",
    )(f)


def _one_bytes_source(ncu_csv, reference) -> None:
    """--ncu and --reference each give the kernel model its bytes per kernel: one is used, so both are refused."""
    if ncu_csv and reference:
        raise click.UsageError(
            "--ncu (measured bytes per kernel) and --reference (analytic bytes) are two sources "
            "of the same bytes: pass one"
        )


def _projection_options(f):
    f = click.option(
        "--fixed-kernel-us",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Time of every kernel that does not scale with bandwidth (a fixed per-kernel cost).",
    )(f)
    f = click.option(
        "--kernel-scale",
        multiple=True,
        metavar="CLASS=X",
        help="Multiply the durations of a kernel class by X after rescaling (repeatable).",
    )(f)
    f = click.option(
        "--drop-kernels",
        metavar="CLASS|REGEX",
        default=None,
        help="Predict the step without the kernels of a class (or whose name matches a regular expression), as if "
        "fused into the kernels around them at no cost: their time and the gap before each go. Needs bytes per "
        "kernel (--ncu, --reference or module ranges) or --bandwidth-ratio.",
    )(f)
    f = click.option(
        "--graph-launch-us",
        type=click.FloatRange(min=0),
        default=None,
        help="CPU time of one graph launch for --graphs (a graphs trace's api table shows it).",
    )(f)
    f = click.option(
        "--graphs",
        is_flag=True,
        help="Replace each step's kernel launches by one graph launch (needs --graph-launch-us).",
    )(f)
    f = click.option(
        "--launch-cost-scale",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Multiply the step thread's CPU time (think time, API calls, the CPU part of launch latency) by X.",
    )(f)
    return click.option(
        "--to", "targets", multiple=True, required=True, help="Target GPU: a key, alias or device name (repeatable)."
    )(f)


def _knobs(launch_cost_scale, graphs, graph_launch_us, kernel_scale, fixed_kernel_us, drop_kernels):
    from gapprof.analysis import projection

    projection.check_what_if(
        {
            "--launch-cost-scale": launch_cost_scale,
            "--graph-launch-us": graph_launch_us,
            "--fixed-kernel-us": fixed_kernel_us,
        }
    )
    projection.check_drop_kernels(drop_kernels)
    if graphs and graph_launch_us is None:
        raise GapprofError(
            "--graphs needs --graph-launch-us (the CPU cost of one cudaGraphLaunch; "
            "`gapprof attribute` on a graphs trace shows it in the api table)"
        )
    if graph_launch_us is not None and not graphs:
        raise GapprofError("--graph-launch-us is only used with --graphs")
    return projection.Knobs(
        launch_cost_scale=launch_cost_scale,
        graph_launch_ns=round(graph_launch_us * 1e3) if graphs else None,
        kernel_scale=projection.parse_kernel_scale(kernel_scale),
        fixed_ns=round(fixed_kernel_us * 1e3),
        drop_kernels=drop_kernels,
    )


def _emit(title, shown, fmt, output, plot_path, inputs) -> None:
    """The column table (cross_gpu.Columns), one explanation per column against the first, any further sections,
    and the plot if asked for; no output may be one of `inputs`."""
    from gapprof import render
    from gapprof.analysis import comparison

    sections, explained = comparison.sections(shown.columns, title)
    render.emit(sections + shown.sections, fmt, shown.notes + explained, output, inputs=inputs)
    if plot_path is not None:
        from gapprof.analysis import plots  # matplotlib: only when a picture is asked for

        progress(f"wrote {plots.anatomy(shown.columns, plot_path)}")


@click.command()
@click.argument("traces", nargs=-1, required=True, type=TRACE)
@click.option(
    "--force",
    is_flag=True,
    help="Compare traces that differ in model, ctx, runtime or attention "
    "backend, and accept --model/--ctx/--dtype that contradict the captures' "
    "metadata.",
)
@options.floor_inputs
@_trace_options
@_output_options
def compare(traces, force, model, ctx, dtype, range_pattern, skip, count_embedding, fmt, output, plot_path):
    """Step anatomy of several TRACES side by side (one column each), with which terms scaled with 1/bandwidth,
    which stayed constant, and each term's share of the change in floor fraction (against the first trace).

    \b
    Example:
      gapprof compare traces/h100.sqlite.xz traces/h200.sqlite.xz
    """
    if len(traces) < 2:
        raise GapprofError("compare needs at least two traces")
    options.check_csv_output(fmt, output, several=True)  # the table and an explanation per trace after the first
    from gapprof.analysis import cross_gpu
    from gapprof.analysis.attribution import Options

    shown = cross_gpu.compare(
        traces,
        Options(
            range_pattern=range_pattern, skip=skip, model=model, ctx=ctx, dtype=dtype, count_embedding=count_embedding
        ),
        force,
    )
    _emit("compare", shown, fmt, output, plot_path, traces)


@click.command()
@click.argument("trace", type=TRACE)
@_projection_options
@_kernel_model_options
@click.option(
    "--bandwidth-ratio",
    is_flag=True,
    help="Without --ncu or --reference: scale every kernel by the source / target datasheet bandwidth "
    "instead of the aggregate kernel model.",
)
@options.floor_inputs
@options.FORCE_OVERRIDES
@_trace_options
@_output_options
def project(
    trace,
    targets,
    launch_cost_scale,
    graphs,
    graph_launch_us,
    kernel_scale,
    drop_kernels,
    fixed_kernel_us,
    ncu_csv,
    gpu_profiles,
    reference,
    bandwidth_ratio,
    model,
    ctx,
    dtype,
    force,
    range_pattern,
    skip,
    count_embedding,
    fmt,
    output,
    plot_path,
):
    """Predict TRACE's step anatomy on other GPUs: replay its launch timeline with kernel durations rescaled by
    bandwidth, CPU time and synchronisation kept. One column per target, after the measured one.

    With --ncu (or --reference) each kernel's bytes are known and the kernel model replaces the bandwidth ratio:
    a kernel keeps its fixed part (duration - bytes at the source's achievable bandwidth), rescaled by target /
    source fixed cost per kernel where both GPUs have a measured profile, and moves its bytes at the target's
    achievable bandwidth. A GPU's measured profile (`gapprof calibrate`, shipped or --gpu-profile) gives its
    achievable bandwidth; without one it is 0.9 x its datasheet peak. The table 'kernel model' says which.

    Without them the kernel model runs over the trace's own module ranges where it has them, else in aggregate:
    each step's floor bytes move at the target's achievable bandwidth and the rest of its kernel time is kept as
    fixed (table 'kernel model (aggregate)'). --bandwidth-ratio (or --fixed-kernel-us) scales every kernel by the
    datasheet bandwidth ratio instead.

    \b
    Examples:
      gapprof project traces/h100.sqlite.xz --to h200 --to l4
      gapprof project traces/h100-graphs.sqlite.xz --to h200 --ncu traces/h100-graphs-ncu.csv.gz
    """
    _one_bytes_source(ncu_csv, reference)
    if fixed_kernel_us and (ncu_csv or reference):
        raise click.UsageError(
            "--fixed-kernel-us is the fixed cost of a kernel without the kernel model; with --ncu "
            "or --reference each kernel's fixed part comes from the trace"
        )
    if bandwidth_ratio and (ncu_csv or reference):
        raise click.UsageError(
            "--bandwidth-ratio is the model without bytes per kernel; --ncu and --reference give them"
        )
    ratio = bandwidth_ratio or bool(fixed_kernel_us)
    options.check_gpu_profiles(gpu_profiles, not ratio, "no --bandwidth-ratio or --fixed-kernel-us")
    knobs = _knobs(launch_cost_scale, graphs, graph_launch_us, kernel_scale, fixed_kernel_us, drop_kernels)
    options.check_csv_output(fmt, output, several=True)  # the table and an explanation per target
    from gapprof.analysis import cross_gpu
    from gapprof.analysis.attribution import Options

    shown = cross_gpu.project(
        trace,
        targets,
        knobs,
        Options(
            range_pattern=range_pattern, skip=skip, model=model, ctx=ctx, dtype=dtype, count_embedding=count_embedding
        ),
        force,
        ncu_csv,
        reference,
        gpu_profiles,
        aggregate=not ratio,
    )
    _emit("project", shown, fmt, output, plot_path, [trace, ncu_csv, reference, *gpu_profiles])


@click.command()
@click.argument("kind", type=click.Choice(("anatomy", "fraction", "timeline")))
@click.argument("traces", nargs=-1, required=True, type=TRACE)
@click.option(
    "-o",
    "--output",
    type=options.TRACE,
    required=True,
    callback=options.picture_path,
    help="Picture file: .png, .svg or .pdf (no extension: .png is added).",
)
@click.option(
    "--to",
    "targets",
    multiple=True,
    help="Also project each trace to this GPU (repeatable; fraction: default every GPU in the table).",
)
@click.option(
    "--step",
    "step_index",
    type=click.IntRange(min=0),
    default=None,
    help="timeline only: which measured step, counted from 0 after warm-up (default 0).",
)
@_kernel_model_options
@options.floor_inputs
@options.FORCE_OVERRIDES
@_trace_options
def plot(
    kind,
    traces,
    output,
    targets,
    step_index,
    ncu_csv,
    gpu_profiles,
    reference,
    model,
    ctx,
    dtype,
    force,
    range_pattern,
    skip,
    count_embedding,
):
    """Draw KIND for TRACES: anatomy (stacked bar per trace and projection, floor marked), fraction (floor
    fraction vs peak bandwidth, measured and projected), timeline (one step of the first trace: CPU calls above,
    GPU ops below, starved gaps shaded; with --to, the same step replayed on each target below it).

    fraction with --ncu (or --reference): the kernel model of the first trace's kernel mix, as a curve of floor
    fraction against bandwidth with the step time it tends to; the first trace is projected by the model, the
    others are measured points only.

    \b
    Examples:
      gapprof plot anatomy traces/h100.sqlite.xz traces/h200.sqlite.xz -o anatomy.png
      gapprof plot timeline traces/h100-graphs.sqlite.xz --to h200 -o timeline.png
    """
    if step_index is not None and kind != "timeline":
        raise click.UsageError(f"--step applies to timeline only; {kind} draws the mean over all measured steps")
    if (ncu_csv or reference) and kind != "fraction":
        raise click.UsageError("--ncu and --reference apply to fraction only")
    if kind == "timeline" and len(traces) > 1:
        raise click.UsageError(
            "timeline draws one step of one trace: pass one TRACE (--to adds its replay on other GPUs)"
        )
    _one_bytes_source(ncu_csv, reference)
    options.check_gpu_profiles(gpu_profiles, bool(ncu_csv or reference), "fraction with --ncu or --reference")
    specs = [gpus.resolve_gpu(t) for t in targets]
    from gapprof.analysis import cross_gpu, plots
    from gapprof.analysis.attribution import Options

    read = Options(
        range_pattern=range_pattern, skip=skip, model=model, ctx=ctx, dtype=dtype, count_embedding=count_embedding
    )
    if kind == "anatomy":
        path = plots.anatomy(cross_gpu.anatomy_columns(traces, specs, read, force), output)
    elif kind == "fraction":
        curves = cross_gpu.fraction_curves(traces, specs or gpus.GPUS, read, ncu_csv, reference, gpu_profiles, force)
        path = plots.fraction(curves.measured, curves.projected, output, curves.model, curves.unprofiled)
    else:
        path = plots.timeline(cross_gpu.step_timeline(traces[0], specs, read, step_index or 0, force), output)
    progress(f"wrote {path}")
