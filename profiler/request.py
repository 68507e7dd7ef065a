"""What a decode session is asked to do, checked before any model is built. Free of torch, so that commands
parse and check their options (and say what is missing) on a machine without it."""

import dataclasses

from gapprof.errors import GapprofError
from gapprof.models import DTYPE_BYTES, get_spec
from gapprof.quant import check_request as check_quant
from gapprof.runtime_table import ATTENTION_BACKENDS, BY_NAME, CUDA_ONLY_ATTENTION, RUNTIMES, names, resolve_attention


@dataclasses.dataclass(frozen=True)
class CaptureRequest:
    model: str = "qwen2.5-7b"
    ctx: int = 2048
    steps: int = 20
    warmup: int = 4
    runtime: str = "eager"
    backend: str = "nsys"
    dtype: str = "bfloat16"
    attn: str = "auto"  # resolved on creation, so every record names the backend that ran
    weights: str | None = None
    seed: int = 0
    device: str = "cuda"
    modules: bool = False
    quant: str = "none"  # gapprof.quant.METHODS: weight-only quantisation of the decoder linear layers
    quant_lm_head: bool = False
    # Graph tracing: every node (node), one range per graph execution (graph, nsys), or a graph-level pass then a
    # node-level pass in one process (both, CUPTI).
    graph_trace: str = "node"

    def __post_init__(self):
        object.__setattr__(self, "attn", resolve_attention(self.attn, self.runtime))


def validate(request: CaptureRequest) -> None:
    """Reject a request before any model is built."""
    if request.runtime not in RUNTIMES:
        raise GapprofError(f"unknown runtime {request.runtime!r}; known runtimes: {', '.join(RUNTIMES)}")
    runtime = BY_NAME[request.runtime]
    if request.dtype not in DTYPE_BYTES:
        raise GapprofError(f"unknown dtype {request.dtype!r}; known dtypes: {', '.join(DTYPE_BYTES)}")
    if request.steps < 1 or request.ctx < 1:
        raise GapprofError("--steps and --ctx must be at least 1")
    if request.warmup < runtime.min_warmup:
        raise GapprofError(
            f"runtime {request.runtime} needs --warmup >= {runtime.min_warmup} "
            "(eager steps and graph capture happen in warm-up)"
        )
    if request.modules and not runtime.module_hooks:
        raise GapprofError(
            f"--modules needs runtime {' or '.join(names(lambda r: r.module_hooks))}: module hooks do "
            f"not run inside a {request.runtime} replay (map its kernels with `attribute --by module "
            "--reference`)"
        )
    if request.graph_trace == "graph" and request.backend != "nsys":
        raise GapprofError("--cuda-graph-trace graph needs --backend nsys (the CUPTI backend records every node)")
    if request.graph_trace == "both" and request.backend != "cupti":
        raise GapprofError("--cuda-graph-trace both needs --backend cupti (one nsys run traces graphs one way)")
    if request.graph_trace != "node" and not runtime.replays_graphs:
        raise GapprofError(
            f"--cuda-graph-trace {request.graph_trace}: runtime {request.runtime} launches no CUDA "
            f"graph; the runtimes that do: {', '.join(names(lambda r: r.replays_graphs))}"
        )
    if request.modules and request.backend == "cupti":
        raise GapprofError("--modules needs --backend nsys: the CUPTI backend records only the step ranges")
    if request.attn not in ATTENTION_BACKENDS:
        raise GapprofError(f"unknown attention backend {request.attn!r}; known: auto, {', '.join(ATTENTION_BACKENDS)}")
    if request.attn in runtime.unsupported_attention:
        raise GapprofError(
            f"--attn {request.attn} does not run under runtime {request.runtime}: "
            f"{runtime.unsupported_attention[request.attn]}"
        )
    if request.attn in CUDA_ONLY_ATTENTION and not request.device.startswith("cuda"):
        raise GapprofError(
            f"--attn {request.attn} runs on CUDA only; on {request.device} use sdpa, sdpa-math, sdpa-flash or eager"
        )
    check_quant(request.quant, request.quant_lm_head, request.device, request.dtype)
    if request.quant != "none" and runtime.refuses_quant:
        raise GapprofError(f"--quant does not run under runtime {request.runtime}: {runtime.refuses_quant}")
    if not request.weights:  # a checkpoint's positions are known once its config is read (start_decode)
        check_positions(request, get_spec(request.model).max_positions, request.model)


def decode_steps(request: CaptureRequest) -> int:
    """Every decode step of a session: warm-up, unprofiled, (module-hooked,) then warm-up + profiled; a timed
    session without a profiler (backend "none": ab, sweep) runs warm-up and its timed steps only."""
    if request.backend == "none":
        return request.warmup + request.steps
    timed_passes = 3 if request.modules else 2
    profiled_passes = 2 if request.graph_trace == "both" else 1
    return (1 + profiled_passes) * request.warmup + (timed_passes + profiled_passes - 1) * request.steps


def max_len(request: CaptureRequest) -> int:
    return request.ctx + decode_steps(request) + 1


def check_positions(request: CaptureRequest, max_positions: int, owner: str) -> None:
    if max_len(request) > max_positions:
        raise GapprofError(
            f"--ctx {request.ctx} + {decode_steps(request)} decode steps needs {max_len(request)} "
            f"positions; {owner} has {max_positions}"
        )
