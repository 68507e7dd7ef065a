"""Batch-1 decode with gpt-fast's own generate() (generate.py and model.py of a pytorch-labs/gpt-fast checkout,
--gpt-fast DIR) on a model of Llama-3.1-8B's shapes with random bf16 weights: nothing of gapprof in it, no step
marks. gpt-fast samples on the GPU and never waits for a token, so the host runs ahead of the GPU.

First it times decode per token unprofiled, as the difference of generate() with --new-tokens and with two new tokens
(the prefill and one decode step; gpt-fast's generate() needs at least two), median of --repeat each; then it runs
one more generate() between cudaProfilerStart and cudaProfilerStop (what `nsys profile
--capture-range=cudaProfilerApi` records), or under torch.profiler with --torch-trace FILE.

    python examples/gpt_fast_decode.py --gpt-fast ~/gpt-fast --compile
    nsys profile -t cuda,nvtx -s none --cpuctxsw=none --cuda-graph-trace=node --capture-range=cudaProfilerApi \\
        -o gpt-fast python examples/gpt_fast_decode.py --gpt-fast ~/gpt-fast --compile
"""

import argparse
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch


def import_gpt_fast(folder: Path):
    """gpt-fast's generate module. It imports its tokenizer module at the top, whose libraries (sentencepiece,
    tiktoken) decode runs without: stand-ins are registered only where they are not installed."""
    for name in ("sentencepiece", "tiktoken", "tiktoken.load"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["tiktoken.load"].load_tiktoken_bpe = None
    sys.path.insert(0, str(folder))
    import generate

    return generate


def run(gpt_fast, model, prompt, new_tokens: int) -> float:
    """Seconds of one generate() call, synchronised before and after, with gpt-fast's default sampling."""
    gpt_fast.device_sync(str(prompt.device))
    started = time.perf_counter()
    gpt_fast.generate(
        model, prompt, new_tokens, batch_size=1, interactive=False, draft_model=None, temperature=0.8, top_k=200
    )
    gpt_fast.device_sync(str(prompt.device))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpt-fast", type=Path, required=True, help="a gpt-fast checkout (generate.py, model.py)")
    parser.add_argument("--model", default="llama-3.1-8b", help="a name of gpt-fast's transformer_configs")
    parser.add_argument("--ctx", type=int, default=2048, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--compile", action="store_true", help="decode_one_token compiled as gpt-fast's main does")
    parser.add_argument("--warmup", type=int, default=2, help="generate() calls before timing")
    parser.add_argument("--repeat", type=int, default=5, help="timed generate() calls of each length")
    parser.add_argument("--torch-trace", type=Path, help="profile the last call with torch.profiler into FILE")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timings", type=Path, help="write the unprofiled timings as JSON to FILE")
    args = parser.parse_args()

    gpt_fast = import_gpt_fast(args.gpt_fast)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(args.device):  # random weights initialised on the GPU itself
        model = gpt_fast.Transformer.from_name(args.model)
    model.eval()
    if args.compile:  # gpt-fast's main rebinds the module's decode_one_token the same way
        gpt_fast.decode_one_token = torch.compile(gpt_fast.decode_one_token, mode="reduce-overhead", fullgraph=True)
    prompt = torch.randint(0, 1024, (args.ctx,), device=args.device, dtype=torch.int64)  # as its --prompt N does

    started = time.perf_counter()
    for _ in range(args.warmup):
        run(gpt_fast, model, prompt, args.new_tokens)
    warmup_s = time.perf_counter() - started
    whole = [run(gpt_fast, model, prompt, args.new_tokens) for _ in range(args.repeat)]
    short = [run(gpt_fast, model, prompt, 2) for _ in range(args.repeat)]
    per_token_ms = (statistics.median(whole) - statistics.median(short)) / (args.new_tokens - 2) * 1e3
    timings = {
        "program": "gpt-fast generate()",
        "model": args.model,
        "ctx": args.ctx,
        "new_tokens": args.new_tokens,
        "compile": args.compile,
        "warmup_s": warmup_s,
        "generate_ms": [t * 1e3 for t in whole],
        "two_tokens_ms": [t * 1e3 for t in short],
        "decode_ms_per_token": per_token_ms,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "torch": torch.__version__,
    }
    print(json.dumps(timings))
    if args.timings:
        args.timings.write_text(json.dumps(timings, indent=1) + "\n")

    if args.torch_trace:
        from torch.profiler import ProfilerActivity, profile

        torch.profiler._utils._init_for_cuda_graphs()  # as gpt-fast's --profile does, for CUDA graph replays
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
            run(gpt_fast, model, prompt, args.new_tokens)
        profiler.export_chrome_trace(str(args.torch_trace))
    else:
        torch.cuda.profiler.start()
        run(gpt_fast, model, prompt, args.new_tokens)
        torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
