"""The decode runtimes, one row each: every check of capture, ab, sweep and ncu, and analysis' reading of a trace's
runtime, comes from these rows. Free of torch and polars, so that command lines parse (and say what is missing) on
a machine without torch, and on the GPU image without polars; each row's class is in profiler.runtimes, looked up
by name."""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# CUDA graph capture and cudagraph trees need eager iterations first (lazy init, cuBLAS workspaces).
EAGER_STEPS_BEFORE_CAPTURE = 2

# Attention backends: "sdpa" lets torch pick per call; "sdpa-X" pins SDPA to one backend; "eager" is Hugging Face's
# own matmul-softmax-matmul attention. The pinned ones are what a user sets with torch.nn.attention.sdpa_kernel.
# "lean" is the lean runtime's own (profiler.lean_model.attention), the one it runs and the only one it runs.
ATTENTION_BACKENDS = ("sdpa-math", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa", "eager", "lean")
CUDA_ONLY_ATTENTION = ("sdpa-cudnn", "sdpa-efficient")

# Why a runtime cannot run a backend (measured on H100, torch 2.11, transformers 5.17).
_FLASH_TAKES_NO_MASK = {"sdpa-flash": "flash attention takes no attention mask, which the static cache passes"}
_LEAN_ONLY = {"lean": "it is the lean runtime's own attention"}


@dataclass(frozen=True)
class Runtime:
    name: str
    # Its steps replay CUDA graphs: --cuda-graph-trace applies, and ncu profiles each kernel node of a replay.
    replays_graphs: bool
    # torch.compile (inductor) builds its step: its kernels are already fused, and under ncu it compiles in-process.
    compiled: bool
    # Forward hooks run in its steps (capture --modules); they cannot inside a graph replay or a compiled graph.
    module_hooks: bool
    # Warm-up steps it needs before the measured ones (eager steps and graph capture happen there).
    min_warmup: int
    # The backend `--attn auto` stands for: the fastest without a per-length setup (benchmarks/attn_backends.py, H100
    # and H200, 2026-11-27). The dynamic cache gives attention a new KV length every step, where torch's own choice
    # (cuDNN) pays a setup each time and flash is fastest; the static-cache runtimes keep one length, flash refuses
    # their attention mask, and torch's choice is fastest.
    auto_attention: str
    # Attention backend -> why it does not run under this runtime.
    unsupported_attention: Mapping[str, str]
    # Runs on a CPU device (ab --device cpu): graphs captures CUDA graphs; lean runs its step uncompiled there.
    runs_on_cpu: bool
    # Why --quant does not run under it, or None where it does.
    refuses_quant: str | None = None


TABLE = (
    Runtime(
        "eager",
        replays_graphs=False,
        compiled=False,
        module_hooks=True,
        min_warmup=0,
        auto_attention="sdpa-flash",
        unsupported_attention=MappingProxyType(_LEAN_ONLY),
        runs_on_cpu=True,
    ),
    Runtime(
        "static",
        replays_graphs=False,
        compiled=False,
        module_hooks=True,
        min_warmup=0,
        auto_attention="sdpa",
        unsupported_attention=MappingProxyType(_FLASH_TAKES_NO_MASK | _LEAN_ONLY),
        runs_on_cpu=True,
    ),
    Runtime(
        "graphs",
        replays_graphs=True,
        compiled=False,
        module_hooks=False,
        min_warmup=EAGER_STEPS_BEFORE_CAPTURE + 1,
        auto_attention="sdpa",
        unsupported_attention=MappingProxyType(
            _FLASH_TAKES_NO_MASK
            | {"eager": "Hugging Face's eager attention copies a host tensor during CUDA graph capture"}
            | _LEAN_ONLY
        ),
        runs_on_cpu=False,
    ),
    Runtime(
        "compile",
        replays_graphs=True,
        compiled=True,
        module_hooks=False,
        min_warmup=3,
        auto_attention="sdpa",
        unsupported_attention=MappingProxyType(_FLASH_TAKES_NO_MASK | _LEAN_ONLY),
        runs_on_cpu=True,
    ),
    Runtime(
        "lean",
        replays_graphs=True,
        compiled=True,
        module_hooks=False,
        min_warmup=EAGER_STEPS_BEFORE_CAPTURE + 1,
        auto_attention="lean",
        unsupported_attention=MappingProxyType(
            {
                a: "the lean runtime runs its own attention (--attn auto or lean)"
                for a in ATTENTION_BACKENDS
                if a != "lean"
            }
        ),
        runs_on_cpu=True,
        refuses_quant="it builds its fused q/k/v and gate/up weights from the bf16 model (quantise under static, "
        "graphs or compile)",
    ),
)
BY_NAME = {row.name: row for row in TABLE}
RUNTIMES = tuple(BY_NAME)


def names(has) -> tuple[str, ...]:
    """The runtimes whose row satisfies `has`, in the table's order."""
    return tuple(row.name for row in TABLE if has(row))


def on_cpu() -> str:
    """The runtimes a CPU device runs, for messages: "eager, static, compile and lean"."""
    runs = names(lambda row: row.runs_on_cpu)
    return f"{', '.join(runs[:-1])} and {runs[-1]}"


def resolve_attention(attn: str, runtime: str) -> str:
    """The backend `--attn auto` stands for under `runtime`; any other choice as given (an unknown runtime is
    refused later, by profiler.request.validate)."""
    if attn != "auto":
        return attn
    return BY_NAME[runtime].auto_attention if runtime in BY_NAME else "sdpa"
