"""The attention backend of a decode session, as a transformers attention implementation.

`--attn sdpa-X` pins torch's scaled_dot_product_attention to one backend for every attention call of the model
(the sdpa_kernel context around Hugging Face's own SDPA function), registered with transformers under its own
name so the pin travels with the model into CUDA graphs and torch.compile, and nothing else in the process
changes. Plain `sdpa` leaves the choice to torch, which on torch 2.11 picks cuDNN attention: a setup per new KV
length on a dynamic cache. `lean` is the lean runtime's own attention: the Hugging Face model it takes its weights
from is built with plain sdpa, which the lean runtime never calls.
"""

from gapprof.errors import GapprofError
from gapprof.runtime_table import ATTENTION_BACKENDS

# --attn choice -> (SDPBackend member, name registered with transformers). transformers takes any implementation
# name containing "flash" for the flash-attn package, hence "fa".
_PINNED = {
    "sdpa-math": ("MATH", "gapprof_sdpa_math"),
    "sdpa-flash": ("FLASH_ATTENTION", "gapprof_sdpa_fa"),
    "sdpa-cudnn": ("CUDNN_ATTENTION", "gapprof_sdpa_cudnn"),
    "sdpa-efficient": ("EFFICIENT_ATTENTION", "gapprof_sdpa_efficient"),
}


def _pinned_sdpa(backend):
    from torch.nn.attention import sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(module, query, key, value, attention_mask, **kwargs):
        with sdpa_kernel(backend):
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    return attention


def implementation(attn: str) -> str:
    """The attn_implementation name to build the model with; registers a pinned SDPA on first use."""
    if attn not in ATTENTION_BACKENDS:
        raise GapprofError(f"unknown attention backend {attn!r}; known: {', '.join(ATTENTION_BACKENDS)}")
    if attn == "lean":
        return "sdpa"
    if attn not in _PINNED:
        return attn
    from torch.nn.attention import SDPBackend
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    member, name = _PINNED[attn]
    AttentionInterface.register(name, _pinned_sdpa(getattr(SDPBackend, member)))
    AttentionMaskInterface.register(name, sdpa_mask)  # the same masks as sdpa
    return name
