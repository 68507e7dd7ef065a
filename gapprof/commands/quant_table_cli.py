"""`gapprof quant-table`: quantised decode steps of one model on one GPU in the study's shape (analysis.quant_table).
Data on stdout (or -o), notes after the table, progress on stderr."""

from pathlib import Path

import click

from gapprof import gpus, render
from gapprof.commands import options
from gapprof.errors import GapprofError


def _paired(traces, files, option: str) -> list:
    """Each trace's file for `option`, or None: the option is given once per trace, in the traces' order, `-` for
    none (or not at all)."""
    if not files:
        return [None] * len(traces)
    if len(files) != len(traces):
        raise GapprofError(
            f"{option} is given once per trace, in their order (`-` for none): {len(traces)} traces, "
            f"{len(files)} {option}"
        )
    missing = [f for f in files if f != "-" and not Path(f).is_file()]
    if missing:
        raise GapprofError(f"{option} {missing[0]}: no such file")
    return [None if f == "-" else Path(f) for f in files]


@click.command("quant-table")
@click.argument("traces", nargs=-1, required=True, type=options.TRACE)
@click.option(
    "--ncu",
    "ncu_csvs",
    multiple=True,
    metavar="CSV|-",
    help="Once per trace, in their order (`-` for none): its `gapprof ncu` CSV, so that its projections "
    "use the kernel model (each kernel's fixed part kept, its bytes at the target's bandwidth).",
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    metavar="TRACE|-",
    help="Once per trace, in their order (`-` for none): a module-annotated trace of the same model and "
    "method (`capture --modules`) that labels its kernels by position, for the `modules` table.",
)
@click.option("--to", "targets", multiple=True, help="Also project each trace to this GPU (repeatable).")
@click.option(
    "--force",
    is_flag=True,
    help="Tabulate traces of different runtimes, and accept --model/--ctx/--dtype "
    "that contradict the captures' metadata.",
)
@options.floor_inputs
@options.RANGE
@options.SKIP
@options.COUNT_EMBEDDING
@options.FORMAT
@options.OUTPUT
def quant_table(
    traces, ncu_csvs, references, targets, force, model, ctx, dtype, range_pattern, skip, count_embedding, fmt, output
):
    """One row a trace of the same model on the same GPU, quantised or not: unprofiled step, floor (GB, ms, fraction
    of the step), speedup and bytes ratio over the unquantised trace, the largest term above the floor, and with
    --to the step projected to each GPU; beside it the GPU time by kernel class and, for traces with module ranges
    or a --reference, by module kind. `-o results/<gpu>/quant.md --format markdown` (and `.json --format json`)
    keeps it beside the A/B and sweep results.

    \b
    Example:
      gapprof quant-table traces/h100-graphs.sqlite.xz traces/h100-graphs-int4.sqlite.xz
    """
    options.check_csv_output(fmt, output, several=True)
    specs = [gpus.resolve_gpu(t) for t in targets]
    from gapprof.analysis.attribution import Options
    from gapprof.analysis.quant_table import quant_table_sections

    sections, notes = quant_table_sections(
        traces,
        _paired(traces, ncu_csvs, "--ncu"),
        _paired(traces, references, "--reference"),
        specs,
        Options(
            range_pattern=range_pattern, skip=skip, model=model, ctx=ctx, dtype=dtype, count_embedding=count_embedding
        ),
        force,
    )
    given = [Path(path) for path in (*ncu_csvs, *references) if path != "-"]
    render.emit(sections, fmt, notes, output, inputs=[*traces, *given])
