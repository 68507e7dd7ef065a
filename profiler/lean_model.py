"""A compact decoder for the lean runtime (Qwen2, Llama, Mistral), in plain PyTorch, on a built Hugging Face model's
weights.

Per layer: one RMSNorm, q, k and v as one matrix (one GEMV), rotary on q and k together and the new K and V written
into a static cache (K and V of [kv_heads, max_len, head_dim] per layer), attention that reads each K and V head once
for its group of query heads (a view, no expansion), the output projection, one RMSNorm, gate and up as one matrix,
SiLU(gate) x up, the down projection. The fused matrices are new tensors, and the Hugging Face linears become views
of their rows, so no weight is stored twice and the Hugging Face model still runs. Every formula is Hugging Face's (the
RMSNorm in float32, cos and sin from the model's own rotary frequencies, Llama-3.1's scaling included, cast to the
model's dtype, softmax in float32), so both decode the same tokens in float32.
"""

import torch
import torch.nn.functional as F
from torch import nn

from gapprof.errors import GapprofError

ARCHITECTURES = ("qwen2", "llama", "mistral")
ROPE_TYPES = ("default", "llama3")  # frequencies fixed at build: no type that changes them with the length
CACHE_ALIGN = 64  # cache slots, see LeanModel


def _fuse(linears) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) of linears that read the same input; each linear keeps a view of its rows. Fused once
    per model: a later runtime on the same model (ab, sweep) takes the same tensors, so no weight moves again."""
    if hasattr(linears[0], "_lean_fused"):
        return linears[0]._lean_fused
    weight = torch.cat([linear.weight for linear in linears])
    bias = torch.cat([linear.bias for linear in linears]) if linears[0].bias is not None else None
    row = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        linear.weight.data = weight[row : row + rows]
        if bias is not None:
            linear.bias.data = bias[row : row + rows]
        row += rows
    linears[0]._lean_fused = weight, bias
    return weight, bias


def check_supported(config, max_len: int) -> None:
    """Refuse a model the lean decoder would get wrong."""
    if config.model_type not in ARCHITECTURES:
        raise GapprofError(f"runtime lean builds {', '.join(ARCHITECTURES)} models, not {config.model_type}")
    if config.hidden_act != "silu":
        raise GapprofError(f"runtime lean runs SiLU MLPs; this model's activation is {config.hidden_act}")
    window = getattr(config, "sliding_window", None)
    if window and (config.model_type == "mistral" or getattr(config, "use_sliding_window", False)) and window < max_len:
        raise GapprofError(f"runtime lean has no sliding-window attention (window {window} < {max_len} positions)")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    return weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [heads, T, head_dim] rotated at the positions of cos and sin [T, head_dim]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor, scale: float) -> torch.Tensor:
    """q [heads, T, d] against one layer's cache k, v [kv_heads, max_len, d]; visible [T, max_len]. Query head h
    reads K and V head h // group (Hugging Face's repeat_kv order): the group's T x group query rows are one batch
    entry of each matmul, so each K and V head is read once."""
    kv_heads, length, d = k.shape
    group, t = q.shape[0] // kv_heads, q.shape[1]
    scores = (q.reshape(kv_heads, group * t, d) @ k.transpose(1, 2)) * scale
    scores = scores.view(kv_heads, group, t, length).masked_fill(~visible, float("-inf"))
    probs = scores.float().softmax(-1).to(q.dtype).view(kv_heads, group * t, length)
    return (probs @ v).view(kv_heads * group, t, d)


class LeanLayer(nn.Module):
    def __init__(self, layer, cache_shape: tuple, like: torch.Tensor):
        super().__init__()
        # Each layer's own K and V tensors: the compiled step updates them in place (in one tensor for all layers,
        # inductor copied the whole cache per layer to update one layer's view of it).
        self.register_buffer("k_cache", like.new_zeros(cache_shape), persistent=False)
        self.register_buffer("v_cache", like.new_zeros(cache_shape), persistent=False)
        attn, mlp = layer.self_attn, layer.mlp
        self.input_norm = layer.input_layernorm.weight
        self.post_norm = layer.post_attention_layernorm.weight
        self.o, self.o_bias = attn.o_proj.weight, attn.o_proj.bias
        self.down, self.down_bias = mlp.down_proj.weight, mlp.down_proj.bias
        fused = {"qkv": [attn.q_proj, attn.k_proj, attn.v_proj], "gate_up": [mlp.gate_proj, mlp.up_proj]}
        for name, linears in fused.items():
            weight, bias = _fuse(linears)
            self.register_buffer(name, weight, persistent=False)
            self.register_buffer(f"{name}_bias", bias, persistent=False)


class LeanModel(nn.Module):
    """forward(tokens [1, T], positions [T]) -> logits [1, 1, vocab] of the last token; writes the tokens' K and V
    at their positions."""

    def __init__(self, hf_model, max_len: int):
        super().__init__()
        config = hf_model.config
        check_supported(config, max_len)
        inner = hf_model.model
        rope = inner.rotary_emb
        if getattr(rope, "rope_type", "default") not in ROPE_TYPES:
            raise GapprofError(f"runtime lean computes rotary types {', '.join(ROPE_TYPES)}, not {rope.rope_type}")
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps, self.scale = config.rms_norm_eps, self.head_dim**-0.5
        self.embed, self.norm = inner.embed_tokens.weight, inner.norm.weight
        self.lm_head = hf_model.lm_head.weight
        # The cache's length rounded up to a multiple of 64 (the slots past max_len are never visible): at an odd
        # length such as ctx + steps + 1 the rows of probs are misaligned for cuBLAS, whose probs @ V then fell to
        # a generic kernel (gemmSN_NN, 66.8 us a layer on the H100 at 2,073 slots, traces/h100-lean.sqlite.xz).
        cache_len = -(-max_len // CACHE_ALIGN) * CACHE_ALIGN
        cache_shape = (self.kv_heads, cache_len, self.head_dim)
        self.layers = nn.ModuleList(LeanLayer(layer, cache_shape, self.embed) for layer in inner.layers)
        device, dtype = self.embed.device, self.embed.dtype
        slots = torch.arange(cache_len, device=device)
        self.register_buffer("slots", slots, persistent=False)
        freqs = slots.float()[:, None] * rope.inv_freq.to(device, torch.float32)[None]
        angles = torch.cat((freqs, freqs), -1)
        self.register_buffer("cos", (angles.cos() * rope.attention_scaling).to(dtype), persistent=False)
        self.register_buffer("sin", (angles.sin() * rope.attention_scaling).to(dtype), persistent=False)

    def _attention_block(self, layer: LeanLayer, x, cos, sin, visible, positions):
        t, q_heads = x.shape[0], self.heads + self.kv_heads
        qkv = F.linear(rms_norm(x, layer.input_norm, self.eps), layer.qkv, layer.qkv_bias)
        qkv = qkv.view(t, -1, self.head_dim).transpose(0, 1)  # [heads + 2 kv_heads, T, head_dim]
        qk = rotary(qkv[:q_heads], cos, sin)
        layer.k_cache.index_copy_(1, positions, qk[self.heads :])
        layer.v_cache.index_copy_(1, positions, qkv[q_heads:])
        out = attention(qk[: self.heads], layer.k_cache, layer.v_cache, visible, self.scale)
        return F.linear(out.transpose(0, 1).reshape(t, -1), layer.o, layer.o_bias)

    def _mlp_block(self, layer: LeanLayer, x):
        gate, up = F.linear(rms_norm(x, layer.post_norm, self.eps), layer.gate_up, layer.gate_up_bias).chunk(2, -1)
        return F.linear(F.silu(gate) * up, layer.down, layer.down_bias)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = F.embedding(tokens[0], self.embed)  # [T, hidden]
        cos, sin = self.cos[positions], self.sin[positions]
        visible = self.slots <= positions[:, None]  # causal: a token sees the cache up to its own position
        for layer in self.layers:
            x = x + self._attention_block(layer, x, cos, sin, visible, positions)
            x = x + self._mlp_block(layer, x)
        return F.linear(rms_norm(x[-1:], self.norm, self.eps), self.lm_head)[None]
