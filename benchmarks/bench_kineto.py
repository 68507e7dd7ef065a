"""Benchmark: `gapprof attribute` on a large torch.profiler (Kineto) Chrome trace, as a whole process.

    python benchmarks/bench_kineto.py [--kernels 1500000] [--per-step 1000] [--dir /tmp] [--before PYTHON]

Writes a trace shaped as torch.profiler exports one (every kernel with the aten op that launched it, its
cudaLaunchKernel and its kernel event, each with Kineto's args; a ProfilerStep#N range per step; about 990 bytes
per kernel, so 1.5M kernels make 1.39 GiB), then times, each as a whole process under `/usr/bin/time -v`
(wall time and peak RSS, start-up included): the read alone (the reader's `read`, into the frames) and
`gapprof attribute`; then deletes it. With --before, the Python of another gapprof install (an earlier checkout
with its own virtual environment) is timed the same way first, on the same file.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_attribute import timed

PID, TID = 4242, 4243
READ = "import sys; from gapprof.analysis.readers import kineto; kineto.read(sys.argv[1])"
TABLES = "summary,facts,classes,kernels,api,findings"


def _events(step: int, per_step: int):
    """One step's events: the range, then per kernel an aten op, its launch and the kernel, as Kineto writes them
    (µs with three decimals)."""
    base = step * (per_step * 4_000 + 200_000)
    yield {
        "ph": "X",
        "cat": "user_annotation",
        "name": f"ProfilerStep#{step}",
        "pid": PID,
        "tid": TID,
        "ts": base / 1000,
        "dur": (per_step * 4_000 + 100_000) / 1000,
        "args": {"External id": step * (per_step + 1) + 1, "Record function id": 0, "Ev Idx": 0},
    }
    for k in range(per_step):
        call = base + 10_000 + k * 4_000
        correlation = step * per_step + k + 1
        external = step * (per_step + 1) + k + 2
        yield {
            "ph": "X",
            "cat": "cpu_op",
            "name": "aten::mm",
            "pid": PID,
            "tid": TID,
            "ts": (call - 1_000) / 1000,
            "dur": 3.5,
            "args": {
                "External id": external,
                "Record function id": 0,
                "Ev Idx": k + 1,
                "Input Dims": [[1, 3584], [3584, 18944]],
                "Input type": ["c10::BFloat16", "c10::BFloat16"],
                "Input Strides": [[3584, 1], [1, 3584]],
                "Concrete Inputs": ["", ""],
                "Sequence number": 100 + k,
                "Fwd thread id": 0,
            },
        }
        yield {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": PID,
            "tid": TID,
            "ts": call / 1000,
            "dur": 3.0,
            "args": {"External id": external, "cbid": 211, "correlation": correlation},
        }
        yield {
            "ph": "X",
            "cat": "kernel",
            "name": f"void gemv_kernel_{k % 50}<__nv_bfloat16, 128, 4>(int, int)",
            "pid": 0,
            "tid": 7,
            "ts": (call + 5_000) / 1000,
            "dur": round(2.5 + (k % 7) / 1000, 3),
            "args": {
                "External id": external,
                "queued": 0,
                "device": 0,
                "context": 1,
                "stream": 7,
                "correlation": correlation,
                "registers per thread": 32,
                "shared memory": 0,
                "blocks per SM": 1.75,
                "warps per SM": 7.0,
                "grid": [132, 1, 1],
                "block": [128, 1, 1],
                "est. achieved occupancy %": 11,
            },
        }


def generate(path: Path, kernels: int, per_step: int) -> None:
    with open(path, "w") as f:
        f.write(
            '{"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3", '
            '"totalGlobalMem": 85045379072}], "traceEvents": [\n'
        )
        first = True
        for step in range(kernels // per_step):
            for event in _events(step, per_step):
                f.write(("" if first else ",\n") + json.dumps(event))
                first = False
        f.write('\n], "traceName": "bench"}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=int, default=1_500_000)
    parser.add_argument("--per-step", type=int, default=1_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the trace is written")
    parser.add_argument("--before", help="the Python of another gapprof install, timed first for comparison")
    args = parser.parse_args()
    path = args.dir / f"bench-kineto-{args.kernels}.json"
    started = time.perf_counter()
    generate(path, args.kernels, args.per_step)
    print(
        f"{args.kernels:,} kernels: {path.stat().st_size / 2**30:.2f} GiB, written in "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    pythons = {"before": args.before, "after": sys.executable} if args.before else {"": sys.executable}
    try:
        for label, python in pythons.items():
            read = [python, "-c", READ, str(path)]
            attribute = [python, "-m", "gapprof", "attribute", str(path), "--range", r"ProfilerStep#\d+"]
            for what, command in (("read alone", read), ("attribute", attribute + ["--tables", TABLES])):
                seconds, peak = timed(command)
                print(f"{label} {what}: {seconds:.1f} s, peak {peak:,.0f} MiB".strip(), flush=True)
    finally:
        path.unlink()


if __name__ == "__main__":
    main()
