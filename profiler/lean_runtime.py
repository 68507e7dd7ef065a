"""The lean runtime: the compact decoder of profiler.lean_model, its whole step compiled and captured in one CUDA graph.

Prefill runs the same decoder uncompiled, in chunks of PREFILL_CHUNK tokens (each chunk's scores are chunk x
max_len), so the KV cache is the lean decoder's own. A decode step (forward, greedy token, position + 1) is compiled
by torch.compile (inductor's default mode: its own kernels and cuBLAS, no CUDA graphs of its own) with the whole
step in one graph (fullgraph); on CUDA the first EAGER_STEPS_BEFORE_CAPTURE steps run it on a side stream (compilation
happens there), and the next is captured once as one CUDA graph, replayed from then on. On a CPU the step runs
uncompiled unless asked (tests).
"""

import torch
from gapprof.profiler.lean_model import LeanModel

from gapprof.runtime_table import EAGER_STEPS_BEFORE_CAPTURE

PREFILL_CHUNK = 256


def _next_token(model: LeanModel, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """One decode step in place: the next token into `token`, `position` + 1; returns the logits."""
    logits = model(token, position)
    token.copy_(logits[:, -1].argmax(-1, keepdim=True))
    position.add_(1)
    return logits


class LeanRuntime:
    """Prefill, then one greedy token per `step()`; `logits` holds the last step's logits."""

    graph = None
    eager_steps = 0

    def __init__(self, model, max_len: int, compiled: bool | None = None):
        self.model = LeanModel(model, max_len)
        self.cuda = self.model.embed.is_cuda
        self.compiled = self.cuda if compiled is None else compiled
        self.decode = torch.compile(_next_token, fullgraph=True) if self.compiled else _next_token

    @torch.no_grad()
    def prefill(self, prompt: torch.Tensor) -> int:
        ctx = prompt.shape[1]
        for start in range(0, ctx, PREFILL_CHUNK):
            chunk = prompt[:, start : start + PREFILL_CHUNK]
            self.logits = self.model(chunk, torch.arange(start, start + chunk.shape[1], device=prompt.device))
        self.token = self.logits[:, -1].argmax(-1, keepdim=True)
        self.position = torch.full((1,), ctx, dtype=torch.long, device=prompt.device)
        return int(self.token.item())

    @torch.no_grad()
    def step(self) -> int:
        """One decode step; returns once the next token is on the host."""
        if not self.cuda:
            self.logits = self.decode(self.model, self.token, self.position)
        elif self.graph is None and self.eager_steps < EAGER_STEPS_BEFORE_CAPTURE:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.logits = self.decode(self.model, self.token, self.position)
            torch.cuda.current_stream().wait_stream(side)
            self.eager_steps += 1
        else:
            if self.graph is None:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):  # records only; the replay below runs the step
                    self.logits = self.decode(self.model, self.token, self.position)
            self.graph.replay()
        return int(self.token.item())
