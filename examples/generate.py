"""Greedy generation with transformers' generate() on a model of Qwen2.5-7B's shapes with random bf16 weights: a
plain transformers script, with nothing of gapprof in it.

    python examples/generate.py --new-tokens 64
    gapprof profile --mark forward -- python examples/generate.py
    gapprof profile -- python examples/generate.py --repeat 5

With --repeat R it first times decode per token unprofiled, as the difference of generate() with --new-tokens and
with one new token (the prefill alone), median of R each, then runs the generate() a profiler records between
cudaProfilerStart and cudaProfilerStop (what `nsys profile --capture-range=cudaProfilerApi` keeps).
"""

import argparse
import contextlib
import json
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoModelForCausalLM, Qwen2Config


def qwen2_5_7b_config() -> Qwen2Config:
    """Qwen2.5-7B's shapes, as its config.json gives them."""
    return Qwen2Config(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        max_position_embeddings=131072,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--cache-implementation", choices=["dynamic", "static"], default="dynamic")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="let generate compile the decode forward (its default with a static cache on a GPU)",
    )
    parser.add_argument("--attn", default="sdpa", help="attn_implementation: sdpa, eager, flash_attention_2, ...")
    parser.add_argument(
        "--sdpa-backend",
        choices=["flash", "math", "cudnn", "efficient"],
        help="pin torch's SDPA to one backend (default: torch chooses per call)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=0, help="time decode per token first, R calls of each length")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    with torch.device(args.device):  # random weights initialised on the device itself
        model = AutoModelForCausalLM.from_config(
            qwen2_5_7b_config(), dtype=torch.bfloat16, attn_implementation=args.attn
        )
    model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, args.ctx), generator=generator).to(args.device)

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "math": SDPBackend.MATH,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    pinned = sdpa_kernel(backends[args.sdpa_backend]) if args.sdpa_backend else contextlib.nullcontext()

    def generate(new_tokens: int):
        with torch.inference_mode(), pinned:
            return model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                do_sample=False,
                cache_implementation=args.cache_implementation,
                disable_compile=not args.compile,
            )

    if args.repeat:
        generate(args.new_tokens)  # warm-up
        whole = [seconds_of(generate, args.new_tokens) for _ in range(args.repeat)]
        prefill = [seconds_of(generate, 1) for _ in range(args.repeat)]
        per_token_ms = (statistics.median(whole) - statistics.median(prefill)) / (args.new_tokens - 1) * 1e3
        print(
            json.dumps(
                {
                    "program": "transformers generate()",
                    "ctx": args.ctx,
                    "new_tokens": args.new_tokens,
                    "generate_ms": [t * 1e3 for t in whole],
                    "prefill_ms": [t * 1e3 for t in prefill],
                    "decode_ms_per_token": per_token_ms,
                }
            )
        )
    profiled = torch.cuda.profiler.profile() if args.device.startswith("cuda") else contextlib.nullcontext()
    started = time.perf_counter()
    with profiled:
        out = generate(args.new_tokens)
    seconds = time.perf_counter() - started
    new = out.shape[-1] - prompt.shape[-1]
    print(
        f"generated {new} tokens after a {args.ctx}-token prompt in {seconds:.2f} s "
        f"({args.cache_implementation} cache, attn {args.attn}, SDPA backend {args.sdpa_backend or 'torch chooses'})"
    )


def seconds_of(generate, new_tokens: int) -> float:
    """Seconds of one generate() call (it returns once the last token is on the host)."""
    started = time.perf_counter()
    generate(new_tokens)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
