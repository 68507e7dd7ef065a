"""The byte model of the DRAM floor: the bytes one batch-1 decode step must move, per module and per step.

At context ctx (tokens already in the KV cache), one instance of each module kind (nvtx_names.KINDS; one per
decoder layer for the layer kinds, one per model for the others) moves these values, of d bytes each:
- each linear and norm: its parameters, read once (q/k/v with their biases where the model has them);
- lm_head: the whole vocab x hidden table, tied to the embedding or not;
- embed: one row of the table (hidden values), or the whole table with count_embedding (the study's
  convention);
- attention: its layer's K and V, read for the ctx cached tokens and written for the new one,
  2 x kv_heads x head_dim x (ctx + 1) values;
- every other kind (layer, mlp, act, rotary): nothing, its parameters being its children's or none.
A weight-only quantised model (gapprof.quant_floor) passes `stored`: the bytes one instance of each quantised kind
reads in a step, recorded at capture or estimated, in place of its parameters x d.
The step parts are sums of kinds: embedding = embed, kv_write = attention at ctx 0 (no cached token to read),
kv_read = the rest of attention, weights = every other kind.

Free of torch and polars: ab and sweep import it on the GPU image, which has no polars.
"""

from collections.abc import Mapping

from gapprof.models import ModelSpec
from gapprof.nvtx_names import KINDS, LAYER_MODULES

_PER_LAYER = frozenset(LAYER_MODULES.values())


def module_bytes(
    spec: ModelSpec, ctx: int, dtype_bytes: int, count_embedding: bool = False, stored: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Bytes one instance of each kind in KINDS moves in a step at context ctx (one layer's for a layer kind)."""
    stored = stored or {}
    values = {
        **spec.layer_module_params(),
        "attention": 2 * spec.kv_heads * spec.head_dim * (ctx + 1),
        "embed": spec.embedding_params() if count_embedding else spec.hidden,
        "final_norm": spec.hidden,
        "lm_head": spec.vocab * spec.hidden,
    }
    return {kind: stored[kind] if kind in stored else values.get(kind, 0) * dtype_bytes for kind in KINDS}


def kind_bytes(
    spec: ModelSpec, ctx: int, dtype_bytes: int, count_embedding: bool = False, stored: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Bytes each kind in KINDS moves in a step at context ctx: module_bytes summed over the layers."""
    return {
        kind: b * (spec.layers if kind in _PER_LAYER else 1)
        for kind, b in module_bytes(spec, ctx, dtype_bytes, count_embedding, stored).items()
    }


def step_bytes(
    spec: ModelSpec, ctx: int, dtype_bytes: int, count_embedding: bool = False, stored: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Bytes a step at context ctx moves, by part (weights, embedding, kv_read, kv_write) and in total: sums of
    kind_bytes, so total is the sum over the kinds."""
    kinds = kind_bytes(spec, ctx, dtype_bytes, count_embedding, stored)
    kv_write = kind_bytes(spec, 0, dtype_bytes, count_embedding)["attention"]
    total = sum(kinds.values())
    return {
        "weights": total - kinds["embed"] - kinds["attention"],
        "embedding": kinds["embed"],
        "kv_read": kinds["attention"] - kv_write,
        "kv_write": kv_write,
        "total": total,
    }


def floor_convention(
    spec: ModelSpec,
    dtype_bytes: int,
    count_embedding: bool,
    dtype_label: str,
    stored: Mapping[str, int] | None = None,
    quantised: str = "",
) -> str:
    """What the floor bytes count, with spec's numbers: printed wherever a floor is (attribute, ab, sweep).
    `quantised` says what `stored` counts."""
    parts = step_bytes(spec, 0, dtype_bytes, count_embedding, stored)
    kv_token = parts["kv_write"]
    embedding = (
        "whole embedding table counted (--count-embedding, the study's convention)"
        if count_embedding
        else "embedding table as one row (--count-embedding counts the whole table)"
    )
    weights = f"{parts['weights']:,} B" + (f"; {quantised}" if quantised else "")
    return (
        f"floor bytes/step = weights read once incl. lm_head ({weights}) + {embedding} "
        f"({parts['embedding']:,} B) + KV read at the step's context ({kv_token:,} B/token) + new KV "
        f"written ({kv_token:,} B); model {spec.name}, dtype {dtype_label}; 1 GB/s = 1e9 B/s"
    )
