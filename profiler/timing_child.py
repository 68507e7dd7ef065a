"""The child process of a fresh session: it builds the model, prefills, warms up and times decode steps, unprofiled.

fresh_sessions starts it, once per group of requests, for ab_runner and sweep_runner; it is the only one of the
four that imports torch.

Run as `python -m gapprof.profiler.timing_child REQUESTS.json RESULTS.jsonl`. REQUESTS holds a list of
CaptureRequest dicts for one model (same dtype, weights, seed, device); the model is built once and
each request gets its own runtime, attention backend and prefill. Each step is timed on the host's
perf_counter_ns and ends once the next token is on the host (runtime.step() reads it back, which synchronises
with the GPU).

One JSON line per request is appended to RESULTS as soon as it is done. A request that fails writes a line
with the reason and ends the process (exit status 3): the caller runs what is left in a new process, so an
out-of-memory error cannot leave a poisoned allocator behind for later requests.
"""

import dataclasses
import gc
import json
import sys

import torch
from gapprof.profiler import environment
from gapprof.profiler.attention import implementation
from gapprof.profiler.build import build_model
from gapprof.profiler.decode import run_steps, step_ms
from gapprof.profiler.quant_bytes import quant_record
from gapprof.profiler.request import CaptureRequest, validate
from gapprof.profiler.session import start_decode

from gapprof.errors import GapprofError
from gapprof.log import progress

FAILED_EXIT = 3
SHARED_FIELDS = ("model", "dtype", "weights", "seed", "device", "quant", "quant_lm_head")


def failure_reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _time_one(request: CaptureRequest, model, config) -> dict:
    model.set_attn_implementation(implementation(request.attn))
    runtime, first = start_decode(request, model, config)
    progress(f"timing {request.warmup} warm-up + {request.steps} steps ({request.runtime}, ctx {request.ctx})")
    tokens, spans = run_steps(runtime, request.warmup + request.steps)
    del runtime  # frees the KV cache and any captured graph before the next request
    return {"first_token": first, "tokens": tokens[request.warmup :], "step_ms": step_ms(spans[request.warmup :])}


def quant_summary(model, request: CaptureRequest) -> dict:
    """The record's `quant`: what the quantised layers store and read per kind (the capture's record without its
    modules), or nothing for an unquantised model."""
    if request.quant == "none":
        return {}
    summary = quant_record(model, request.quant, request.quant_lm_head)
    return {"quant": {k: v for k, v in summary.items() if k != "modules"}}


def time_requests(requests: list[CaptureRequest], results_path: str) -> int:
    """Time each request in order; return the process exit status."""
    if len({tuple(getattr(r, f) for f in SHARED_FIELDS) for r in requests}) > 1:
        raise GapprofError(f"one session process serves one model build: requests differ in {SHARED_FIELDS}")
    device = requests[0].device
    machine = {
        "copy_bandwidth_gbps": environment.copy_bandwidth_gbps(device),
        "cpu": environment.cpu_model(),
        **environment.gpu_facts(device),
        **environment.versions(),
    }
    model = config = None
    with open(results_path, "a") as results:
        for request in requests:
            record = {"request": dataclasses.asdict(request), **machine}
            try:
                validate(request)
                if model is None:
                    model, config = build_model(
                        request.model,
                        request.dtype,
                        request.attn,
                        device,
                        request.seed,
                        request.weights,
                        request.quant,
                        request.quant_lm_head,
                    )
                    quant = quant_summary(model, request)
                record.update(ok=True, **_time_one(request, model, config), **quant)
            except Exception as error:  # any failure is this request's reason; the caller goes on without it
                record.update(ok=False, reason=failure_reason(error))
            results.write(json.dumps(record) + "\n")
            results.flush()
            if not record["ok"]:
                return FAILED_EXIT
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return 0


def _main(requests_path: str, results_path: str) -> int:
    with open(requests_path) as f:
        requests = [CaptureRequest(**r) for r in json.load(f)]
    return time_requests(requests, results_path)


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
