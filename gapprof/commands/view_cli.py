"""`gapprof view`: see a trace's attribution, as a one-page HTML report or an annotated trace for Perfetto. The
file's suffix picks the renderer (analysis.views); progress on stderr."""

from pathlib import Path

import click

from gapprof.commands import options
from gapprof.log import progress


@click.command()
@click.argument("traces", nargs=-1, required=True, type=options.TRACE)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    callback=options.existing_folder,
    help="The file to write; its suffix picks what: .html (a report, one trace or several) or .json / "
    ".trace.json (the annotated trace of one trace).",
)
@options.floor_inputs
@options.quant_floor_inputs
@options.FORCE_OVERRIDES
@options.COUNT_EMBEDDING
@options.SKIP
@options.RANGE
@click.option(
    "--to",
    "targets",
    multiple=True,
    help="With .html: also project each trace to this GPU (repeatable), as `gapprof project` does without bytes "
    "per kernel.",
)
def view(traces, output, force, targets, **chosen):
    """See TRACES: a one-page HTML report, or an annotated trace for Perfetto; -o FILE's suffix picks which.

    \b
    .html        one self-contained page (no network needed): summary and findings, the anatomy bars, a
                 zoomable timeline of the median and the slowest step with the terms shaded, kernel classes
                 and top kernels, launch-delay distributions; for several traces their comparison first
    .json        Chrome trace-event JSON for ui.perfetto.dev or chrome://tracing: step ranges, the anatomy's
                 intervals (head, busy, starved, latency, tail, spill) on tracks of their own, every GPU op
                 with its class, the floor as a counter; a torch.profiler trace keeps its own events

    \b
    Examples:
      gapprof view traces/h100-graphs.sqlite.xz -o report.html
      gapprof view traces/h100.sqlite.xz traces/h200.sqlite.xz -o h100-vs-h200.html
      gapprof view traces/h100-graphs.sqlite.xz --to h200 --to l4 -o h100-graphs.html
      gapprof view traces/h100-graphs.sqlite.xz -o h100-graphs.trace.json
    """
    from gapprof.analysis import views  # polars: only when the command runs
    from gapprof.analysis.attribution import Options
    from gapprof.output_files import write_files

    written = views.view(traces, output, Options(**chosen), force, progress, targets)
    write_files({output: written}, inputs=traces)
    progress(f"wrote {output} ({len(written) / 1e6:.1f} MB)")
