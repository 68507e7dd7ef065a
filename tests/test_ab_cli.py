"""`gapprof ab` end to end with a tiny model on the CPU (each session a real child process), the summary on
hand-built session records, and its one-line errors."""

import json
import statistics
import subprocess
import sys

import pytest
from conftest import invoke_recorded
from gapprof.profiler import ab_runner, fresh_sessions

from gapprof import result_files as report
from gapprof.models import get_spec, load_config
from gapprof.step_bytes import step_bytes

TINY = [
    "--model",
    "tiny-qwen2",
    "--ctx",
    "16",
    "--steps",
    "5",
    "--warmup",
    "2",
    "--dtype",
    "float32",
    "--device",
    "cpu",
]


def run(*args):
    pytest.importorskip("torch")  # `gapprof ab` checks for torch before it reads its options
    return invoke_recorded("ab", *args)


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def two_sessions_per_arm(tmp_path_factory):
    out = tmp_path_factory.mktemp("ab")
    result = run(*TINY, "--a", "eager", "--b", "static", "--sessions", 2, "-o", out)
    assert result.exit_code == 0, result.output
    return result, json.loads((out / "ab.json").read_text()), (out / "ab.md").read_text()


def test_sessions_alternate_and_the_speedup_is_the_ratio_of_mean_medians(two_sessions_per_arm):
    result, data, _ = two_sessions_per_arm
    a, b = data["arms"]["a"], data["arms"]["b"]
    assert (a["runtime"], b["runtime"]) == ("eager", "static")
    assert [s["order"] for s in a["sessions"]] == [0, 2] and [s["order"] for s in b["sessions"]] == [1, 3]
    for session in a["sessions"] + b["sessions"]:
        assert len(session["step_ms"]) == 5 and len(session["tokens"]) == 5
        assert session["median_ms"] == statistics.median(session["step_ms"])
    mean_a = statistics.fmean(s["median_ms"] for s in a["sessions"])
    mean_b = statistics.fmean(s["median_ms"] for s in b["sessions"])
    assert data["speedup"] == pytest.approx(mean_a / mean_b)
    low, high = data["ci95"]
    assert low <= data["speedup"] <= high
    assert data["bootstrap"]["resamples"] == 10_000
    # Eager and static decode the same tokens from the same seeded weights (float32 on the CPU).
    assert data["distinct_token_sequences"] == {"a": 1, "b": 1, "all": 1}
    assert data["machine"]["gpu_name"] == "cpu"
    assert "progress" not in result.stdout and "session 4/4: arm B (static)" in result.stderr


def test_results_record_the_exact_command(two_sessions_per_arm):
    _, data, markdown = two_sessions_per_arm
    assert data["command"].startswith("gapprof ab --model tiny-qwen2 --ctx 16")
    assert data["command"] in markdown
    assert f"**{data['speedup']:.3f}x**" in markdown
    assert markdown.count("| eager |") == 3  # the arm row and its two sessions
    # --attn auto resolves per arm, and each arm records the backend it ran
    assert (data["arms"]["a"]["attn"], data["arms"]["b"]["attn"]) == ("sdpa-flash", "sdpa")
    assert "attn sdpa-flash (A), sdpa (B)" in markdown


def session(order: int, runtime: str, step_ms: list[float], gpu_name: str = "NVIDIA H100 80GB HBM3") -> dict:
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
    }
    return {
        "request": request,
        "ok": True,
        "order": order,
        "first_token": 7,
        "tokens": [1] * len(step_ms),
        "step_ms": step_ms,
        "copy_bandwidth_gbps": 2800.0,
        "gpu_name": gpu_name,
    }


def test_floor_fraction_per_arm_uses_the_datasheet_and_the_copy_bandwidth():
    records_a = [session(0, "eager", [66.0, 65.0, 67.0]), session(2, "eager", [64.0, 65.0, 70.0])]
    records_b = [session(1, "graphs", [9.7, 9.6, 9.8]), session(3, "graphs", [9.9, 9.5, 9.9])]
    data = ab_runner.summarise(records_a, records_b, count_embedding=False)
    spec = get_spec("qwen2.5-7b")
    # measured steps read contexts 2048 + 4 + (0, 1, 2)
    floor_bytes = statistics.fmean(step_bytes(spec, c, 2, False)["total"] for c in (2052, 2053, 2054))
    assert data["floor"]["floor_ms"] == pytest.approx(floor_bytes / 3350e9 * 1e3)
    assert data["floor"]["floor_ms_copy"] == pytest.approx(floor_bytes / 2800e9 * 1e3)
    assert data["arms"]["a"]["mean_of_medians_ms"] == pytest.approx(65.5)
    assert data["arms"]["a"]["floor_fraction"] == pytest.approx(data["floor"]["floor_ms"] / 65.5)
    assert data["arms"]["b"]["floor_fraction_copy"] == pytest.approx(data["floor"]["floor_ms_copy"] / 9.8)
    assert data["speedup"] == pytest.approx(65.5 / 9.8)
    markdown = report.ab_markdown({"command": "gapprof ab", "finished_at": "now", **data})
    assert "| A | eager | 2 | 65.50 |" in markdown
    assert f"{100 * data['arms']['b']['floor_fraction']:.1f}%" in markdown
    assert f"{data['floor']['floor_ms']:.2f} ms/step at 3350 GB/s (datasheet)" in markdown


def test_an_unknown_gpu_has_no_datasheet_floor_but_keeps_the_copy_floor():
    records = [session(0, "eager", [1.0, 2.0], "Some GPU"), session(1, "eager", [2.0, 3.0], "Some GPU")]
    floor = fresh_sessions.floor(records[0]["request"], "Some GPU", 2800.0, count_embedding=True)
    assert "floor_ms" not in floor and floor["floor_ms_copy"] > 0
    assert "floor_fraction" not in ab_runner.summarise(records, records, count_embedding=True)["arms"]["a"]


def test_a_failed_session_stops_the_run_with_its_reason(tmp_path):
    # A checkpoint folder with a config but no weight files: the first session fails inside its process.
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(load_config("tiny-qwen2")))
    line = error_line(run(*TINY, "--weights", checkpoint, "--b", "static", "--sessions", 2, "-o", tmp_path))
    assert line.startswith("Error: session 1 (arm A, eager) failed: OSError:")
    assert not (tmp_path / "ab.json").exists()


def test_graphs_on_the_cpu_is_refused_before_any_session(monkeypatch):
    monkeypatch.setattr(fresh_sessions, "run_fresh", lambda requests: pytest.fail("a session was started"))
    line = error_line(run(*TINY, "--b", "graphs", "--warmup", 3))
    assert line == (
        "Error: runtime graphs needs a CUDA device (CUDA graphs); --device cpu runs eager, static, compile and lean"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "cuda"], "no CUDA device is visible"),
        (["--b", "graphs", "--warmup", "1"], "runtime graphs needs --warmup >= 3"),
        (["--ctx", "600"], "tiny-qwen2 has 512"),
        (["--sessions", "1"], "Invalid value for '--sessions'"),
    ],
)
def test_bad_requests_fail_before_any_session(args, message, monkeypatch):
    monkeypatch.setattr(fresh_sessions, "run_fresh", lambda requests: pytest.fail("a session was started"))
    result = run(*TINY, *args)
    assert result.exit_code != 0 and message in result.output


def test_ab_and_sweep_import_no_polars():
    pytest.importorskip("torch")  # profiler.timing_child imports it
    code = (
        "import sys, gapprof.profiler.ab_runner, gapprof.profiler.sweep_runner, gapprof.profiler.timing_child; "
        "sys.exit('polars' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
