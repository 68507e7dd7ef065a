"""`gapprof sweep`'s runner: median step time and floor fraction over a grid of models x contexts x runtimes.

One of the four modules of timed, unprofiled decode: timing_child times requests inside a child process,
fresh_sessions starts those children and sets each result against its floor, and this module and ab_runner are
the two commands' runners on top. Each model's cells (one request of the grid each) run in a fresh process that
builds the model once (fresh_sessions.run_fresh); a cell that fails (out of memory, any error) ends that
process and the model's later cells run in a new one. Cells that cannot run are rows with the reason: positions
beyond the model's max_position_embeddings are found before any process starts.
"""

import dataclasses
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from gapprof.profiler import fresh_sessions

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.paths import sibling


def cell_row(
    request: dict,
    record: dict | None,
    reason: str,
    gpu_name: str | None,
    copy_gbps: float | None,
    count_embedding: bool,
) -> dict:
    """One output row: the cell, and its timing and floor if it ran, else the reason it did not."""
    row = {
        "model": request["model"],
        "ctx": request["ctx"],
        "runtime": request["runtime"],
        "attn": request["attn"],
        "steps": request["steps"],
        "warmup": request["warmup"],
    }
    if request.get("quant", "none") != "none":
        row.update(quant=request["quant"], quant_lm_head=request["quant_lm_head"])
    if record is None or not record["ok"]:
        return {**row, "status": "not run", "reason": reason or record["reason"]}
    times = record["step_ms"]
    median = statistics.median(times)
    p10, p90 = np.percentile(times, [10, 90])
    floor = fresh_sessions.floor(request, gpu_name, copy_gbps, count_embedding, record.get("quant"))
    return {
        **row,
        "status": "ok",
        "reason": "",
        "median_ms": median,
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        **{k: floor[k] for k in ("floor_ms", "floor_ms_copy") if k in floor},
        **fresh_sessions.floor_fractions(floor, median),
        "first_token": record["first_token"],
        **({"floor_convention": floor["convention"]} if "convention" in floor else {}),
        "step_ms": times,
    }


def run_grid(requests: list, count_embedding: bool, cell_timeout: float | None = None) -> tuple[list[dict], dict]:
    """Rows in grid order, and the machine facts of the sessions; a cell that runs past cell_timeout seconds is a
    row with that reason."""
    from gapprof.profiler.request import validate

    reasons, runnable = {}, {}
    for index, request in enumerate(requests):
        try:
            validate(request)
        except GapprofError as error:
            reasons[index] = str(error)
        else:
            runnable.setdefault(request.model, []).append(index)
    records = {}
    for model, indices in runnable.items():
        progress(f"{model}: {len(indices)} cells")
        records.update(zip(indices, fresh_sessions.run_fresh([requests[i] for i in indices], cell_timeout)))
    machine = fresh_sessions.machine(list(records.values()))
    rows = [
        cell_row(
            dataclasses.asdict(request),
            records.get(i),
            reasons.get(i, ""),
            machine["gpu_name"],
            machine["copy_bandwidth_gbps"],
            count_embedding,
        )
        for i, request in enumerate(requests)
    ]
    return rows, machine


def _trace_name(row: dict, backend: str) -> str:
    quant = f"-{row['quant']}" if "quant" in row else ""
    return f"{row['model']}-ctx{row['ctx']}-{row['runtime']}{quant}.{'nsys-rep' if backend == 'nsys' else 'sqlite'}"


def _quant_args(row: dict) -> list[str]:
    if "quant" not in row:
        return []
    return ["--quant", row["quant"], *(["--quant-lm-head"] if row["quant_lm_head"] else [])]


def profile_rows(rows: list[dict], out: Path, backend: str, dtype: str, attn: str, seed: int) -> None:
    """Capture one trace per timed cell with `gapprof capture` in its own process; each row gets the path of its
    .sqlite (relative to `out`) or the reason its capture failed."""
    for row in rows:
        if row["status"] != "ok":
            continue
        trace = Path("traces", _trace_name(row, backend))
        progress(f"profiling {row['model']} ctx {row['ctx']} {row['runtime']} ({backend})")
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "gapprof",
                "capture",
                "--model",
                row["model"],
                "--ctx",
                str(row["ctx"]),
                "--steps",
                str(row["steps"]),
                "--warmup",
                str(row["warmup"]),
                "--runtime",
                row["runtime"],
                "--backend",
                backend,
                "--dtype",
                dtype,
                "--attn",
                attn,
                "--seed",
                str(seed),
                *_quant_args(row),
                "-o",
                str(out / trace),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        sys.stderr.write(child.stderr)
        if child.returncode == 0:
            row["trace"] = str(sibling(trace, ".sqlite"))
        else:
            lines = child.stderr.strip().splitlines()
            row["profile_error"] = lines[-1] if lines else f"capture exited with status {child.returncode}"
