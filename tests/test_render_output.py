"""Output for a terminal and for programs: text tables fit the terminal's width (names shortened in the middle,
wide tables split into blocks), CSV is one table per file, and only the text formats round numbers."""

import json
import re
import shlex

import polars as pl
import pytest
from click.testing import CliRunner
from golden_outputs import REPO

from gapprof.cli import main
from gapprof.terminal_table import shorten, shorten_distinct

CUDNN = "cudnn_generated_fort_native_sdpa_sm80_flash_fprop_wmma_f16_knob_35_16x128x128_1x4x1_cga1x1x1_kernel0_0"
WIDE = {
    "default": "attribute traces/h100.sqlite.xz",
    "per-step": "attribute traces/h100.sqlite.xz --per-step",
    "by-module": "attribute traces/h100-eager-modules.sqlite.xz --by module",
    "ncu-report": "ncu-report traces/h100-graphs-ncu.csv.gz --reference traces/h100-static-modules.sqlite.xz",
    "project": "project traces/h100.sqlite.xz --to h200 --to l4 --to a100-80gb",
}


@pytest.fixture(autouse=True)
def repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def run(command: str, columns: int = 80):
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(main, shlex.split(command))


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("name", sorted(WIDE))
def test_every_line_fits_the_terminal(name, columns):
    result = run(WIDE[name], columns)
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= columns


def test_wide_tables_repeat_their_key_column_in_each_block():
    *blocks, notes = run("attribute traces/h100.sqlite.xz --tables steps").stdout.split("\n\n")
    headers = [block.splitlines()[2 if block.startswith("steps\n") else 0] for block in blocks]
    assert len(blocks) > 2 and all(header.startswith("step ") for header in headers)
    assert notes.startswith("skipping")


def test_a_shortened_name_keeps_its_start_and_end():
    assert shorten(CUDNN, 40) == "cudnn_generated_for...cga1x1x1_kernel0_0"
    assert shorten("short", 40) == "short"


def test_kernels_that_differ_in_the_middle_never_print_alike():
    """Two GEMV kernels of the shipped H100 trace: at 80 columns both printed as nvjet_sm90_tst_...6_4x1_v_bz_TNT."""
    names = ["nvjet_sm90_tst_256x8_64x6_4x1_v_bz_TNT", "nvjet_sm90_tst_128x8_64x6_4x1_v_bz_TNT", "gemv", "gemv"]
    assert [shorten(n, 32) for n in names[:2]] == ["nvjet_sm90_tst_...6_4x1_v_bz_TNT"] * 2
    short = shorten_distinct(names, 32)
    assert len(set(short[:2])) == 2 and all(len(n) <= 32 for n in short) and short[2:] == ["gemv", "gemv"]
    assert short[0].startswith("nvjet_sm90_tst_2") and short[1].startswith("nvjet_sm90_tst_1")
    (line,) = [
        line
        for line in run("attribute traces/h100-eager-cudnn.sqlite.xz --tables kernels").stdout.splitlines()
        if line.startswith("cudnn") and "attention" in line
    ]
    name = line.split()[0]
    assert len(name) < len(CUDNN) and "..." in name
    assert CUDNN.startswith(name.split("...")[0]) and CUDNN.endswith(name.split("...")[1])


def test_full_names_are_never_shortened():
    assert CUDNN in run("attribute traces/h100-eager-cudnn.sqlite.xz --tables kernels --full-names").stdout


def test_csv_to_a_folder_writes_one_readable_table_each(tmp_path):
    folder = tmp_path / "tables"
    assert run(f"attribute traces/h100.sqlite.xz --per-step --format csv -o {folder}").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{t}.csv" for t in ("api", "classes", "facts", "findings", "kernels", "steps", "summary")
    ]
    doc = json.loads(run("attribute traces/h100.sqlite.xz --per-step --format json").stdout)
    summary = pl.read_csv(folder / "summary.csv")
    assert summary.filter(pl.col("term") == "wall")["median_ms"].item() == doc["summary"][0]["median_ms"]
    assert pl.read_csv(folder / "steps.csv")["wall"].to_list() == [step["wall"] for step in doc["steps"]]
    assert pl.read_csv(folder / "kernels.csv").height == len(doc["kernels"])
    assert dict(pl.read_csv(folder / "facts.csv").iter_rows())["measured steps"] == "20"


def test_csv_of_a_comparison_keeps_numbers_raw(tmp_path):
    command = "compare traces/h100.sqlite.xz traces/h200.sqlite.xz --format"
    assert run(f"{command} csv -o {tmp_path}").exit_code == 0
    doc = json.loads(run(f"{command} json").stdout)
    compared = pl.read_csv(tmp_path / "compare.csv")
    floor = compared.filter(pl.col("") == "floor ms")["h100"].item()
    assert float(floor) == next(row["h100"] for row in doc["compare"] if row[""] == "floor ms")
    assert pl.read_csv(tmp_path / "explanation-h100-h200.csv")["ratio"].dtype == pl.Float64


def test_one_table_goes_to_stdout_or_a_file(tmp_path):
    stdout = run("attribute traces/h100.sqlite.xz --format csv --tables summary").stdout
    assert stdout.startswith("term,median_ms,") and "#" not in stdout
    assert run(f"attribute traces/h100.sqlite.xz --format csv --tables summary -o {tmp_path / 's.csv'}").exit_code == 0
    assert (tmp_path / "s.csv").read_text() == stdout


def test_text_formats_round_every_float_to_three_decimals():
    for command in [
        *WIDE.values(),
        "compare traces/h100.sqlite.xz traces/h200.sqlite.xz",
        "attribute traces/h200.sqlite.xz --format markdown --per-step",
    ]:
        assert not re.search(r"\d\.\d{4,}", run(command).stdout), command


def test_whole_numbers_show_without_decimals_in_text_and_stay_raw_in_json():
    from gapprof.render import render

    table = pl.DataFrame(
        {"class": ["gemv", "copy"], "calls_per_step": [198.0, 319.0], "ms": [3.0, 1.25], "gbps": [None, 2.5]}
    )
    facts = {"kernels per step": 1680.0, "copy benchmark / peak": 0.899, "unprofiled ms": 7.0}
    text = render([("classes", table), ("facts", facts)], "table", [])
    assert re.search(r"gemv\s+198\s+3\.000\s+-", text)  # a column of whole numbers only; ms has 1.25 beside 3.0
    assert re.search(r"kernels per step\s+1,680\n", text) and re.search(r"unprofiled ms\s+7\n", text)
    assert re.search(r"copy benchmark / peak\s+0\.899", text)
    markdown = render([("classes", table)], "markdown", [])
    assert "| gemv | 198 | 3.000 | - |" in markdown
    doc = json.loads(render([("classes", table), ("facts", facts)], "json", []))
    assert doc["classes"][0]["calls_per_step"] == 198.0 and isinstance(doc["classes"][0]["calls_per_step"], float)
    assert isinstance(doc["facts"]["kernels per step"], float)
