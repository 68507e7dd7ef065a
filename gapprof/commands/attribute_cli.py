"""`gapprof attribute`: per-step anatomy, floor, kernel and API tables of a trace. Data on stdout (or -o),
notes after the tables (in JSON under "notes"), progress on stderr."""

from pathlib import Path

import click

from gapprof import render
from gapprof.analysis import attribution, tables
from gapprof.analysis.attribution import Options
from gapprof.analysis.modules import NoModuleRanges
from gapprof.analysis.plausibility import check_options, refuse_misfit
from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.log import progress


@click.command()
@click.argument("trace", type=options.TRACE)
@options.report_options
@click.option(
    "--by",
    type=click.Choice(["step", "module"]),
    default="step",
    show_default=True,
    help="module: per module kind and per layer (a trace from `capture --modules`, or --reference).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --by module: a module-annotated trace of the same model whose step labels TRACE's "
    "kernels by position (for CUDA graphs traces).",
)
@click.option(
    "--ncu",
    "ncu_csv",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The CSV of `gapprof ncu` for this trace's model and runtime: each kernel's measured bytes, and "
    "the cost table (busy = floor + extra + shortfall + fixed).",
)
@options.GPU_PROFILE
@options.FORCE_OVERRIDES
@options.FORMAT
@options.OUTPUT
def attribute(trace, by, reference, ncu_csv, gpu_profiles, output, **chosen):
    """Split each decode step of TRACE (.sqlite, .nsys-rep, or a torch.profiler .json or .json.gz) into DRAM
    floor, kernel excess, launch gaps and CPU-side time: wall = busy + starved + latency + head + tail, per step,
    in integer ns.

    \b
    busy     GPU time covered by the step's kernels, memcpys and memsets (= floor + excess)
    starved  GPU idle gaps that ended when the CPU launched the next work
    latency  GPU idle gaps whose next work was already launched
    head     from the step's start to its first GPU work; tail: from its last GPU work to its end
    spill    busy time of the step's work outside the step range (clipped off: not in wall)
    overlap  GPU time covered by more than one op at once (counted once in busy)

    \b
    With --ncu (bytes measured) or --tables cost (bytes analytic, from module ranges or --reference),
    the cost table splits busy by the bytes each kernel moves:
    busy = floor + extra + shortfall + fixed, per step, in integer ns
    extra      measured bytes above the floor's analytic bytes, at peak bandwidth
    shortfall  the measured bytes at the reference bandwidth R minus at peak
    fixed      the rest: kernel time beyond its bytes at R
    R is the GPU's achievable bandwidth: measured by its GPU profile (`gapprof calibrate`, shipped or
    --gpu-profile), else 0.9 x peak.

    \b
    Examples:
      gapprof attribute traces/h100.sqlite.xz
      gapprof attribute decode.json --model qwen2.5-7b --ctx 2048      (a torch.profiler trace)
      gapprof attribute traces/h100.sqlite.xz --tables kernels --format csv -o kernels.csv
    """
    emit_attribution(
        trace, by=by, reference=reference, ncu_csv=ncu_csv, gpu_profiles=gpu_profiles, output=output, **chosen
    )


def emit_attribution(
    trace,
    range_pattern,
    skip,
    model,
    ctx,
    dtype,
    gpu,
    count_embedding,
    per_step,
    full_names,
    tables_chosen,
    top,
    force,
    fmt,
    output=None,
    by="step",
    reference=None,
    ncu_csv=None,
    gpu_profiles=(),
    quant=None,
    quant_lm_head=False,
    step_source="ranges",
):
    """Attribute TRACE and print the chosen tables (stdout or `output`), notes after them: attribute's report,
    which profile prints for the trace it made."""
    if quant_lm_head and quant is None:
        raise click.UsageError("--quant-lm-head goes with --quant (the method lm_head was quantised with)")
    if by == "module":
        chosen = ["summary", "modules"]
    else:
        chosen = tables_chosen + (["steps"] if per_step and "steps" not in tables_chosen else [])
    shown = tables.shown_order(chosen + (["cost"] if ncu_csv is not None and "cost" not in chosen else []))
    options.check_gpu_profiles(gpu_profiles, "cost" in shown, "--ncu or --tables cost")
    if reference is not None and not any(tables.TABLES[name].uses_reference for name in shown):
        raise click.UsageError("--reference is used only with --by module, --ncu or --tables cost")
    if ncu_csv is not None and by == "module":
        raise click.UsageError("--ncu splits steps and kernel classes, not modules: use it without --by module")
    if by == "module" and per_step:
        raise click.UsageError("--per-step shows steps, not modules: use it without --by module")
    options.check_csv_output(fmt, output, len(set(chosen)) > 1, None if by == "module" else "--tables")
    chosen_options = Options(
        range_pattern=range_pattern,
        skip=skip,
        model=model,
        ctx=ctx,
        dtype=dtype,
        gpu=gpu,
        count_embedding=count_embedding,
        quant=quant,
        quant_lm_head=quant_lm_head,
        find_steps=step_source == "auto",
    )
    check_options(chosen_options)
    result = attribution.analyze(trace, chosen_options, progress)
    refuse_misfit(result, chosen_options, force, "--force")
    table_options = tables.TableOptions(
        full_names=full_names, top=top, per_step=per_step, ncu=ncu_csv, reference=reference, gpu_profiles=gpu_profiles
    )
    inputs = tables.Inputs(result, chosen_options, table_options, cost_shown="cost" in shown, progress=progress)
    built = {}
    for name in dict.fromkeys(shown):  # a table asked for twice is built once, its notes said once
        built[name] = _build(name, inputs)
        if built[name] is None and tables_chosen != list(tables.DEFAULT):  # the default shows it where there is one
            raise GapprofError(f"{trace}: --tables {name} needs {tables.TABLES[name].needs}")
    sections = [section for name in shown if built[name] for section in built[name].sections]
    notes = [*result.notes, *(note for table in built.values() if table for note in table.notes)]
    render.emit(
        sections,
        fmt,
        notes,
        output,
        full_names=full_names,
        select="--tables" if by == "step" else None,
        inputs=[trace, reference, ncu_csv, *gpu_profiles],
    )


def _build(name: str, inputs: tables.Inputs) -> tables.Built | None:
    """One table of the report; the module tables say in the command's words what to capture without module
    ranges."""
    try:
        return tables.TABLES[name].build(inputs)
    except NoModuleRanges as missing:
        if name != "modules":
            raise
        raise options.module_ranges_error(missing) from None
