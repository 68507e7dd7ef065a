"""Bad output paths, foreign files and overrides that contradict a trace end in one line and a non-zero exit,
before any analysis runs; --force accepts what contradicts the capture."""

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import shipped_ncu_lines

from gapprof.cli import main

TRACES = Path(__file__).resolve().parents[1] / "traces"
H100 = str(TRACES / "h100.sqlite.xz")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result) -> str:
    """The output without progress lines must be exactly one error line."""
    lines = [line for line in result.output.splitlines() if line and not line.startswith("[gapprof]")]
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 or lines[0].startswith("Usage:"), result.output
    return result.output


@pytest.mark.parametrize(
    "args",
    [
        ["attribute", H100, "-o", "/nonexistent/x.txt"],
        ["compare", H100, str(TRACES / "h200.sqlite.xz"), "-o", "/nonexistent/x.txt"],
        ["ncu-report", str(TRACES / "h100-eager-cudnn-ncu.csv.gz"), "-o", "/nonexistent/x.txt"],
        ["compare", H100, str(TRACES / "h200.sqlite.xz"), "--plot", "/tmp/x.txt"],
        ["project", H100, "--to", "h200", "--plot", "/nonexistent/x.png"],
    ],
)
def test_output_paths_are_checked_before_the_work(args):
    result = run(*args)
    assert result.exit_code == 2 and "[gapprof] reading" not in result.output, result.output
    assert "does not exist" in result.output or "unsupported picture format" in result.output


def test_a_file_that_is_not_an_ncu_csv_is_one_line():
    assert "not an ncu CSV" in one_error_line(run("ncu-report", H100))


def test_a_truncated_ncu_csv_is_refused(tmp_path):
    rows = shipped_ncu_lines("h100-eager-cudnn-ncu.csv.gz")
    cut = tmp_path / "cut-ncu.csv"
    cut.write_text("\n".join(rows[:50]) + "\n" + rows[50][:40] + "\n")
    assert "kernel row 49 has" in one_error_line(run("ncu-report", cut, "--gpu", "h100"))


@pytest.mark.parametrize(
    "args, says",
    [
        (["--ctx", "10000000"], "floor is above the GPU busy time"),
        (["--model", "llama-3.1-8b"], "--model llama-3.1-8b but the trace was captured with qwen2.5-7b"),
        (["--dtype", "float32"], "--dtype float32 but the trace was captured in bfloat16"),
        (["--ctx", "4096"], "--ctx 4096 but the first measured step was captured at context 2076"),
    ],
)
def test_overrides_that_contradict_the_trace_need_force(args, says):
    assert says in one_error_line(run("attribute", H100, *args, "--tables", "summary"))
    assert run("attribute", H100, *args, "--tables", "summary", "--force").exit_code == 0


def test_the_capture_context_is_accepted():
    assert run("attribute", H100, "--ctx", "2076", "--tables", "summary").exit_code == 0


def test_ranges_smaller_than_a_step_are_caught_by_the_floor():
    result = run("attribute", TRACES / "h100-eager-modules.sqlite.xz", "--range", "module:.*", "--tables", "summary")
    assert "step ranges are not whole decode steps" in one_error_line(result)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--reference", H100], "--reference is used only with --by module"),
        (["--by", "module", "--per-step"], "--per-step shows steps, not modules"),
    ],
)
def test_options_that_would_be_ignored_are_refused(args, says):
    result = run("attribute", H100, *args)
    assert result.exit_code == 2 and says in result.output


@pytest.mark.parametrize("command", ["ab", "sweep"])
def test_every_command_writes_with_dash_dash_output(command):
    assert "-o, --output, --out DIRECTORY" in run(command, "--help").output


def test_project_graphs_on_a_graphs_trace_is_refused():
    result = run("project", TRACES / "h100-graphs.sqlite.xz", "--to", "h200", "--graphs", "--graph-launch-us", "20")
    assert "already launch CUDA graphs" in one_error_line(result)


def test_a_short_gpu_name_says_which_gpu_it_means():
    result = run("project", H100, "--to", "a100", "--format", "json")
    assert "a100 means a100-80gb (name a100-40gb for the other)" in result.stdout


def test_an_export_older_than_its_report_is_named(tmp_path):
    report, export = tmp_path / "x.nsys-rep", tmp_path / "x.sqlite.xz"
    shutil.copy(TRACES / "h100-graphs.nsys-rep", report)
    shutil.copy(TRACES / "h100-graphs.sqlite.xz", export)
    fresh = run("attribute", report, "--tables", "summary")
    assert fresh.exit_code == 0 and "older than" not in fresh.stdout
    os.utime(export, (report.stat().st_mtime - 3600,) * 2)
    stale = run("attribute", report, "--tables", "summary", "--format", "json")
    assert stale.exit_code == 0 and f"{export} is 60 min older than x.nsys-rep" in json.loads(stale.stdout)["notes"][0]


@pytest.mark.parametrize(
    "args",
    [
        ["attribute", H100, "--format", "csv"],
        ["attribute", H100, "--format", "csv", "--by", "module"],
        ["compare", H100, str(TRACES / "h200.sqlite.xz"), "--format", "csv"],
        ["project", H100, "--to", "h200", "--format", "csv", "-o", "/tmp/one.csv"],
        ["ncu-report", str(TRACES / "h100-eager-cudnn-ncu.csv.gz"), "--format", "csv"],
    ],
)
def test_csv_of_several_tables_without_a_folder_is_refused_before_the_work(args):
    result = run(*args)
    assert result.exit_code == 2 and "[gapprof] reading" not in result.output
    assert "--format csv writes one table per file: pass -o DIR" in result.output
    # attribute can also pick one table; the others always print several.
    assert ("--tables NAME" in result.output) == (args[0] == "attribute" and "module" not in args)


def test_compare_refuses_traces_of_different_attention_backends():
    """The cuDNN eager trace and the flash one differ in attention, not in GPU: not a fair comparison unasked."""
    pair = [str(TRACES / "h100-eager-cudnn.sqlite.xz"), str(TRACES / "h200.sqlite.xz")]
    result = CliRunner().invoke(main, ["compare", *pair])
    assert result.exit_code == 1
    assert "attn differs (h100-eager-cudnn: sdpa, h200: sdpa-flash)" in result.output
    forced = CliRunner().invoke(main, ["compare", *pair, "--force"])
    assert forced.exit_code == 0 and "compared anyway (--force): attn differs" in forced.output
