"""`gapprof sweep`: median step time and floor fraction over a grid of models x contexts x runtimes.

Each model's cells run in a fresh process that builds the model once (profiler.timed via cells.run_fresh); a
cell that fails (out of memory, any error) ends that process and the model's later cells run in a new one.
Cells that cannot run are rows with the reason: positions beyond the model's max_position_embeddings are
found before any process starts.
"""
import dataclasses
import datetime
import statistics
import subprocess
import sys
from pathlib import Path

import click
import numpy as np

from gapprof.provenance import invocation
from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.paths import sibling
from gapprof import result_files as report
from gapprof.profiler import cells, cli_options as options
from gapprof.models import DTYPE_BYTES, get_spec
from gapprof.runtime_names import RUNTIMES
from gapprof.step_bytes import floor_convention


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _models(ctx, param, value):
    names = _names(value)
    for name in names:
        get_spec(name)  # an unknown name fails here, listing the known ones
    return names


def _contexts(ctx, param, value):
    try:
        contexts = [int(v) for v in _names(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers") from None
    if not contexts or min(contexts) < 1:
        raise click.BadParameter("contexts must be positive integers")
    return contexts


def _runtimes(ctx, param, value):
    names = _names(value)
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise click.BadParameter(f"unknown runtime {', '.join(unknown) or '(none)'}; known: {', '.join(RUNTIMES)}")
    return names


def cell_row(request: dict, record: dict | None, reason: str, gpu_name: str | None, copy_gbps: float | None,
             count_embedding: bool) -> dict:
    """One output row: the cell, and its timing and floor if it ran, else the reason it did not."""
    row = {"model": request["model"], "ctx": request["ctx"], "runtime": request["runtime"],
           "steps": request["steps"], "warmup": request["warmup"]}
    if record is None or not record["ok"]:
        return {**row, "status": "not run", "reason": reason or record["reason"]}
    times = record["step_ms"]
    median = statistics.median(times)
    p10, p90 = np.percentile(times, [10, 90])
    floor = cells.floor(request, gpu_name, copy_gbps, count_embedding)
    return {**row, "status": "ok", "reason": "", "median_ms": median, "p10_ms": float(p10), "p90_ms": float(p90),
            **{k: floor[k] for k in ("floor_ms", "floor_ms_copy") if k in floor},
            **cells.floor_fractions(floor, median), "first_token": record["first_token"], "step_ms": times}


def run_grid(requests: list, count_embedding: bool) -> tuple[list[dict], dict]:
    """Rows in grid order, and the machine facts of the sessions."""
    from gapprof.profiler.session import validate

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
        records.update(zip(indices, cells.run_fresh([requests[i] for i in indices])))
    machine = cells.machine(list(records.values()))
    rows = [cell_row(dataclasses.asdict(request), records.get(i), reasons.get(i, ""), machine["gpu_name"],
                     machine["copy_bandwidth_gbps"], count_embedding)
            for i, request in enumerate(requests)]
    return rows, machine


def _trace_name(row: dict, backend: str) -> str:
    return f"{row['model']}-ctx{row['ctx']}-{row['runtime']}.{'nsys-rep' if backend == 'nsys' else 'sqlite'}"


def profile_rows(rows: list[dict], out: Path, backend: str, dtype: str, attn: str, seed: int) -> None:
    """Capture one trace per timed cell with `gapprof capture` in its own process; each row gets the path of its
    .sqlite (relative to `out`) or the reason its capture failed."""
    for row in rows:
        if row["status"] != "ok":
            continue
        trace = Path("traces", _trace_name(row, backend))
        progress(f"profiling {row['model']} ctx {row['ctx']} {row['runtime']} ({backend})")
        child = subprocess.run([sys.executable, "-m", "gapprof", "capture", "--model", row["model"],
                                "--ctx", str(row["ctx"]), "--steps", str(row["steps"]),
                                "--warmup", str(row["warmup"]), "--runtime", row["runtime"], "--backend", backend,
                                "--dtype", dtype, "--attn", attn, "--seed", str(seed), "-o", str(out / trace)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(child.stderr)
        if child.returncode == 0:
            row["trace"] = str(sibling(trace, ".sqlite"))
        else:
            lines = child.stderr.strip().splitlines()
            row["profile_error"] = lines[-1] if lines else f"capture exited with status {child.returncode}"


@click.command()
@click.option("--models", default="qwen2.5-7b,llama-3.1-8b,mistral-7b-v0.3", show_default=True,
              callback=_models, help="Comma-separated model names (see `gapprof models`).")
@click.option("--ctx", "contexts", default="2048,4096,8192,16384", show_default=True, callback=_contexts,
              help="Comma-separated prompt lengths.")
@click.option("--runtime", "runtimes", default="eager,graphs", show_default=True, callback=_runtimes,
              help=f"Comma-separated runtimes, from: {', '.join(RUNTIMES)}.")
@click.option("--steps", type=click.IntRange(min=1), default=32, show_default=True,
              help="Measured decode steps per cell.")
@click.option("--warmup", type=click.IntRange(min=0), default=4, show_default=True,
              help="Warm-up decode steps per cell, before the measured ones.")
@options.DTYPE
@options.ATTN
@click.option("--seed", default=0, show_default=True, help="Weights and prompt seed.")
@options.DEVICE
@options.COUNT_EMBEDDING
@click.option("--profile", is_flag=True,
              help="Also capture a trace per timed cell (into OUT/traces); `gapprof sweep-attribute OUT` then adds "
                   "the anatomy terms, on any machine with polars.")
@click.option("--backend", type=click.Choice(["nsys", "cupti"]), default="nsys", show_default=True,
              help="Trace backend of --profile.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for sweep.csv, .md, .json and .png [default: results/<gpu>].")
def sweep(models, contexts, runtimes, steps, warmup, dtype, attn, seed, device, count_embedding, profile, backend,
          out):
    """Time every model x context x runtime cell unprofiled; one row per cell, with its floor fraction.

    Example: gapprof sweep --models qwen2.5-7b,llama-3.1-8b,mistral-7b-v0.3 --ctx 2048,4096,8192,16384
    --runtime eager,graphs
    """
    torch = options.import_torch("sweep")
    from gapprof.profiler.session import CaptureRequest

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GapprofError(f"--device {device}: no CUDA device is visible to torch (--device cpu runs on the CPU)")
    if profile and not device.startswith("cuda"):
        raise GapprofError("--profile captures with nsys or CUPTI and needs --device cuda")
    requests = [CaptureRequest(model=m, ctx=c, steps=steps, warmup=warmup, runtime=r, backend="none", dtype=dtype,
                               attn=attn, seed=seed, device=device)
                for m in models for c in contexts for r in runtimes]
    rows, machine = run_grid(requests, count_embedding)
    out = out or Path("results", cells.gpu_key([machine]))
    if profile:
        profile_rows(rows, out, backend, dtype, attn, seed)
    result = {"command": invocation(),
              "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "grid": {"models": models, "ctx": contexts, "runtimes": runtimes, "steps": steps, "warmup": warmup,
                       "dtype": dtype, "attn": attn, "seed": seed, "device": device},
              # Each model's floor counts its own bytes: one convention per model of the grid.
              "floor_convention": " | ".join(floor_convention(get_spec(m), DTYPE_BYTES[dtype], count_embedding, dtype)
                                             for m in models),
              "timing": ("each model's cells in a fresh process that builds the model once; per cell: new runtime "
                         "and prefill, warm-up, then each measured step timed on the host's perf_counter_ns and "
                         "ended once the next token is on the host; no profiler attached"),
              "machine": machine, "rows": rows}
    for path in report.write_sweep(result, out):
        click.echo(f"wrote {path}")
    ran = sum(r["status"] == "ok" for r in rows)
    click.echo(f"{ran} of {len(rows)} cells ran on {machine['gpu_name'] or 'no device'}")
