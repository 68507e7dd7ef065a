"""Benchmark (GPU): the decode step under each attention backend, unprofiled, in fresh sessions.

    python benchmarks/attn_backends.py [--model qwen2.5-7b] [--ctx 2048] [--steps 30] [--runtimes eager,static,graphs]

For each `--attn` choice, one session process builds the model once and times each runtime (prefill, warm-up,
then the measured steps, each at a new KV length). Prints the median ms per step, and eager / static: the
dynamic cache gives attention a new KV length every step and the static cache a fixed one, so a ratio far
above 1 is a per-length setup cost (what the default SDPA choice, cuDNN attention, pays on torch 2.11).
A backend that refuses the shapes prints its reason.
"""

import argparse
import statistics

from gapprof.profiler import fresh_sessions
from gapprof.profiler.request import CaptureRequest

from gapprof.runtime_table import ATTENTION_BACKENDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-7b")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runtimes", default="eager,static,graphs")
    parser.add_argument("--attn", default=",".join(a for a in ATTENTION_BACKENDS if a != "lean"))  # lean: its own
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    rows = []
    for attn in args.attn.split(","):
        requests = [
            CaptureRequest(
                model=args.model,
                ctx=args.ctx,
                steps=args.steps,
                warmup=args.warmup,
                runtime=runtime,
                backend="none",
                attn=attn,
                device=args.device,
            )
            for runtime in runtimes
        ]
        records = fresh_sessions.run_fresh(requests)
        rows.append((attn, {r["request"]["runtime"]: r for r in records}))
    gpu = fresh_sessions.machine([r for _, by_runtime in rows for r in by_runtime.values()]).get("gpu_name")
    print(f"{args.model} ctx {args.ctx}, {args.steps} steps after {args.warmup} warm-up, on {gpu}: median ms/step")
    print(f"{'attn':<16}" + "".join(f"{r:>10}" for r in runtimes) + f"{'eager/static':>14}")
    for attn, by_runtime in rows:
        medians = {r: statistics.median(rec["step_ms"]) for r, rec in by_runtime.items() if rec["ok"]}
        cells_text = "".join(f"{medians[r]:>10.2f}" if r in medians else f"{'-':>10}" for r in runtimes)
        ratio = medians["eager"] / medians["static"] if {"eager", "static"} <= medians.keys() else None
        print(f"{attn:<16}{cells_text}{(f'{ratio:.2f}' if ratio else '-'):>14}")
        for runtime, rec in by_runtime.items():
            if not rec["ok"]:
                print(f"    {runtime}: {rec['reason']}")


if __name__ == "__main__":
    main()
