"""Benchmark (GPU): the lean runtime's decode attention at Qwen2.5-7B's shapes, by formulation, in a CUDA graph.

    python benchmarks/lean_attention.py [--ctx 2048] [--cache 2112] [--repeats 20]   # --cache 2097: unaligned

The lean step's attention (profiler.lean_model.attention: q K^T, softmax, probs V as batched matmuls) lost
1.87 ms a step on the H100 to one cuBLAS kernel, gemmSN_NN for probs V (7 query rows of a KV head's group
against the whole cache: 66.8 us a layer in traces/h100-lean.sqlite.xz, where its bytes take about 1 us). Each
formulation here runs once per layer, 28 times back to back in one CUDA graph, each layer with its own K and V
(28 x 4.3 MB, so that DRAM serves them rather than the L2). Printed per formulation: us per layer (median of
the timed replays), K and V's bytes at that time, and the largest |difference| from the lean function's output.
A formulation that fails on this GPU prints its error instead.
"""

import argparse
import statistics

import torch
import torch.nn.functional as F
from gapprof.profiler.calibrate import Workload, in_graph
from gapprof.profiler.calibration_plan import Settings
from gapprof.profiler.lean_model import attention as lean_attention
from torch.nn.attention import SDPBackend, sdpa_kernel

from gapprof.models import load_config


def split_positions(parts: int):
    """probs V with the cache's positions split in `parts` batched products, summed after: each product has
    cache / parts rows to reduce instead of the whole cache (what split-K GEMV kernels do)."""

    def run(q, k, v, visible, scale):
        kv_heads, length, d = k.shape
        rows = q.shape[0] // kv_heads * q.shape[1]
        scores = (q.reshape(kv_heads, rows, d) @ k.transpose(1, 2)) * scale
        scores = scores.view(kv_heads, -1, q.shape[1], length).masked_fill(~visible, float("-inf"))
        probs = scores.float().softmax(-1).to(q.dtype).view(kv_heads, rows, parts, length // parts)
        partial = probs.transpose(1, 2) @ v.view(kv_heads, parts, length // parts, d)
        return partial.float().sum(1).to(q.dtype).view(q.shape)

    return run


def transposed_values(q, k, v, visible, scale):
    """probs V computed as (V^T probs^T)^T: 128 output rows, 7 columns."""
    kv_heads, length, d = k.shape
    rows = q.shape[0] // kv_heads * q.shape[1]
    scores = (q.reshape(kv_heads, rows, d) @ k.transpose(1, 2)) * scale
    scores = scores.view(kv_heads, -1, q.shape[1], length).masked_fill(~visible, float("-inf"))
    probs = scores.float().softmax(-1).to(q.dtype).view(kv_heads, rows, length)
    return (v.transpose(1, 2) @ probs.transpose(1, 2)).transpose(1, 2).reshape(q.shape)


def sdpa(backend: SDPBackend | None):
    """torch's SDPA with grouped query heads and the visibility mask, pinned to `backend` (None: torch's choice)."""

    def run(q, k, v, visible, scale):
        call = lambda: F.scaled_dot_product_attention(  # noqa: E731
            q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), attn_mask=visible, scale=scale, enable_gqa=True
        )[0]
        if backend is None:
            return call()
        with sdpa_kernel(backend):
            return call()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-7b")
    parser.add_argument("--ctx", type=int, default=2048, help="positions the query sees")
    parser.add_argument(
        "--cache",
        type=int,
        default=2112,
        help="cache length; an odd one (2097: the lean capture's ctx + steps + 1) shows what "
        "alignment costs; the position splits run where it divides",
    )
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    config = load_config(args.model)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    d, layers = config["hidden_size"] // heads, config["num_hidden_layers"]
    torch.manual_seed(0)
    make = lambda *shape: torch.randn(*shape, dtype=torch.bfloat16, device="cuda")  # noqa: E731
    q, caches = (
        make(heads, 1, d),
        [(make(kv_heads, args.cache, d), make(kv_heads, args.cache, d)) for _ in range(layers)],
    )
    visible = (torch.arange(args.cache, device="cuda") < args.ctx)[None, :]
    scale = d**-0.5
    kv_bytes = 2 * kv_heads * args.cache * d * 2
    variants = {
        "lean (batched matmuls)": lean_attention,
        "transposed values": transposed_values,
        **{f"positions split in {n}": split_positions(n) for n in (8, 16, 32, 64) if args.cache % n == 0},
        "sdpa (torch's choice)": sdpa(None),
        "sdpa efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
        "sdpa math": sdpa(SDPBackend.MATH),
        "sdpa cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
        "lean, torch.compile": torch.compile(lean_attention),
        **(
            {"positions split in 16, torch.compile": torch.compile(split_positions(16))} if args.cache % 16 == 0 else {}
        ),
    }
    reference = lean_attention(q, *caches[0], visible, scale).float()
    print(
        f"{args.model} decode attention, {heads} query heads over {kv_heads} KV heads, cache {args.cache}, "
        f"{args.ctx} visible, {layers} layers a graph, on {torch.cuda.get_device_name()}"
    )
    print(f"{'formulation':<40}{'us/layer':>10}{'GB/s (K+V)':>12}{'max |diff|':>12}")
    for name, run in variants.items():
        try:
            diff = (run(q, *caches[0], visible, scale).float() - reference).abs().max().item()
            work = Workload(lambda i, run=run: run(q, *caches[i % layers], visible, scale), layers)
            us = statistics.median(in_graph(work, Settings(repeats=args.repeats)))
        except Exception as error:  # a backend that refuses these shapes or this GPU: say so and go on
            print(f"{name:<40}  failed: {type(error).__name__}: {str(error).splitlines()[0][:70]}")
            continue
        print(f"{name:<40}{us:>10.2f}{kv_bytes / us / 1e3:>12.0f}{diff:>12.4f}")


if __name__ == "__main__":
    main()
