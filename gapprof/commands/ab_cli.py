"""`gapprof ab`: runtime A against runtime B over fresh sessions, with a bootstrap interval on the speedup."""

import datetime
from pathlib import Path

import click

from gapprof import result_files
from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.profiler import ab_runner, fresh_sessions
from gapprof.profiler.request import CaptureRequest, validate
from gapprof.provenance import invocation
from gapprof.quant import METHODS, check_library
from gapprof.runtime_table import BY_NAME, RUNTIMES, on_cpu


@click.command()
@options.MODEL
@options.CTX
@click.option(
    "--a",
    "runtime_a",
    type=click.Choice(RUNTIMES),
    default="eager",
    show_default=True,
    help="Runtime of arm A (the baseline).",
)
@click.option(
    "--b", "runtime_b", type=click.Choice(RUNTIMES), default="graphs", show_default=True, help="Runtime of arm B."
)
@click.option("--sessions", type=click.IntRange(min=2), default=10, show_default=True, help="Fresh sessions per arm.")
@options.steps_and_warmup(steps=64, warmup=8, per=" per session")
@options.DTYPE
@options.ATTN
@options.WEIGHTS
@options.SEED
@options.QUANT
@click.option(
    "--quant-b",
    type=click.Choice(METHODS),
    default=None,
    help="Arm B's --quant, where the arms differ in quantisation (A takes --quant) [default: --quant].",
)
@options.QUANT_LM_HEAD
@options.DEVICE
@options.COUNT_EMBEDDING
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for ab.json and ab.md [default: runs/<gpu>, and with --quant or --quant-b "
    "runs/<gpu>/ab-A-QUANT-vs-B-QUANT].",
)
def ab(
    model,
    ctx,
    runtime_a,
    runtime_b,
    sessions,
    steps,
    warmup,
    dtype,
    attn,
    weights,
    seed,
    quant,
    quant_b,
    quant_lm_head,
    device,
    count_embedding,
    out,
):
    """Time runtime A against runtime B in fresh sessions, alternating, and bootstrap the speedup.

    \b
    Examples:
      gapprof ab --model qwen2.5-7b --ctx 2048 --a eager --b graphs --sessions 10 --steps 64 --warmup 8
      gapprof ab --a graphs --b graphs --quant-b int4      (int4 weights against the model's dtype)
    """
    options.check_session_device("ab", device)
    base = dict(
        model=model,
        ctx=ctx,
        steps=steps,
        warmup=warmup,
        backend="none",
        dtype=dtype,
        attn=attn,
        weights=weights,
        seed=seed,
        device=device,
    )
    quant_b = quant if quant_b is None else quant_b
    request_a = CaptureRequest(runtime=runtime_a, quant=quant, quant_lm_head=quant_lm_head and quant != "none", **base)
    request_b = CaptureRequest(
        runtime=runtime_b, quant=quant_b, quant_lm_head=quant_lm_head and quant_b != "none", **base
    )
    if quant_lm_head and quant == quant_b == "none":
        raise GapprofError("--quant-lm-head quantises lm_head with the --quant method: pass --quant or --quant-b")
    validate(request_a)
    validate(request_b)
    check_library(quant)
    check_library(quant_b)
    cuda_only = [r for r in (runtime_a, runtime_b) if not BY_NAME[r].runs_on_cpu]
    if cuda_only and not device.startswith("cuda"):
        raise GapprofError(
            f"runtime {cuda_only[0]} needs a CUDA device (CUDA graphs); --device {device} runs {on_cpu()}"
        )

    records_a, records_b = ab_runner.run_ab(request_a, request_b, sessions)
    result = {
        "command": invocation(),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **ab_runner.summarise(records_a, records_b, count_embedding),
    }
    quantised = "" if quant == quant_b == "none" else f"ab-{runtime_a}-{quant}-vs-{runtime_b}-{quant_b}"
    out = out or options.RUNS / fresh_sessions.gpu_key(records_a) / quantised
    written = result_files.write_ab(result, out)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(result_files.ab_headline(result))
