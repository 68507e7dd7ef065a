"""Timed decode requests run in fresh child processes, and each result's median against its floor.

The parent's half of timed, unprofiled decode: profiler.timing_child is the child it starts (the process that
builds the model and times the steps); ab_runner and sweep_runner call `run_fresh` with their requests and
`floor` for each result. Free of torch and polars: this runs in the orchestrating process of `gapprof ab` and
`gapprof sweep`.
"""

import collections
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gapprof import gpus
from gapprof.models import DTYPE_BYTES, get_spec
from gapprof.quant_floor import analytic, convention, recorded
from gapprof.step_bytes import step_bytes

STDERR_TAIL_LINES = 20
MACHINE_FIELDS = (
    "gpu_name",
    "gpu_memory_bytes",
    "gpu_sm_count",
    "driver",
    "cpu",
    "torch",
    "transformers",
    "cuda",
    "python",
)


def _child_command(requests_path: Path, results_path: Path) -> list[str]:
    return [sys.executable, "-m", "gapprof.profiler.timing_child", str(requests_path), str(results_path)]


def _kill_group(child: subprocess.Popen) -> None:
    """Kill the child and what it started (inductor's compile workers)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_a_stuck_cell(child: subprocess.Popen, results_path: Path, cell_timeout: float, killed: threading.Event):
    """Kill `child` once no record has reached results_path for cell_timeout seconds (its first cell's time counts
    from the child's start, so it includes building the model)."""
    lines, since = 0, time.monotonic()
    while child.poll() is None:
        now_lines = results_path.read_text().count("\n")
        if now_lines != lines:
            lines, since = now_lines, time.monotonic()
        elif time.monotonic() - since > cell_timeout:
            killed.set()
            _kill_group(child)
            return
        time.sleep(0.1)


def _run_child(requests: list, workdir: Path, cell_timeout: float | None) -> tuple[list[dict], str]:
    """One child process over `requests`; returns the records it wrote and why it stopped short of them, if it did.
    The child's stderr (its progress) is passed through line by line."""
    requests_path, results_path = workdir / "requests.json", workdir / "results.jsonl"
    requests_path.write_text(json.dumps([dataclasses.asdict(r) for r in requests]))
    results_path.write_text("")
    tail = collections.deque(maxlen=STDERR_TAIL_LINES)
    killed = threading.Event()
    # With a cell timeout the child leads its own process group, so that a kill reaches its workers too.
    with subprocess.Popen(
        _child_command(requests_path, results_path),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=cell_timeout is not None,
    ) as child:
        if cell_timeout is not None:
            threading.Thread(
                target=_kill_a_stuck_cell, args=(child, results_path, cell_timeout, killed), daemon=True
            ).start()
        try:
            for line in child.stderr:
                sys.stderr.write(line)
                tail.append(line.strip())
        except KeyboardInterrupt:
            if cell_timeout is not None:  # its own group does not get the terminal's Ctrl-C
                _kill_group(child)
            raise
    records = [json.loads(line) for line in results_path.read_text().splitlines()]
    last = next((line for line in reversed(tail) if line), "no message")
    if killed.is_set():
        return records, (
            f"ran past --cell-timeout {cell_timeout:g} s: its process was killed, the later cells ran "
            f"in a new one; last message: {last}"
        )
    return records, f"session process exited with status {child.returncode}: {last}"


def run_fresh(requests: list, cell_timeout: float | None = None) -> list[dict]:
    """One record per CaptureRequest, in order: `ok` with `step_ms`, or not `ok` with a `reason`.

    The requests (one model) run in a child process that builds the model once; a request that fails ends that
    child, and the rest run in a new one. A child that dies without a word (killed, crashed), or that writes no
    record for `cell_timeout` seconds (then killed with what it started), fails the request it was on, with the
    reason and its last stderr line.
    """
    records = []
    with tempfile.TemporaryDirectory(prefix="gapprof-") as tmp:
        while len(records) < len(requests):
            pending = requests[len(records) :]
            got, stopped = _run_child(pending, Path(tmp), cell_timeout)
            records += got
            if len(got) < len(pending) and (not got or got[-1]["ok"]):
                records.append({"request": dataclasses.asdict(pending[len(got)]), "ok": False, "reason": stopped})
    return records


def machine(records: list[dict]) -> dict:
    """The machine facts the records carry (the first known of each), and their median copy bandwidth."""
    facts = {k: next((r[k] for r in records if r.get(k) is not None), None) for k in MACHINE_FIELDS}
    copy = [r["copy_bandwidth_gbps"] for r in records if r.get("copy_bandwidth_gbps")]
    return {**facts, "copy_bandwidth_gbps": statistics.median(copy) if copy else None}


def floor(
    request: dict, gpu_name: str | None, copy_gbps: float | None, count_embedding: bool, quant: dict | None = None
) -> dict:
    """The analytic DRAM floor of a request's measured steps (the mean over them: step i reads ctx + i tokens):
    bytes per step, its convention, and ms against the datasheet bandwidth of `gpu_name` and against the measured
    copy bandwidth, each where known. Empty for a local checkpoint (no shipped config to count bytes from).

    A quantised request's floor counts its quantised layers by what they store: `quant`, the session record's
    (profiler.timing_child.quant_summary), else an analytic estimate; the unquantised floor's bytes and ms come beside
    it (`_unquantised`)."""
    if request.get("weights"):
        return {}
    spec, dtype_bytes = get_spec(request["model"]), DTYPE_BYTES[request["dtype"]]
    method = request.get("quant", "none")
    stored = None
    if method != "none":
        stored = recorded({"quant": quant}) if quant else analytic(spec, method, dtype_bytes, request["quant_lm_head"])
    first = request["ctx"] + request["warmup"]
    contexts = range(first, first + request["steps"])

    def mean_bytes(layers) -> float:
        return statistics.fmean(step_bytes(spec, c, dtype_bytes, count_embedding, layers)["total"] for c in contexts)

    totals = {"": mean_bytes(stored.stored if stored else None)}
    out = {
        "floor_bytes": totals[""],
        "convention": convention(spec, dtype_bytes, count_embedding, request["dtype"], stored),
    }
    if stored:
        totals["_unquantised"] = mean_bytes(None)
        out["floor_bytes_unquantised"] = totals["_unquantised"]
    gpu = gpus.gpu_for_device_name(gpu_name) if gpu_name else None
    for suffix, total in totals.items():
        if gpu is not None:
            out.update({f"floor_ms{suffix}": total / gpu.peak_gbps / 1e6, "datasheet_gbps": float(gpu.peak_gbps)})
        if copy_gbps:
            out.update({f"floor_ms_copy{suffix}": total / copy_gbps / 1e6, "copy_gbps": copy_gbps})
    return out


def floor_fractions(floor_: dict, step_ms: float) -> dict:
    """floor ms / step ms for each bandwidth the floor knows."""
    pairs = [
        (f"floor_fraction{kind}{suffix}", f"floor_ms{kind}{suffix}")
        for suffix in ("", "_unquantised")
        for kind in ("", "_copy")
    ]
    return {name: floor_[key] / step_ms for name, key in pairs if key in floor_}


def gpu_key(records: list[dict]) -> str:
    """The results folder name of the GPU that ran `records`: its datasheet key, else its device name."""
    name = next((r["gpu_name"] for r in records if r.get("gpu_name")), "unknown")
    gpu = gpus.gpu_for_device_name(name)
    return gpu.key if gpu else name.lower().replace(" ", "-")
