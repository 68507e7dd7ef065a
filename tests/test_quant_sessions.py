"""`--quant` in ab and sweep: each arm's and cell's floor counts its quantised layers (by the bytes its session
recorded, else the analytic estimate) beside the unquantised floor; ab's arms may differ in quantisation
(--quant-b). End to end on the CPU with int8 (torchao) and nf4 (bitsandbytes), skipped without them."""

import json
import statistics

import pytest
from conftest import invoke_recorded
from gapprof.profiler import ab_runner, fresh_sessions, sweep_runner

from gapprof import models, quant, quant_floor
from gapprof import result_files as report
from gapprof.step_bytes import step_bytes

TINY = [
    "--model",
    "tiny-qwen2",
    "--ctx",
    "16",
    "--steps",
    "3",
    "--warmup",
    "1",
    "--dtype",
    "bfloat16",
    "--device",
    "cpu",
]


def session(order: int, runtime: str, step_ms: list[float], quant: str = "none") -> dict:
    request = {
        "model": "qwen2.5-7b",
        "ctx": 2048,
        "steps": len(step_ms),
        "warmup": 4,
        "runtime": runtime,
        "backend": "none",
        "dtype": "bfloat16",
        "attn": "sdpa",
        "weights": None,
        "seed": 0,
        "device": "cuda",
        "quant": quant,
        "quant_lm_head": False,
    }
    return {
        "request": request,
        "ok": True,
        "order": order,
        "first_token": 7,
        "tokens": [1] * len(step_ms),
        "step_ms": step_ms,
        "copy_bandwidth_gbps": 2800.0,
        "gpu_name": "NVIDIA H100 80GB HBM3",
    }


def test_each_arm_has_its_own_floor_and_the_unquantised_one_beside():
    records_a = [session(0, "graphs", [9.7, 9.6]), session(2, "graphs", [9.9, 9.5])]
    records_b = [session(1, "graphs", [7.2, 7.3], "int4"), session(3, "graphs", [7.1, 7.4], "int4")]
    data = ab_runner.summarise(records_a, records_b, count_embedding=False)
    spec = models.get_spec("qwen2.5-7b")
    stored = quant_floor.analytic(spec, "int4", 2).stored
    contexts = (2052, 2053)
    assert data["floor"]["floor_bytes"] == statistics.fmean(step_bytes(spec, c, 2)["total"] for c in contexts)
    assert data["floor_b"]["floor_bytes"] == statistics.fmean(
        step_bytes(spec, c, 2, stored=stored)["total"] for c in contexts
    )
    assert data["floor_b"]["floor_bytes_unquantised"] == data["floor"]["floor_bytes"]
    b = data["arms"]["b"]
    assert b["quant"] == "int4" and "quant" not in data["arms"]["a"] and "quant" not in data["request"]
    assert b["floor_fraction"] == pytest.approx(data["floor_b"]["floor_ms"] / 7.25)
    assert b["floor_fraction_unquantised"] == pytest.approx(data["floor"]["floor_ms"] / 7.25)
    markdown = report.ab_markdown({"command": "gapprof ab", "finished_at": "now", **data})
    assert "# A/B: graphs (A) vs graphs int4 (B)" in markdown and "| B | graphs int4 | 2 |" in markdown
    assert "Arm B. Floor:" in markdown and "an analytic estimate (--quant int4)" in markdown
    assert f"B {100 * b['floor_fraction_unquantised']:.1f}%" in markdown
    assert report.ab_headline({**data}).startswith("graphs int4 over graphs:")


def test_a_cell_floor_takes_the_bytes_its_session_recorded():
    request = session(0, "graphs", [10.0], "nf4")["request"]
    spec = models.get_spec("qwen2.5-7b")
    recorded = {
        "method": "nf4",
        "lm_head": False,
        "bits_per_weight": 4.5,
        "kinds": {kind: {"read_bytes": 1000} for kind in quant.LINEAR_KINDS},
    }
    floor = fresh_sessions.floor(request, "NVIDIA H100 80GB HBM3", None, False, recorded)
    first = request["ctx"] + request["warmup"]
    assert floor["floor_bytes"] == step_bytes(spec, first, 2, stored={k: 1000 for k in recorded["kinds"]})["total"]
    assert "recorded at capture" in floor["convention"]
    row = sweep_runner.cell_row(
        request,
        {"ok": True, "step_ms": [10.0], "first_token": 1, "quant": recorded},
        "",
        "NVIDIA H100 80GB HBM3",
        None,
        False,
    )
    assert row["quant"] == "nf4" and row["floor_fraction"] == pytest.approx(floor["floor_ms"] / 10.0)
    assert row["floor_fraction_unquantised"] == pytest.approx(floor["floor_ms_unquantised"] / 10.0)
    assert row["floor_convention"] == floor["convention"]


def run(*args):
    pytest.importorskip("torch")
    return invoke_recorded(*args)


def test_ab_of_unquantised_against_nf4_on_the_cpu(tmp_path):
    pytest.importorskip("bitsandbytes")
    result = run("ab", *TINY, "--a", "eager", "--b", "eager", "--quant-b", "nf4", "--sessions", 2, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "ab.json").read_text())
    assert data["arms"]["b"]["quant"] == "nf4" and "quant" not in data["arms"]["a"]
    assert data["floor_b"]["floor_bytes"] < data["floor"]["floor_bytes"] == data["floor_b"]["floor_bytes_unquantised"]
    assert "recorded at capture" in data["floor_b"]["convention"]
    assert result.stdout.strip().splitlines()[-1].startswith("eager nf4 over eager:")


def test_sweep_with_int8_records_each_cell_quantised(tmp_path):
    pytest.importorskip("torchao")
    result = run(
        "sweep",
        "--models",
        "tiny-qwen2",
        "--ctx",
        "16",
        "--runtime",
        "static",
        "--steps",
        3,
        "--warmup",
        1,
        "--dtype",
        "bfloat16",
        "--device",
        "cpu",
        "--quant",
        "int8",
        "-o",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "sweep.json").read_text())
    (row,) = data["rows"]
    assert row["status"] == "ok" and row["quant"] == "int8" and data["grid"]["quant"] == "int8"
    assert "decoder linears quantised int8" in data["floor_convention"]
    assert data["floor_convention"] == row["floor_convention"]  # what the cell counted, not an estimate
    assert "recorded at capture" in row["floor_convention"]


def test_a_quantised_sweep_with_no_cell_run_names_the_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(
        fresh_sessions, "run_fresh", lambda requests, cell_timeout=None: pytest.fail("a cell was started")
    )
    result = run(
        "sweep",
        "--models",
        "tiny-qwen2",
        "--ctx",
        "600",
        "--runtime",
        "static",
        "--dtype",
        "bfloat16",
        "--device",
        "cpu",
        "--quant",
        "int8",
        "-o",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [row["status"] for row in data["rows"]] == ["not run"]
    spec = models.get_spec("tiny-qwen2")
    assert data["floor_convention"] == quant_floor.convention(
        spec, 2, False, "bfloat16", quant_floor.analytic(spec, "int8", 2)
    )
    assert "an analytic estimate (--quant int8)" in data["floor_convention"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quant", "int4"], "--quant int4 runs on CUDA only"),
        (["--quant-lm-head"], "--quant-lm-head quantises lm_head with the --quant method"),
    ],
)
def test_a_sweep_that_cannot_quantise_fails_before_any_cell(args, message, monkeypatch):
    monkeypatch.setattr(fresh_sessions, "run_fresh", lambda requests: pytest.fail("a cell was started"))
    result = run("sweep", "--models", "tiny-qwen2", "--ctx", "16", "--device", "cpu", "--dtype", "bfloat16", *args)
    assert result.exit_code == 1 and message in result.output
