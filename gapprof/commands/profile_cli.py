"""`gapprof profile`: any command under Nsight Systems, then attribute's report of the trace it made.

Runs where nsys is; torch-free here. The report needs polars: without it (the GPU image) the trace is written
and the command to attribute it elsewhere is printed."""

import importlib
import shlex
from pathlib import Path

import click

from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.nvtx_names import STEP_MESSAGE
from gapprof.profiler.profile_run import mark_target, profile_program, program_name
from gapprof.provenance import invocation


def report_command(sqlite_path: Path, chosen: dict) -> str:
    """The `gapprof attribute` line that prints the same report elsewhere."""
    args = ["gapprof", "attribute", str(sqlite_path)]
    if chosen["range_pattern"] != STEP_MESSAGE:
        args += ["--range", chosen["range_pattern"]]
    if chosen["step_source"] != "ranges":
        args += ["--steps", chosen["step_source"]]
    for name in ("skip", "model", "ctx", "dtype", "gpu", "quant"):
        if chosen[name] is not None:
            args += [f"--{name}", str(chosen[name])]
    if chosen["quant_lm_head"]:
        args.append("--quant-lm-head")
    return shlex.join(args)


@click.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--mark",
    type=click.Choice(["forward"]),
    default=None,
    help="forward: an NVTX range around every top-level forward of a transformers model, injected into "
    "the program's Python (its code unchanged): prefill (more than one new token) or decode_step "
    "(payload: the step's index since the prefill).",
)
@click.option(
    "--mark-module",
    metavar="MODULE:CLASS",
    default=None,
    help="Mark the top-level calls of this torch.nn.Module class instead of transformers' models "
    "(implies --mark forward); MODULE must be imported by the program, not run as its script.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Trace path [default: traces/NAME.nsys-rep, NAME from the script or executable; the .sqlite goes beside it].",
)
@options.report_options
@options.FORCE_OVERRIDES
@options.FORMAT
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=None,
    callback=options.existing_folder,
    help="Write the report to FILE instead of stdout (with --format "
    "csv, a folder DIR gets DIR/TABLE.csv for each table).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def profile(mark, mark_module, output, command, report_path, **chosen):
    """Run COMMAND under Nsight Systems (CUDA and NVTX traced, no CPU sampling, graph nodes traced, as capture
    does, over the whole run), export the .sqlite, record the run in its metadata (command, GPU, driver,
    versions, and with --mark the model's config, dtype and prompt length, for the floor), then print
    attribute's report.

    Steps are the program's own NVTX ranges (--range), or with --mark forward the ranges gapprof puts around
    each forward of the model; prefill ranges are counted and left out of the steps. A program that marks no
    step has its steps found from its repeating GPU work (--steps auto; the notes say how).

    \b
    Examples:
      gapprof profile --mark forward -- python examples/generate.py
      gapprof profile -- python examples/generate.py
      gapprof profile --range 'decode.*' -o traces/mine.nsys-rep -- python my_app.py --steps 64
    """
    several = len(set(chosen["tables_chosen"]) | ({"steps"} if chosen["per_step"] else set())) > 1
    options.check_csv_output(chosen["fmt"], report_path, several, "--tables", "--report")
    command = list(command)
    target = mark_target(mark, mark_module)
    output = output or Path("traces", program_name(command) + ".nsys-rep")
    report_file, sqlite_path, meta = profile_program(command, output, target, invocation())
    progress(f"wrote {report_file} and {sqlite_path}")
    try:
        attribute_cli = importlib.import_module("gapprof.commands.attribute_cli")
        from gapprof.analysis.steps import NoStepRanges
    except ImportError as missing:  # an install without the analysis side (polars): the trace is what it makes
        progress(
            f"no report here ({missing}); where gapprof's analysis is installed, run: "
            f"{report_command(sqlite_path, chosen)}"
        )
        return
    try:
        attribute_cli.emit_attribution(sqlite_path, output=report_path, **chosen)
    except NoStepRanges as error:
        unmarked = meta.get("unmarked_because")
        raise GapprofError(
            f"no step found in {sqlite_path}: {error}"
            + (f"; --mark forward marked no decode step: {unmarked}" if unmarked else "")
        ) from None
