"""Build a decoder-only model: random weights straight on the device from a shipped config, or a local checkpoint."""

import time
from pathlib import Path

import torch
from gapprof.profiler.attention import implementation
from gapprof.profiler.quantize import quantize_model

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.models import load_config

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def build_model(
    model: str,
    dtype: str,
    attn: str,
    device: str,
    seed: int,
    weights: str | None = None,
    quant: str = "none",
    quant_lm_head: bool = False,
):
    """The model in eval mode on `device`, its decoder linear layers (and lm_head) quantised with `quant`
    (profiler.quantize), and its transformers config.

    Random weights are initialised on the device itself (no host copy of 15 GB): decode-step timing does not
    depend on weight values.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = DTYPES[dtype]
    attn_implementation = implementation(attn)
    started = time.perf_counter()
    if weights:
        if not Path(weights, "config.json").is_file():
            raise GapprofError(f"--weights {weights}: no config.json there (expected a Hugging Face checkpoint folder)")
        # Loaded on the host, then moved: placing it directly with device_map would need accelerate.
        net = AutoModelForCausalLM.from_pretrained(
            weights, dtype=torch_dtype, attn_implementation=attn_implementation
        ).to(device)
    else:
        config = AutoConfig.for_model(**load_config(model))
        torch.manual_seed(seed)
        with torch.device(device):
            net = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attn_implementation)
    net.eval().requires_grad_(False)
    quantize_model(net, quant, quant_lm_head)
    quantised = f", {quant}" if quant != "none" else ""
    progress(
        f"built {weights or model} ({dtype}{quantised}, attn={attn}) on {device} in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return net, net.config
