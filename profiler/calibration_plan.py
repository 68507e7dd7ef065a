"""What `gapprof calibrate` measures, decided before any GPU work: transfer sizes, the GEMV shapes of the shipped
models' decode step, and how many distinct buffers and graph nodes each point takes. Torch-free.

A point is timed as `count` ops back to back in one CUDA graph, op i on buffer i % copies. Reading one small buffer
again and again would measure the L2 cache, not DRAM; so the buffers of a point span at least `reuse` bytes (a few
times the L2) and every replay reads each once, as a decode step reads each layer's weights once.
"""

import math
from dataclasses import dataclass

from gapprof.models import get_spec, known_models

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SMALLEST, LARGEST = 64 * KiB, 1 * GiB
MIN_REUSE = 128 * MiB
MIN_NODES, MAX_NODES = 4, 4096
BF16 = 2


@dataclass(frozen=True)
class Settings:
    repeats: int = 20  # timed replays per point; a point is their median
    warmup: int = 3  # untimed replays first
    launch_count: int = 1000  # tiny kernels per graph, and per host loop
    sizes: tuple = tuple(SMALLEST << i for i in range(int(math.log2(LARGEST // SMALLEST)) + 1))


QUICK = Settings(repeats=5, warmup=2, launch_count=200, sizes=(64 * KiB, MiB, 16 * MiB, 256 * MiB))


def reuse_bytes(l2_bytes: int | None) -> int:
    """How many bytes a point's buffers span: four times the L2, at least MIN_REUSE."""
    return max(4 * (l2_bytes or 0), MIN_REUSE)


def layout(size: int, reuse: int) -> tuple[int, int]:
    """(copies, count) for ops of `size` bytes each: distinct buffers spanning `reuse` bytes (one, for a size
    that alone exceeds it), and graph nodes: each copy once, at least MIN_NODES, at most MAX_NODES."""
    copies = max(1, min(MAX_NODES, math.ceil(reuse / size)))
    return copies, max(copies, MIN_NODES)


@dataclass(frozen=True)
class Gemv:
    """y[1, n] = x[1, k] @ W[n, k]^T in bf16: the weights dominate the bytes."""

    n: int
    k: int
    used_by: tuple[str, ...]  # "model module" names with this shape

    @property
    def bytes(self) -> int:
        return BF16 * (self.n * self.k + self.k + self.n)


def model_gemvs(model: str) -> dict[str, tuple[int, int]]:
    """Module -> (n, k) of every linear layer a decode step of `model` runs (biases left out)."""
    spec = get_spec(model)
    q, kv = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    return {
        "q_proj": (q, spec.hidden),
        "k_proj": (kv, spec.hidden),
        "v_proj": (kv, spec.hidden),
        "o_proj": (spec.hidden, q),
        "gate_proj": (spec.intermediate, spec.hidden),
        "up_proj": (spec.intermediate, spec.hidden),
        "down_proj": (spec.hidden, spec.intermediate),
        "lm_head": (spec.vocab, spec.hidden),
    }


def shipped_models() -> list[str]:
    """The models whose public config.json is shipped (not the tiny test configs)."""
    return [m for m in known_models() if not m.startswith("tiny-")]


def gemv_shapes(models: list[str] | None = None) -> list[Gemv]:
    """Each distinct decode GEMV shape of `models` (default: every shipped one), by size, naming its users."""
    users: dict[tuple[int, int], list[str]] = {}
    for model in models or shipped_models():
        for module, shape in model_gemvs(model).items():
            users.setdefault(shape, []).append(f"{model} {module}")
    return sorted((Gemv(n, k, tuple(names)) for (n, k), names in users.items()), key=lambda g: (g.bytes, g.n))
