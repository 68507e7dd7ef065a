"""Decode runtimes: how one batch-1 greedy decode step is executed.

- eager:   dynamic KV cache, one framework call per step, the way Hugging Face generate runs.
- static:  static (preallocated) KV cache, same per-step framework call.
- graphs:  static cache with one whole decode step captured in a CUDA graph and replayed.
- compile: static cache, the step compiled by torch.compile(mode="reduce-overhead").
- lean:    a compact decoder on the same weights (profiler.lean_model: fused q/k/v and gate/up, its own static
           cache and grouped-query attention), the step compiled and captured in one CUDA graph
           (profiler.lean_runtime).

Every runtime keeps the current token and position in device tensors and updates them in place, so a step
is the same computation in the first four; all five produce the same tokens from the same weights.
"""

import inspect

import torch
from gapprof.profiler.lean_runtime import LeanRuntime

from gapprof.errors import GapprofError
from gapprof.runtime_table import EAGER_STEPS_BEFORE_CAPTURE, RUNTIMES


def _forward_kwargs(model) -> tuple[str, bool]:
    """transformers renamed `past_key_values=` to `cache=` and dropped `cache_position` (5.2x); accept both."""
    params = inspect.signature(model.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "cache_position" in params


def _logits(model, input_ids, positions, cache):
    cache_kw, wants_cache_position = _forward_kwargs(model)
    kwargs = {cache_kw: cache, "position_ids": positions, "use_cache": True, "logits_to_keep": 1}
    if wants_cache_position:
        kwargs["cache_position"] = positions[0]
    return model(input_ids=input_ids, **kwargs).logits


def _greedy(logits):
    return logits[:, -1:].argmax(-1)


class DecodeRuntime:
    """Prefill, then one greedy token per `step()`."""

    def __init__(self, model, max_len: int):
        self.model = model
        self.max_len = max_len

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    @torch.no_grad()
    def prefill(self, prompt: torch.Tensor) -> int:
        self.ctx = prompt.shape[1]
        self.cache = self._new_cache()
        positions = torch.arange(self.ctx, device=prompt.device).unsqueeze(0)
        self.token = _greedy(_logits(self.model, prompt, positions, self.cache))
        self.position = torch.full((1, 1), self.ctx, dtype=torch.long, device=prompt.device)
        return int(self.token.item())

    def _decode_in_place(self):
        """One decode step that leaves the next token and position in the same tensors (graph-capturable)."""
        self.token.copy_(_greedy(_logits(self.model, self.token, self.position, self.cache)))
        self.position.add_(1)

    @torch.no_grad()
    def step(self) -> int:
        """One decode step; returns once the next token is on the host."""
        self._decode_in_place()
        return int(self.token.item())


class StaticCacheRuntime(DecodeRuntime):
    def _new_cache(self):
        from transformers import StaticCache

        return StaticCache(config=self.model.config, max_cache_len=self.max_len)


class CudaGraphRuntime(StaticCacheRuntime):
    """The whole step (forward, argmax, position update) is one CUDA graph replay plus the host read."""

    graph = None
    eager_steps = 0

    @torch.no_grad()
    def step(self) -> int:
        if self.graph is None and self.eager_steps < EAGER_STEPS_BEFORE_CAPTURE:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._decode_in_place()
            torch.cuda.current_stream().wait_stream(side)
            self.eager_steps += 1
            return int(self.token.item())
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records only: the cache and token are not advanced here
                self._decode_in_place()
        self.graph.replay()
        return int(self.token.item())


class CompiledRuntime(StaticCacheRuntime):
    """torch.compile(mode="reduce-overhead") of the forward and argmax; cudagraph trees replay it."""

    compiled = None

    def _next_token(self, token, position):
        return _greedy(_logits(self.model, token, position, self.cache))

    @torch.no_grad()
    def step(self) -> int:
        if self.compiled is None:
            self.compiled = torch.compile(self._next_token, mode="reduce-overhead", fullgraph=False)
        self.token.copy_(self.compiled(self.token, self.position))
        self.position.add_(1)
        return int(self.token.item())


# The class of each row of gapprof.runtime_table, by its name.
CLASSES = {
    "eager": DecodeRuntime,
    "static": StaticCacheRuntime,
    "graphs": CudaGraphRuntime,
    "compile": CompiledRuntime,
    "lean": LeanRuntime,
}


def make_runtime(name: str, model, max_len: int) -> DecodeRuntime:
    if name not in CLASSES:
        raise GapprofError(f"unknown runtime {name!r}; known runtimes: {', '.join(RUNTIMES)}")
    return CLASSES[name](model, max_len)
