"""Greedy generation with transformers' generate() on a model of Qwen2.5-7B's shapes with random bf16 weights: a
plain transformers script, with nothing of gapprof in it.

    python examples/generate.py --new-tokens 64
    gapprof profile --mark forward -- python examples/generate.py
"""
import argparse
import contextlib
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoModelForCausalLM, Qwen2Config


def qwen2_5_7b_config() -> Qwen2Config:
    """Qwen2.5-7B's shapes, as its config.json gives them."""
    return Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, max_position_embeddings=131072, rope_theta=1e6,
                       rms_norm_eps=1e-6, tie_word_embeddings=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--cache-implementation", choices=["dynamic", "static"], default="dynamic")
    parser.add_argument("--compile", action="store_true",
                        help="let generate compile the decode forward (its default with a static cache on a GPU)")
    parser.add_argument("--attn", default="sdpa", help="attn_implementation: sdpa, eager, flash_attention_2, ...")
    parser.add_argument("--sdpa-backend", choices=["flash", "math", "cudnn", "efficient"],
                        help="pin torch's SDPA to one backend (default: torch chooses per call)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    with torch.device(args.device):  # random weights initialised on the device itself
        model = AutoModelForCausalLM.from_config(qwen2_5_7b_config(), dtype=torch.bfloat16,
                                                 attn_implementation=args.attn)
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, args.ctx), generator=generator).to(args.device)

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    pinned = sdpa_kernel(backends[args.sdpa_backend]) if args.sdpa_backend else contextlib.nullcontext()
    started = time.perf_counter()
    with torch.inference_mode(), pinned:
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                             do_sample=False, cache_implementation=args.cache_implementation,
                             disable_compile=not args.compile)
    seconds = time.perf_counter() - started
    new = out.shape[-1] - prompt.shape[-1]
    print(f"generated {new} tokens after a {args.ctx}-token prompt in {seconds:.2f} s "
          f"({args.cache_implementation} cache, attn {args.attn}, SDPA backend {args.sdpa_backend or 'torch chooses'})")


if __name__ == "__main__":
    main()
