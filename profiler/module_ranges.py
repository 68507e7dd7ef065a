"""NVTX ranges around the model's modules (`gapprof capture --modules`), pushed by forward pre-hooks and popped
by forward hooks.

Format: domain `gapprof`, message `module:<kind>`, payload = decoder layer index; model-level modules (embed,
rotary, final_norm, lm_head) carry no payload. Ranges nest as the modules do (layer > attention > q_proj), and
analysis gives each kernel to the innermost range around its launch call, so a parent kind holds only what
its children do not: `layer` the residual adds, `mlp` the gate * up product.

Not modules, so without a range of their own:
- applying the rotary embedding (apply_rotary_pos_emb is a function): its kernels fall in `attention`;
  `rotary` is model.rotary_emb, which computes cos/sin once per forward for all layers;
- the KV-cache update and the attention kernel itself (SDPA) are calls inside self_attn: `attention`;
- the causal mask, argmax and token/position updates run outside every module: analysis reports them as
  outside any module.

The kinds and the message format are in gapprof.nvtx_names, which analysis reads too.
"""

import contextlib
import re
import statistics

from gapprof.nvtx_names import KINDS, LAYER_MODULES, MODEL_MODULES, MODULE_PREFIX, STEP_DOMAIN

_LAYER_PATH = re.compile(r"^model\.layers\.(\d+)(?:\.(.+))?$")


def module_kinds(model) -> list[tuple[str, str, int | None]]:
    """(module path, kind, layer index or None) for every module that gets a range, in model order."""
    found = []
    for path, _ in model.named_modules():
        layer_match = _LAYER_PATH.match(path)
        if layer_match:
            inner = layer_match.group(2) or ""
            if inner in LAYER_MODULES:
                found.append((path, LAYER_MODULES[inner], int(layer_match.group(1))))
        elif path in MODEL_MODULES:
            found.append((path, MODEL_MODULES[path], None))
    return found


class NvtxModuleRanges:
    """Push/pop `module:<kind>` ranges in the `gapprof` domain, payload = layer."""

    def __init__(self, domain: str = STEP_DOMAIN):
        import nvtx

        self._domain = nvtx.get_domain(domain)
        self._attributes = {}

    def push(self, kind: str, layer: int | None) -> None:
        key = (kind, layer)
        if key not in self._attributes:  # built once: hooks run ~400 times a step
            self._attributes[key] = self._domain.get_event_attributes(message=MODULE_PREFIX + kind, payload=layer)
        self._domain.push_range(self._attributes[key])

    def pop(self) -> None:
        self._domain.pop_range()


@contextlib.contextmanager
def annotated(model, ranges):
    """Hooks on every module of `module_kinds(model)` while inside; yields that list; removes them on exit."""
    modules = dict(model.named_modules())
    found = module_kinds(model)
    handles = []
    try:
        for path, kind, layer in found:
            module = modules[path]
            handles.append(
                module.register_forward_pre_hook(
                    lambda _module, _args, kind=kind, layer=layer: ranges.push(kind, layer)
                )
            )
            # always_call: a forward that raises still pops, so the NVTX stack stays balanced.
            handles.append(module.register_forward_hook(lambda *_: ranges.pop(), always_call=True))
        yield found
    finally:
        for handle in handles:
            handle.remove()


def cost_metadata(found: list, plain_ms: list[float], hooked_ms: list[float]) -> dict:
    """What the module ranges cost: step times of an unprofiled pass with and without the hooks."""
    return {
        "module_ranges": {
            "domain": STEP_DOMAIN,
            "message": f"{MODULE_PREFIX}<kind>",
            "payload": "layer index",
            "kinds": sorted({kind for _, kind, _ in found}, key=KINDS.index),
            "ranges_per_step": len(found),
        },
        # Collection is off in this pass: this is the hooks' and NVTX calls' own cost, not nsys recording them.
        "hooked_step_ms": hooked_ms,
        "module_range_cost_ms": statistics.median(hooked_ms) - statistics.median(plain_ms),
    }
