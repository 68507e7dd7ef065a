"""`--cell-timeout`: a cell that writes no result in time is killed with what its process started, becomes a row
with that reason, and the model's later cells run in a new process. A stand-in child (no torch) times one request
per process and then hangs, with a worker process of its own (as inductor's compile workers are)."""

import json
import sys
import time
from pathlib import Path

from conftest import invoke_recorded
from gapprof.profiler import fresh_sessions
from gapprof.profiler.request import CaptureRequest

from gapprof.commands import options

HANGING_CHILD = """
import json, subprocess, sys, time
requests_path, results_path, pids_path = sys.argv[1:]
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stderr=subprocess.DEVNULL)
with open(pids_path, "a") as pids:
    pids.write(f"{worker.pid}\\n")
first = json.load(open(requests_path))[0]
with open(results_path, "a") as results:
    results.write(json.dumps({"request": first, "ok": True, "step_ms": [1.0], "first_token": 1}) + "\\n")
print("timed one cell, now stuck", file=sys.stderr, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def _all_dead_within(pids: list[int], seconds: float) -> bool:
    """SIGKILL is delivered asynchronously: a killed process may still be running for a moment."""
    deadline = time.monotonic() + seconds
    while any(map(_alive, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_stuck_cell_is_killed_with_its_workers_and_the_rest_run_on(tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setattr(
        fresh_sessions,
        "_child_command",
        lambda requests, results: [sys.executable, "-c", HANGING_CHILD, str(requests), str(results), str(pids)],
    )
    requests = [
        CaptureRequest(model="tiny-qwen2", ctx=c, runtime="eager", backend="none", device="cpu") for c in (16, 32, 64)
    ]
    records = fresh_sessions.run_fresh(requests, cell_timeout=1.0)
    assert [r["request"]["ctx"] for r in records] == [16, 32, 64]
    assert [r["ok"] for r in records] == [True, False, True]
    assert records[1]["reason"].startswith("ran past --cell-timeout 1 s: its process was killed")
    assert records[1]["reason"].endswith("last message: timed one cell, now stuck")
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 2 and _all_dead_within(workers, seconds=10)


def test_without_a_timeout_a_child_that_dies_fails_its_cell(tmp_path, monkeypatch):
    dying = "import sys; print('out of memory', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(fresh_sessions, "_child_command", lambda requests, results: [sys.executable, "-c", dying])
    (record,) = fresh_sessions.run_fresh([CaptureRequest(model="tiny-qwen2", backend="none", device="cpu")])
    assert not record["ok"] and record["reason"] == "session process exited with status 3: out of memory"


def test_sweep_takes_the_timeout_and_writes_the_stuck_cell_as_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(options, "check_session_device", lambda *_: None)  # the stand-in child needs no torch
    monkeypatch.setattr(
        fresh_sessions,
        "_child_command",
        lambda requests, results: [
            sys.executable,
            "-c",
            HANGING_CHILD,
            str(requests),
            str(results),
            str(tmp_path / "pids"),
        ],
    )
    result = invoke_recorded(
        "sweep",
        "--models",
        "tiny-qwen2",
        "--ctx",
        "16,32",
        "--runtime",
        "eager",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--cell-timeout",
        "1",
        "-o",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"]
    assert [(r["ctx"], r["status"]) for r in rows] == [(16, "ok"), (32, "not run")]
    assert rows[1]["reason"].startswith("ran past --cell-timeout 1 s")
