"""One capture session in one process: build, prefill, time steps unprofiled, then profile the same steps.

The passes continue one decode, as a real generation does: warm-up (graph capture, compilation), the unprofiled
steps, then the profiled steps, each at new positions with a growing KV cache. Going back over positions already
visited would hide costs that only a new context length pays (allocator growth, per-shape attention plans), so
the unprofiled and profiled passes compare like for like (the observer effect) a few positions apart. A step's
NVTX payload is its index since prefill, so its context is ctx + payload.

Run as `python -m gapprof.profiler.session REQUEST.json` under nsys: collection is switched on by
cudaProfilerStart only around the profiled phase.
"""

import contextlib
import datetime
import json
import sys

import torch
from gapprof.profiler import environment, module_ranges, quant_bytes
from gapprof.profiler.build import build_model
from gapprof.profiler.decode import NoRanges, run_steps, step_ms
from gapprof.profiler.request import CaptureRequest, check_positions, decode_steps, max_len, validate
from gapprof.profiler.runtimes import make_runtime

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.models import DTYPE_BYTES, load_config
from gapprof.nvtx_names import STEP_DOMAIN, STEP_MESSAGE
from gapprof.quant_floor import floor_record


class NoCollector:
    """Collects nothing (unprofiled runs and tests)."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def start_decode(request: CaptureRequest, model, config):
    """The request's runtime over `model`, prefilled with its seeded random prompt; returns it and the first token."""
    check_positions(request, config.max_position_embeddings, "the checkpoint")
    runtime = make_runtime(request.runtime, model, max_len(request))
    generator = torch.Generator().manual_seed(request.seed)
    prompt = torch.randint(0, config.vocab_size, (1, request.ctx), generator=generator).to(request.device)
    first = runtime.prefill(prompt)
    progress(f"prefilled {request.ctx} tokens")
    return runtime, first


def run_session(request: CaptureRequest, collector=NoCollector(), ranges=NoRanges(), clock=None, modules=None):
    """Capture one trace's worth of decode steps; return the metadata the trace will carry and the profiled
    steps' (start, end) on `clock` (default: the host's perf_counter_ns). With request.modules, `modules`
    (default NVTX) gets a range per module in the profiled pass and in one extra unprofiled pass that measures
    their cost."""
    validate(request)
    model, config = build_model(
        request.model,
        request.dtype,
        request.attn,
        request.device,
        request.seed,
        request.weights,
        request.quant,
        request.quant_lm_head,
    )
    runtime, first = start_decode(request, model, config)
    bandwidth = environment.copy_bandwidth_gbps(request.device)
    if bandwidth:
        progress(f"device-to-device copy bandwidth {bandwidth:.0f} GB/s")

    progress(f"warm-up: {request.warmup} steps ({request.runtime})")
    if request.graph_trace == "both":
        collector.arm_graph_level()
    run_steps(runtime, request.warmup)
    if request.graph_trace == "both":
        collector.disarm()
    progress(f"unprofiled: {request.steps} steps")
    _, plain_spans = run_steps(runtime, request.steps)
    if request.modules:
        modules = modules or module_ranges.NvtxModuleRanges()
        progress(f"unprofiled with module ranges: {request.steps} steps")
        with module_ranges.annotated(model, modules):
            _, hooked_spans = run_steps(runtime, request.steps)

    first_index = decode_steps(request) - request.warmup - request.steps
    timing = {"clock": clock} if clock else {}
    graph_level = {}
    if request.graph_trace == "both":
        # The graph-level pass first, at the positions before the node-level pass's.
        graph_index = first_index - request.warmup - request.steps
        progress(f"profiled, graph level: {request.warmup} warm-up + {request.steps} steps ({request.backend})")
        collector.start_graph_level()
        _, graph_spans = run_steps(runtime, request.warmup + request.steps, graph_index, ranges=ranges, **timing)
        collector.stop()
        graph_level = {
            "graph_level_step_ms": step_ms(graph_spans[request.warmup :]),
            "graph_level_first_index": graph_index,
            "graph_level_spans": graph_spans,
        }
    progress(f"profiled: {request.warmup} warm-up + {request.steps} steps ({request.backend})")
    hooks = module_ranges.annotated(model, modules) if request.modules else contextlib.nullcontext()
    with hooks as found:
        collector.start()
        tokens, spans = run_steps(runtime, request.warmup + request.steps, first_index, ranges=ranges, **timing)
        collector.stop()

    unprofiled_ms = step_ms(plain_spans)
    profiled_ms = step_ms(spans[request.warmup :])
    meta = {
        "model": request.model if not request.weights else request.weights,
        "config": config.to_dict() if request.weights else load_config(request.model),
        "dtype": request.dtype,
        "dtype_bytes": DTYPE_BYTES[request.dtype],
        "param_bytes": quant_bytes.param_bytes(model),
        "ctx": request.ctx,
        "steps": request.steps,
        "warmup": request.warmup,
        "runtime": request.runtime,
        "backend": request.backend,
        "cuda_graph_trace": request.graph_trace,
        "attn": request.attn,
        "seed": request.seed,
        "range_message": STEP_MESSAGE,
        "range_domain": STEP_DOMAIN,
        "copy_bandwidth_gbps": bandwidth,
        "unprofiled_step_ms": unprofiled_ms,
        "profiled_step_ms": profiled_ms,
        "first_profiled_index": first_index,
        **graph_level,
        "first_token": first,
        "tokens": tokens,
        "cpu": environment.cpu_model(),
        "captured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        **environment.gpu_facts(request.device),
        **environment.versions(),
    }
    if request.modules:
        meta.update(module_ranges.cost_metadata(found, unprofiled_ms, step_ms(hooked_spans)))
    if request.quant != "none":
        meta["quant"] = quant_bytes.quant_record(model, request.quant, request.quant_lm_head)
        meta["quant"]["floor"] = floor_record(meta, request.ctx + first_index + request.warmup)
    return meta, spans


class CudaProfilerCollector:
    """Switches nsys collection on and off (nsys runs with --capture-range=cudaProfilerApi)."""

    def start(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.profiler.start()

    def stop(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def _main(request_path: str, meta_path: str) -> None:
    """Entry point of the process that nsys profiles."""
    from gapprof.profiler.decode import NvtxStepRanges

    with open(request_path) as f:
        request = CaptureRequest(**json.load(f))
    meta, _ = run_session(request, CudaProfilerCollector(), NvtxStepRanges())
    with open(meta_path, "w") as f:
        json.dump(meta, f)


if __name__ == "__main__":
    try:
        _main(*sys.argv[1:3])
    except GapprofError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)
