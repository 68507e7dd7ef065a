"""The first thing a newcomer runs: `gapprof -h` lists the commands by what they need without importing any of
them, every command answers -h with an example, and an output file named for one format is not written in
another."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from gapprof.cli import COMMANDS, SECTIONS, main


def test_the_top_level_help_groups_the_commands_and_imports_none():
    listing = (
        "import sys; from click.testing import CliRunner; from gapprof.cli import main; "
        "result = CliRunner().invoke(main, ['-h']); print(result.output); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('polars', 'matplotlib', 'torch', 'pandas') "
        "or m.startswith('gapprof.commands.')))"
    )
    out = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True).stdout
    help_text, imported = out.rsplit("\n", 2)[0], out.rsplit("\n", 2)[1]
    assert imported == "[]"
    sections = [title for title in SECTIONS if f"{title}:" in help_text]
    assert sections == list(SECTIONS) and "Capture on a GPU" in sections
    assert all(f"  {name} " in help_text for name in COMMANDS)


def test_the_help_sections_name_only_real_commands():
    listed = [name for lines in SECTIONS.values() for name in lines]
    assert sorted(listed) == sorted(set(listed)) and set(listed) <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_h_with_an_example(name):
    result = CliRunner().invoke(main, [name, "-h"])
    assert result.exit_code == 0, result.output
    example = result.output[result.output.index("Example") :].splitlines()[1]
    assert example.strip().startswith(f"gapprof {name}")


@pytest.mark.parametrize(
    "args",
    [
        ["attribute", "traces/h100.sqlite.xz", "--format", "csv", "-o", "report.json"],
        ["attribute", "traces/h100.sqlite.xz", "-o", "report.md"],
        ["compare", "traces/h100.sqlite.xz", "traces/h200.sqlite.xz", "--format", "json", "-o", "both.csv"],
    ],
)
def test_an_output_named_for_another_format_is_refused_before_any_work(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the traces are not there: the refusal comes before they are read
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "names" in result.output and "but --format is" in result.output
    assert not list(tmp_path.iterdir())
