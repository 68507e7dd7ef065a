"""Click options shared by several commands, and the preamble of the commands that run decode sessions
(capture, ncu, ab, sweep). Free of torch and polars: a command parses its options, and says what is missing,
on either kind of machine."""

from pathlib import Path

import click

from gapprof import render
from gapprof.analysis import tables
from gapprof.errors import GapprofError
from gapprof.models import DTYPE_BYTES, known_models
from gapprof.nvtx_names import STEP_MESSAGE
from gapprof.quant import INSTALL, METHODS
from gapprof.runtime_table import ATTENTION_BACKENDS, on_cpu

FORMATS = ("table", "csv", "json", "markdown")
# Where ab, sweep and calibrate write unless -o says otherwise: beside, never into, the shipped results/ folder.
RUNS = Path("runs")

# Decode sessions.
MODEL = click.option("--model", default="qwen2.5-7b", show_default=True, help=f"One of: {', '.join(known_models())}.")
CTX = click.option("--ctx", default=2048, show_default=True, help="Prompt tokens prefilled before decoding.")
DTYPE = click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="bfloat16", show_default=True)
ATTN = click.option(
    "--attn",
    type=click.Choice(["auto", *ATTENTION_BACKENDS]),
    default="auto",
    show_default=True,
    help="Attention backend: sdpa-X pins torch's SDPA to backend X, sdpa lets torch choose, eager is "
    "Hugging Face's own. auto: sdpa-flash for the eager runtime (torch's choice, cuDNN, pays a "
    "setup per new KV length there), sdpa for the static-cache runtimes; the fastest without "
    "per-length setup on H100 and H200 (benchmarks/attn_backends.py, 2026-11-27). lean: the "
    "lean runtime's own attention, the only one it runs.",
)
WEIGHTS = click.option(
    "--weights", type=click.Path(file_okay=False), help="Local Hugging Face checkpoint (default: random)."
)
SEED = click.option("--seed", default=0, show_default=True, help="Weights and prompt seed.")
DEVICE = click.option(
    "--device", default="cuda", show_default=True, help="torch device of the sessions (cpu for tests)."
)
QUANT = click.option(
    "--quant",
    type=click.Choice(METHODS),
    default="none",
    show_default=True,
    help="Weight-only quantisation of every decoder linear layer (embeddings and lm_head stay in "
    "--dtype): int8 and int4 (torchao; int4 packed for aten's tinygemm kernel), nf4 "
    "(bitsandbytes), gemlite-int4 (gemlite's Triton kernels), exllamav2-int4 (GPTQ's format, "
    "ExLlamaV2's kernels, --dtype float16). int4, gemlite-int4 and exllamav2-int4 run on CUDA "
    f"only. Needs `{INSTALL}`.",
)
QUANT_LM_HEAD = click.option("--quant-lm-head", is_flag=True, help="Quantise lm_head too, with the --quant method.")
TRACE_BACKEND = click.option("--backend", type=click.Choice(["nsys", "cupti"]), default="nsys", show_default=True)


def model_build(f):
    """--dtype, --attn, --weights, --seed, --quant and --quant-lm-head: how a session builds its model."""
    for option in reversed((DTYPE, ATTN, WEIGHTS, SEED, QUANT, QUANT_LM_HEAD)):
        f = option(f)
    return f


# Analysis.
FORCE_OVERRIDES = click.option(
    "--force",
    is_flag=True,
    help="Accept --model/--ctx/--dtype that contradict the trace's metadata, and a floor above the GPU busy time.",
)
COUNT_EMBEDDING = click.option(
    "--count-embedding",
    is_flag=True,
    help="Count the whole token-embedding table in the floor bytes (the study's convention).",
)


def floor_inputs(f):
    """--model, --ctx and --dtype: the floor's inputs when the capture's metadata lacks them or is overridden."""
    f = click.option(
        "--dtype",
        type=click.Choice(sorted(DTYPE_BYTES)),
        default=None,
        help="Weight and KV dtype for the floor [default: the capture's, else bfloat16].",
    )(f)
    f = click.option(
        "--ctx",
        type=click.IntRange(min=0),
        default=None,
        help="Context length at the first measured step, for the floor [default: the capture's].",
    )(f)
    return click.option(
        "--model",
        default=None,
        help="Model name, config.json or checkpoint folder, for the floor [default: the capture's].",
    )(f)


GPU_PROFILE = click.option(
    "--gpu-profile",
    "gpu_profiles",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A GPU profile written by `gapprof calibrate` (repeatable): the kernel model takes its GPU's achievable "
    "bandwidth and fixed cost per kernel from it, over a shipped profile of the same GPU. GPUs without a profile "
    "take 0.9 x their datasheet peak.",
)


def check_gpu_profiles(gpu_profiles, kernel_model: bool, needs: str) -> None:
    """--gpu-profile feeds the kernel model only: refused where none runs."""
    if gpu_profiles and not kernel_model:
        raise click.UsageError(f"--gpu-profile applies to the kernel model: pass {needs}")


RANGE = click.option(
    "--range",
    "range_pattern",
    default=STEP_MESSAGE,
    show_default=True,
    help="NVTX message (or torch.profiler record_function name) of a step range, a regular "
    "expression matching the whole message (any domain).",
)
STEPS = click.option(
    "--steps",
    "step_source",
    type=click.Choice(["ranges", "auto"]),
    default="ranges",
    show_default=True,
    help="ranges: the step ranges (--range); a trace with none matching the default pattern has its "
    "steps found from its repeating GPU work, as auto does. auto: steps found from the GPU work "
    "even where ranges mark them (the notes say how).",
)
SKIP = click.option(
    "--skip",
    type=click.IntRange(min=0),
    default=None,
    help="Warm-up steps to skip per thread [default: the warm-up the capture recorded; a trace "
    "without one skips a tenth of its steps, at least 1 and at most 5].",
)


# The tables of attribute's report, which profile prints too: analysis.tables' registry.
DEFAULT_TABLES = ",".join(tables.DEFAULT)


def _tables(value: str) -> list[str]:
    chosen = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in tables.TABLES]
    if unknown:
        raise click.BadParameter(f"unknown table {', '.join(unknown)}; choose from {', '.join(tables.TABLES)}")
    return chosen


def quant_floor_inputs(f):
    """--quant and --quant-lm-head of the analysis: the floor of a quantised model whose trace did not record it."""
    f = click.option("--quant-lm-head", is_flag=True, help="With --quant: lm_head quantised too.")(f)
    return click.option(
        "--quant",
        type=click.Choice(METHODS),
        default=None,
        help="The floor counts the decoder linear layers as this method stores them: an analytic "
        "estimate, for a trace that does not record them (`capture --quant` records the bytes "
        "of every tensor, and attribute uses those) [default: the capture's, else none].",
    )(f)


def report_options(f):
    """The options of attribute's report that profile shares: steps, floor, tables and format."""
    for option in reversed(
        [
            RANGE,
            STEPS,
            SKIP,
            floor_inputs,
            quant_floor_inputs,
            click.option(
                "--gpu",
                default=None,
                help="GPU for the datasheet bandwidth (a key, alias or device name) [default: the trace's device].",
            ),
            COUNT_EMBEDDING,
            click.option("--per-step", is_flag=True, help="Add the per-step table (times in integer ns)."),
            click.option("--full-names", is_flag=True, help="Full demangled kernel names instead of short names."),
            click.option(
                "--tables",
                "tables_chosen",
                default=DEFAULT_TABLES,
                show_default=True,
                callback=lambda c, p, v: _tables(v),
                help=f"Comma-separated tables to show, from: {', '.join(tables.TABLES)}.",
            ),
            click.option(
                "--top",
                type=click.IntRange(min=0),
                default=25,
                show_default=True,
                help="Rows of the kernel and API tables (0: all).",
            ),
        ]
    ):
        f = option(f)
    return f


def existing_folder(ctx, param, path: Path | None) -> Path | None:
    """An output path whose folder exists, checked before any work starts."""
    if path is not None and not path.resolve().parent.is_dir():
        raise click.BadParameter(f"folder {path.parent} does not exist")
    return path


def picture_path(ctx, param, path: Path | None) -> Path | None:
    """An output picture, checked before any work by analysis.plots.picture_path (format, folder, .png added)."""
    if path is None:
        return None
    from gapprof.analysis import plots  # matplotlib: only when a picture is asked for

    try:
        return plots.picture_path(path)
    except GapprofError as error:
        raise click.BadParameter(str(error)) from None


FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table fits the terminal's width (COLUMNS=N sets it): long names are shortened in the "
    "middle (attribute --full-names keeps them whole), long facts and notes wrapped, and a "
    "table still too wide is split into blocks of columns, each repeating the first column. "
    "csv (one table per file, see -o), json and markdown are never shortened; numbers stay "
    "unrounded in csv and json.",
)
OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    callback=existing_folder,
    help="Write to FILE instead of stdout. With --format csv, a folder DIR (an existing one, or a "
    "new path without a suffix) gets DIR/TABLE.csv for each table; stdout and a FILE take "
    "one table only.",
)
TRACE = click.Path(path_type=Path, dir_okay=False)


def steps_and_warmup(steps: int, warmup: int, per: str = ""):
    """--steps and --warmup with these defaults; `per` names what they count in (a session, a cell)."""

    def decorate(f):
        f = click.option(
            "--warmup",
            type=click.IntRange(min=0),
            default=warmup,
            show_default=True,
            help=f"Warm-up decode steps{per}, before the measured ones.",
        )(f)
        return click.option(
            "--steps", type=click.IntRange(min=1), default=steps, show_default=True, help=f"Measured decode steps{per}."
        )(f)

    return decorate


def module_ranges_error(missing) -> GapprofError:
    """What to do about a trace without module ranges (analysis.modules.NoModuleRanges), in the CLI's words."""
    if missing.role == "reference":
        return GapprofError(
            f"--reference {missing.path}: no `module:` ranges in its steps (capture it with "
            "`gapprof capture --modules`)"
        )
    return GapprofError(
        f"{missing.path}: no `module:` ranges in its steps; capture with `gapprof capture --modules` "
        "(eager or static), or pass --reference with such a trace of the same model to map kernels "
        "by position"
    )


# The --format an output file's suffix names: a file named otherwise is refused, never written in another format.
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".md": "markdown", ".txt": "table"}


def check_csv_output(fmt: str, output: Path | None, several: bool, select: str | None = None, flag: str = "-o") -> None:
    """Before any work: `flag` FILE's suffix agrees with --format, and as CSV holds one table per file, several
    tables need `flag` DIR (or one picked by `select`)."""
    named = SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None
    if named is not None and named != fmt:
        raise click.UsageError(
            f"{flag} {output} names {named} output but --format is {fmt}: pass --format {named}, "
            "or a file name that fits"
        )
    if fmt == "csv" and several and not render.csv_folder(output):
        choose = f", or pick one table with {select} NAME" if select else ""
        raise click.UsageError(
            f"--format csv writes one table per file: pass {flag} DIR for DIR/<table>.csv each{choose}"
        )


def import_torch(command: str):
    """torch, or a one-line error saying which extra installs it."""
    try:
        import torch
    except ImportError:
        raise GapprofError(
            f"{command} needs torch and transformers: `pip install -e '.[capture]'` in the gapprof "
            "checkout, or `pip install torch transformers nvtx`"
        ) from None
    return torch


def check_session_device(command: str, device: str = "cuda") -> None:
    """The preamble of every command that runs on the GPU (decode sessions, calibrate): torch is installed and the
    device is visible."""
    torch = import_torch(command)
    if device.startswith("cuda") and not torch.cuda.is_available():
        hint = f" (--device cpu runs {on_cpu()} on the CPU)" if command in ("ab", "sweep") else ""
        raise GapprofError(f"{command} needs a CUDA GPU: no CUDA device is visible to torch{hint}")
