"""`gapprof sweep` with a tiny model on the CPU: an impossible cell and a failing cell become rows with reasons,
later cells still run (in a fresh process); outputs; `gapprof sweep-attribute` on a synthetic trace."""

import csv
import json

import pytest
from conftest import basic_step, invoke_recorded
from gapprof.profiler import fresh_sessions, sweep_runner
from synthetic import TraceBuilder


def run(*args):
    return invoke_recorded(*args)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("sweep")
    # tiny-qwen2 has 512 positions: ctx 1024 cannot run. graphs needs CUDA: it fails inside its process, and the
    # eager cell after it must still run, in a new process.
    result = run(
        "sweep",
        "--models",
        "tiny-qwen2",
        "--ctx",
        "16,1024",
        "--runtime",
        "graphs,eager",
        "--steps",
        4,
        "--warmup",
        3,
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    return result, out, json.loads((out / "sweep.json").read_text())


def test_one_row_per_cell_with_reasons_for_those_that_could_not_run(swept):
    result, _, data = swept
    rows = {(r["ctx"], r["runtime"]): r for r in data["rows"]}
    assert list(rows) == [(16, "graphs"), (16, "eager"), (1024, "graphs"), (1024, "eager")]
    assert rows[16, "graphs"]["status"] == "not run"
    assert rows[16, "graphs"]["reason"].startswith("RuntimeError:")
    for runtime in ("graphs", "eager"):
        assert rows[1024, runtime]["reason"] == "--ctx 1024 + 7 decode steps needs 1032 positions; tiny-qwen2 has 512"
    ran = rows[16, "eager"]
    assert ran["status"] == "ok" and len(ran["step_ms"]) == 4
    assert ran["p10_ms"] <= ran["median_ms"] <= ran["p90_ms"]
    assert "floor_fraction" not in ran  # the CPU has no datasheet bandwidth
    assert result.stderr.count("built tiny-qwen2") == 2  # a fresh process after the failed cell
    assert "1 of 4 cells ran on cpu" in result.stdout


def test_outputs_hold_every_row_and_the_command(swept):
    _, out, data = swept
    assert data["command"].startswith("gapprof sweep --models tiny-qwen2 --ctx 16,1024")
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["ctx"], r["runtime"], r["status"]) for r in table] == [
        ("16", "graphs", "not run"),
        ("16", "eager", "ok"),
        ("1024", "graphs", "not run"),
        ("1024", "eager", "not run"),
    ]
    assert float(table[1]["median_ms"]) == data["rows"][1]["median_ms"]
    markdown = (out / "sweep.md").read_text()
    assert data["command"] in markdown and markdown.count("tiny-qwen2 has 512") == 2
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_floor_fraction_of_a_gpu_cell():
    request = {
        "model": "llama-3.1-8b",
        "ctx": 4096,
        "steps": 2,
        "warmup": 1,
        "runtime": "graphs",
        "attn": "sdpa",
        "dtype": "bfloat16",
        "weights": None,
    }
    record = {"ok": True, "step_ms": [12.0, 14.0], "first_token": 3}
    row = sweep_runner.cell_row(request, record, "", "NVIDIA H200", 4300.0, count_embedding=False)
    floor = fresh_sessions.floor(request, "NVIDIA H200", 4300.0, False)
    assert row["median_ms"] == 13.0 and row["floor_ms"] == floor["floor_ms"]
    assert row["floor_fraction"] == pytest.approx(floor["floor_bytes"] / 4800e9 * 1e3 / 13.0)
    assert row["floor_fraction_copy"] == pytest.approx(floor["floor_bytes"] / 4300e9 * 1e3 / 13.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "tiny-qwen2,gpt-5"], "unknown model 'gpt-5'"),
        (["--ctx", "16,abc"], "expected comma-separated integers"),
        (["--runtime", "eager,turbo"], "unknown runtime turbo"),
        (["--device", "cuda"], "no CUDA device is visible"),
        (["--device", "cpu", "--profile"], "--profile captures with nsys or CUPTI and needs --device cuda"),
    ],
)
def test_bad_options_fail_in_one_line_before_any_cell(args, message, monkeypatch):
    pytest.importorskip("torch")  # `gapprof sweep` checks for torch before it reads its options
    monkeypatch.setattr(fresh_sessions, "run_fresh", lambda requests: pytest.fail("a cell was started"))
    result = run("sweep", "--models", "tiny-qwen2", "--ctx", "16", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_sweep_attribute_adds_the_anatomy_of_traced_cells(swept, tmp_path):
    _, _, data = swept
    b = TraceBuilder()
    for i in range(4):
        basic_step(b, offset=2000 * i)
    (tmp_path / "traces").mkdir()
    b.write(tmp_path / "traces" / "cell.sqlite")
    data["rows"][1]["trace"] = "traces/cell.sqlite"
    (tmp_path / "sweep.json").write_text(json.dumps(data))
    result = run("sweep-attribute", tmp_path)
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "sweep.json").read_text())["rows"][1]
    # basic_step: wall 1000 ns = busy 260 + starved 150 + latency 50 + head 100 + tail 440
    expected = {"wall": 1000, "busy": 260, "starved": 150, "latency": 50, "head": 100, "tail": 440}
    assert {t: round(row["anatomy"][t] * 1e6) for t in expected} == expected
    with open(tmp_path / "sweep.csv") as f:
        assert float(next(r for r in csv.DictReader(f) if r["trace"])["profiled_starved_ms"]) == 150e-6


def test_sweep_attribute_writes_into_another_folder_with_o(swept, tmp_path):
    _, _, data = swept
    b = TraceBuilder()
    for i in range(4):
        basic_step(b, offset=2000 * i)
    (tmp_path / "traces").mkdir()
    b.write(tmp_path / "traces" / "cell.sqlite")
    data["rows"][1]["trace"] = "traces/cell.sqlite"
    (tmp_path / "sweep.json").write_text(json.dumps(data))
    before = (tmp_path / "sweep.json").read_text()
    result = run("sweep-attribute", tmp_path, "-o", tmp_path / "attributed")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sweep.json").read_text() == before  # the run's own files are left as they were
    row = json.loads((tmp_path / "attributed" / "sweep.json").read_text())["rows"][1]
    assert round(row["anatomy"]["busy"] * 1e6) == 260
    assert {p.name for p in (tmp_path / "attributed").iterdir()} == {"sweep.csv", "sweep.md", "sweep.json", "sweep.png"}


def test_sweep_attribute_without_traces_says_so(swept, tmp_path):
    _, out, _ = swept
    result = run("sweep-attribute", out)
    assert result.exit_code == 1 and "no row has a trace" in result.output
