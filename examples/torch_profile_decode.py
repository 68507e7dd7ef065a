"""gapprof's decode session under torch.profiler instead of Nsight Systems: warm-up, unprofiled timed steps, then
warm-up + steps profiled, each step in a record_function("decode_step") range; writes the Chrome trace that
`gapprof attribute` reads, and the session's metadata beside it (NAME.meta.json).

    python examples/torch_profile_decode.py --runtime graphs -o traces/h100-graphs-torch.json.gz
"""

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch
from gapprof.profiler.request import CaptureRequest
from gapprof.profiler.session import run_session
from gapprof.profiler.step_marks import RecordFunctionRanges
from torch.profiler import ProfilerActivity, profile

from gapprof.errors import GapprofError
from gapprof.nvtx_names import STEP_MESSAGE
from gapprof.paths import sibling
from gapprof.runtime_table import ATTENTION_BACKENDS, RUNTIMES

BACKEND = "torch.profiler"  # the request's backend, recorded in the metadata


class TorchProfilerCollector:
    """torch.profiler around the profiled pass only. Synchronising first keeps the GPU work of earlier steps out
    of the trace and lets the last profiled step's work finish inside it."""

    def __init__(self, device: str):
        self._cuda = device.startswith("cuda")
        self.profiler = profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if self._cuda else [])])

    def _synchronize(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def start(self) -> None:
        self._synchronize()
        self.profiler.start()

    def stop(self) -> None:
        self._synchronize()
        self.profiler.stop()


class StepRanges:
    """run_steps' ranges as record_function ranges; a Kineto range keeps no payload, so the index is dropped."""

    def __init__(self):
        self._ranges = RecordFunctionRanges()

    def push(self, index: int) -> None:
        self._ranges.push(STEP_MESSAGE, index)

    def pop(self) -> None:
        self._ranges.pop()


def meta_path(trace: Path) -> Path:
    """NAME.meta.json beside NAME.json or NAME.json.gz."""
    return sibling(trace.with_suffix("") if trace.suffix == ".gz" else trace, ".meta.json")


def attribute_command(trace: Path, meta: dict) -> str:
    """The attribute line for this trace. Its ranges carry no payload and it no metadata, so --ctx is the context
    at the first measured step (prefill + that step's index since prefill) and --skip the profiled warm-up."""
    first_measured = meta["first_profiled_index"] + meta["warmup"]
    return shlex.join(
        [
            "gapprof",
            "attribute",
            str(trace),
            "--model",
            meta["model"],
            "--ctx",
            str(meta["ctx"] + first_measured),
            "--skip",
            str(meta["warmup"]),
        ]
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-7b", help="a shipped config (`gapprof models`), random weights")
    parser.add_argument("--ctx", type=int, default=2048, help="prompt tokens before the first decode step")
    parser.add_argument("--steps", type=int, default=16, help="measured steps, unprofiled and then profiled")
    parser.add_argument(
        "--warmup",
        type=int,
        default=4,
        help="warm-up steps before the unprofiled ones and again at the start of the profiled pass",
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="graphs")
    parser.add_argument("--attn", choices=["auto", *ATTENTION_BACKENDS], default="auto")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="the Chrome trace, .json or .json.gz (gzipped) [default: traces/MODEL-RUNTIME-torch.json.gz]",
    )
    args = parser.parse_args(argv)
    args.output = args.output or Path("traces", f"{args.model}-{args.runtime}-torch.json.gz")
    if not args.output.name.endswith((".json", ".json.gz")):
        parser.error(f"--output {args.output}: a Chrome trace is written as .json or .json.gz")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    request = CaptureRequest(
        model=args.model,
        ctx=args.ctx,
        steps=args.steps,
        warmup=args.warmup,
        runtime=args.runtime,
        backend=BACKEND,
        attn=args.attn,
        seed=args.seed,
        device=args.device,
    )
    try:
        collector = TorchProfilerCollector(request.device)
        meta, _ = run_session(request, collector, StepRanges())
    except GapprofError as error:
        sys.exit(f"Error: {error}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    collector.profiler.export_chrome_trace(str(args.output))
    command = attribute_command(args.output, meta)
    meta.update(
        command=shlex.join(["python", f"examples/{Path(__file__).name}", *argv]),
        trace=str(args.output),
        attribute_command=command,
    )
    meta["range_domain"] = None  # record_function ranges have no domain (the session names its NVTX one)
    meta_path(args.output).write_text(json.dumps(meta, indent=1) + "\n")
    print(
        f"{args.output}: median step {statistics.median(meta['unprofiled_step_ms']):.2f} ms unprofiled, "
        f"{statistics.median(meta['profiled_step_ms']):.2f} ms profiled; analyse with: {command}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
