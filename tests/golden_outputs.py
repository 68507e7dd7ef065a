"""What every analysis command prints for the shipped traces, kept under tests/data/golden/ so that a change
meant to leave output alone (a refactor) is checked against it: `python tests/golden_outputs.py` writes the
files again after a deliberate change of output (`python tests/golden_outputs.py NAME...`: only those). Text
tables are fitted to WIDTH columns (COLUMNS), so that the files do not depend on the terminal that runs the tests."""

import shlex
import sys
from pathlib import Path

from click.testing import CliRunner

from gapprof.cli import main

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "tests" / "data" / "golden"
WIDTH = 100
STATIC = "traces/h100-static-modules.sqlite.xz"
COMMANDS = {
    **{
        f"attribute-{p.name.removesuffix('.sqlite.xz')}": f"attribute traces/{p.name}"
        for p in sorted((REPO / "traces").glob("*.sqlite.xz"))
    },
    "attribute-h100-per-step-json": "attribute traces/h100-graphs.sqlite.xz --per-step --format json",
    "attribute-h200-csv": "attribute traces/h200.sqlite.xz --format csv --full-names --tables kernels",
    "attribute-h100-markdown-options": "attribute traces/h100.sqlite.xz --format markdown --count-embedding "
    "--gpu h200 --force --ctx 4096 --tables summary,facts,classes --top 5",
    "attribute-h100-graphs-quant-int4": "attribute traces/h100-graphs.sqlite.xz --quant int4 --tables summary,facts",
    "attribute-eager-modules-by-module": "attribute traces/h100-eager-modules.sqlite.xz --by module",
    "attribute-graphs-by-module": f"attribute traces/h100-graphs.sqlite.xz --by module --reference {STATIC}",
    "ncu-report-eager": "ncu-report traces/h100-eager-cudnn-ncu.csv.gz",
    "ncu-report-graphs": f"ncu-report traces/h100-graphs-ncu.csv.gz --reference {STATIC}",
    "compare-eager": "compare traces/h100.sqlite.xz traces/h200.sqlite.xz",
    "compare-graphs-json": "compare traces/h100-graphs.sqlite.xz traces/h200-graphs.sqlite.xz --format json",
    "project-eager": "project traces/h100.sqlite.xz --to h200 --to l4 --to a100-80gb --launch-cost-scale 0.662",
    "project-graphs": "project traces/h100-graphs.sqlite.xz --to h200 --fixed-kernel-us 4 --kernel-scale attention=0.5",
    "project-graphs-what-if": "project traces/h100.sqlite.xz --to h200 --graphs --graph-launch-us 20 --format json",
    "quant-table-h200": "quant-table traces/h200-graphs.sqlite.xz traces/h200-graphs-int8.sqlite.xz "
    "traces/h200-graphs-gemlite-int4.sqlite.xz --to h100-sxm",
}


def output(command: str) -> str:
    """stdout of `gapprof COMMAND` in a terminal WIDTH columns wide, run from the repository root."""
    result = CliRunner(env={"COLUMNS": str(WIDTH)}).invoke(main, shlex.split(command), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


if __name__ == "__main__":
    import os

    os.chdir(REPO)
    chosen = sys.argv[1:]  # names to write again (default: all)
    for name, command in COMMANDS.items():
        if chosen and name not in chosen:
            continue
        (FOLDER / f"{name}.txt").write_text(f"$ gapprof {command}\n{output(command)}")
        print(f"wrote {name}", file=sys.stderr)
