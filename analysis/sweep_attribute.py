"""`gapprof sweep-attribute`: add the anatomy of each profiled cell (`gapprof sweep --profile`) to the sweep's rows.

Runs where polars is (the GPU image has none): the sweep writes traces there, this reads them anywhere.
"""
import json
from pathlib import Path

import click

from gapprof.analysis.pipeline import Options, analyze
from gapprof.provenance import invocation
from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof import result_files as report


def attribute_rows(rows: list[dict], folder: Path) -> int:
    """Set each traced row's `anatomy` (term -> median ms over its measured steps); return how many."""
    done = 0
    for row in rows:
        if "trace" not in row:
            continue
        analysis = analyze(folder / row["trace"], Options(), progress)
        row["anatomy"] = dict(zip(analysis.terms["term"].to_list(), analysis.terms["median_ms"].to_list()))
        done += 1
    return done


@click.command("sweep-attribute")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
def sweep_attribute(folder):
    """Attribute the traces of a `gapprof sweep --profile` run in FOLDER and rewrite its sweep outputs.

    Example: gapprof sweep-attribute results/h100-sxm
    """
    path = folder / "sweep.json"
    if not path.is_file():
        raise GapprofError(f"{path}: not found (FOLDER must hold the outputs of gapprof sweep)")
    result = json.loads(path.read_text())
    done = attribute_rows(result["rows"], folder)
    if not done:
        raise GapprofError(f"{path}: no row has a trace (run gapprof sweep with --profile on the GPU machine)")
    result["attributed_with"] = invocation()
    for written in report.write_sweep(result, folder):
        click.echo(f"wrote {written}")
    click.echo(f"added the anatomy of {done} cells")
