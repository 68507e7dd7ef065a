"""`gapprof sweep` (every model x context x runtime cell timed in fresh sessions, on the GPU) and
`gapprof sweep-attribute` (the anatomy of the traced cells, where polars is)."""

import dataclasses
import datetime
import json
from pathlib import Path

import click

from gapprof import result_files
from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.models import get_spec
from gapprof.profiler import fresh_sessions, sweep_runner
from gapprof.profiler.request import CaptureRequest
from gapprof.provenance import invocation
from gapprof.quant import check_library, check_request
from gapprof.runtime_table import RUNTIMES
from gapprof.sweep_merge import merge_sweeps

# What every sweep.json holds (result_files.write_sweep writes them all).
SWEEP_KEYS = ("command", "finished_at", "grid", "floor_convention", "timing", "machine", "rows")


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


def _convention(model: str, rows: list[dict], requests: list[CaptureRequest], count_embedding: bool) -> str:
    """The floor convention of `model`'s cells: the one a cell that ran counted (a quantised session's bytes as
    recorded), else the one fresh_sessions.floor gives its first request without a record (the estimate from the layer
    shapes)."""
    counted = next(
        (row["floor_convention"] for row in rows if row["model"] == model and "floor_convention" in row), None
    )
    if counted:
        return counted
    request = next(r for r in requests if r.model == model)
    return fresh_sessions.floor(dataclasses.asdict(request), None, None, count_embedding)["convention"]


@click.command()
@click.option(
    "--models",
    default="qwen2.5-7b,llama-3.1-8b,mistral-7b-v0.3",
    show_default=True,
    callback=_models,
    help="Comma-separated model names (see `gapprof models`).",
)
@click.option(
    "--ctx",
    "contexts",
    default="2048,4096,8192,16384",
    show_default=True,
    callback=_contexts,
    help="Comma-separated prompt lengths.",
)
@click.option(
    "--runtime",
    "runtimes",
    default="eager,graphs",
    show_default=True,
    callback=_runtimes,
    help=f"Comma-separated runtimes, from: {', '.join(RUNTIMES)}.",
)
@options.steps_and_warmup(steps=32, warmup=4, per=" per cell")
@options.DTYPE
@options.ATTN
@options.SEED
@options.QUANT
@options.QUANT_LM_HEAD
@options.DEVICE
@options.COUNT_EMBEDDING
@click.option(
    "--profile",
    is_flag=True,
    help="Also capture a trace per timed cell (into OUT/traces); `gapprof sweep-attribute OUT` then adds "
    "the anatomy terms, on any machine with polars.",
)
@options.TRACE_BACKEND
@click.option(
    "--cell-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Kill a cell that writes no result for SECONDS (a model's first cell counts its build): it becomes "
    "a row with that reason and the model's later cells run in a new process.",
)
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for sweep.csv, .md, .json and .png [default: runs/<gpu>, runs/<gpu>/quant-QUANT with --quant].",
)
def sweep(
    models,
    contexts,
    runtimes,
    steps,
    warmup,
    dtype,
    attn,
    seed,
    quant,
    quant_lm_head,
    device,
    count_embedding,
    profile,
    backend,
    cell_timeout,
    out,
):
    """Time every model x context x runtime cell unprofiled; one row per cell, with its floor fraction.

    \b
    Example:
      gapprof sweep --models qwen2.5-7b,llama-3.1-8b,mistral-7b-v0.3 --ctx 2048,4096,8192,16384 --runtime eager,graphs
    """
    options.check_session_device("sweep", device)
    if profile and not device.startswith("cuda"):
        raise GapprofError("--profile captures with nsys or CUPTI and needs --device cuda")
    requests = [
        CaptureRequest(
            model=m,
            ctx=c,
            steps=steps,
            warmup=warmup,
            runtime=r,
            backend="none",
            dtype=dtype,
            attn=attn,
            seed=seed,
            device=device,
            quant=quant,
            quant_lm_head=quant_lm_head,
        )
        for m in models
        for c in contexts
        for r in runtimes
    ]
    check_request(quant, quant_lm_head, device, dtype)
    check_library(quant)
    rows, machine = sweep_runner.run_grid(requests, count_embedding, cell_timeout)
    out = out or options.RUNS / fresh_sessions.gpu_key([machine]) / ("" if quant == "none" else f"quant-{quant}")
    if profile:
        sweep_runner.profile_rows(rows, out, backend, dtype, attn, seed)
    result = {
        "command": invocation(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "grid": {
            "models": models,
            "ctx": contexts,
            "runtimes": runtimes,
            "steps": steps,
            "warmup": warmup,
            "dtype": dtype,
            "attn": attn,
            "seed": seed,
            "device": device,
            **({"quant": quant, "quant_lm_head": quant_lm_head} if quant != "none" else {}),
        },
        # Each model's floor counts its own bytes: one convention per model of the grid.
        "floor_convention": " | ".join(_convention(m, rows, requests, count_embedding) for m in models),
        "timing": (
            "each model's cells in a fresh process that builds the model once; per cell: new runtime "
            "and prefill, warm-up, then each measured step timed on the host's perf_counter_ns and "
            "ended once the next token is on the host; no profiler attached"
        ),
        "machine": machine,
        "rows": rows,
    }
    for path in result_files.write_sweep(result, out):
        click.echo(f"wrote {path}")
    ran = sum(r["status"] == "ok" for r in rows)
    click.echo(f"{ran} of {len(rows)} cells ran on {machine['gpu_name'] or 'no device'}")


def _read_sweep(folder: Path) -> dict:
    """The sweep.json that `gapprof sweep` wrote into `folder`."""
    path = folder / "sweep.json"
    if not path.is_file():
        raise GapprofError(f"{path}: not found (FOLDER must hold the outputs of gapprof sweep)")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise GapprofError(f"{path}: not JSON ({error})") from None
    missing = [key for key in SWEEP_KEYS if key not in result] if isinstance(result, dict) else list(SWEEP_KEYS)
    if missing:
        raise GapprofError(f"{path}: not a gapprof sweep result (no {', '.join(missing)})")
    if not _sweep_shaped(result):
        raise GapprofError(
            f"{path}: not a gapprof sweep result (grid and machine are objects, rows a list of cells each with a "
            "model, ctx and runtime)"
        )
    return result


def _sweep_shaped(result: dict) -> bool:
    """Whether grid, machine and the rows' cells have the types that sweep-merge and sweep-attribute read."""
    rows = result["rows"]
    return (
        isinstance(result["grid"], dict)
        and isinstance(result["machine"], dict)
        and isinstance(rows, list)
        and all(
            isinstance(row, dict)
            and isinstance(row.get("model"), str)
            and type(row.get("ctx")) is int
            and isinstance(row.get("runtime"), str)
            for row in rows
        )
    )


@click.command("sweep-attribute")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the attributed sweep.csv, .md, .json and .png [default: FOLDER, rewritten].",
)
def sweep_attribute(folder, output):
    """Attribute the traces of a `gapprof sweep --profile` run in FOLDER and write its sweep outputs again (in
    FOLDER, or -o DIR).

    \b
    Example:
      gapprof sweep-attribute runs/h100-sxm
    """
    from gapprof.analysis.sweep_anatomy import attribute_rows  # polars: not on the GPU image, where sweep runs

    result = _read_sweep(folder)
    done = attribute_rows(result["rows"], folder)
    if not done:
        raise GapprofError(
            f"{folder / 'sweep.json'}: no row has a trace (run gapprof sweep with --profile on the GPU machine)"
        )
    result["attributed_with"] = invocation()
    for written in result_files.write_sweep(result, output or folder):
        click.echo(f"wrote {written}")
    click.echo(f"added the anatomy of {done} cells")


@click.command("sweep-merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the joined sweep.csv, .md, .json and .png.",
)
def sweep_merge(folders, out):
    """Join the sweeps in FOLDERS (parts of one grid run on the same GPU, e.g. a model per call) into one.

    \b
    Example:
      gapprof sweep-merge runs/part-a runs/part-b -o runs/h100-sxm
    """
    parts = [_read_sweep(folder) for folder in folders]
    result = merge_sweeps(parts) | {"merged_with": invocation()}
    for written in result_files.write_sweep(result, out, inputs=[folder / "sweep.json" for folder in folders]):
        click.echo(f"wrote {written}")
    click.echo(f"joined {len(result['rows'])} cells from {len(parts)} sweeps")
