"""One trace read once into the polars frames every analysis works on: I/O happens here and nowhere after.

The trace is an nsys export or gapprof CUPTI trace (analysis.load) or a torch.profiler Chrome trace
(analysis.kineto, which reads it into the same frames). Steps are the NVTX ranges matching the step pattern,
warm-up marked; calls are the API calls of the threads that run steps; gpu holds every kernel, memcpy and
memset; ranges keeps every NVTX range (module ranges too).
The frames pass analysis.trace_checks before any analysis sees them.
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from gapprof.analysis import kineto, load, trace_checks
from gapprof.analysis.steps import default_skip, find_steps, left_out_prefills, mark_warmup
from gapprof.nvtx_names import STEP_MESSAGE

PREFILLS_LEFT_OUT = "prefill ranges (not steps, left out)"


@dataclass(frozen=True)
class Frames:
    trace: load.Trace    # path, tables present, capture metadata
    ranges: pl.DataFrame  # every NVTX range
    steps: pl.DataFrame  # the step ranges, with `warmup`
    skip: int            # warm-up steps per thread
    calls: pl.DataFrame  # runtime and driver API calls on the step threads
    gpu: pl.DataFrame    # kernels, memcpys, memsets
    strings: pl.DataFrame
    gpu_info: pl.DataFrame  # TARGET_INFO_GPU: name and memory bandwidth per device
    notes: tuple[str, ...]
    checks: dict         # trace_checks counts, facts label -> count

    @property
    def meta(self) -> dict:
        return self.trace.meta


def read_frames(path, range_pattern: str = STEP_MESSAGE, skip: int | None = None,
                progress: Callable[[str], None] = lambda _: None) -> Frames:
    """Open the trace at `path` (a .sqlite, a .nsys-rep with its export beside it, or a torch.profiler .json or
    .json.gz, told apart by content) and read every frame."""
    source = kineto if kineto.is_json(path) else load
    trace = source.open_trace(path)
    progress(f"reading {trace.path}" + (f" (for {path})" if Path(trace.path) != Path(path) else ""))
    ranges = source.read_ranges(trace)
    found = find_steps(ranges, range_pattern)
    notes = [note for note in [load.stale_export_note(path)] if note]
    if trace.unparsable_meta:
        notes.append(f"capture metadata left out, not JSON: {', '.join(trace.unparsable_meta)}")
    if skip is None:
        skip, why = default_skip(found, trace.meta)
        notes.append(f"skipping the first {skip} steps of each thread as warm-up ({why}); --skip N to change")
    found = mark_warmup(found, skip)
    calls, gpu = source.read_api_calls(trace, found["globalTid"].unique().to_list()), source.read_gpu_ops(trace)
    checks = trace_checks.check_frames(trace, ranges, found, calls, gpu, source.read_launch_keys(trace),
                                       source.count_open_ranges(trace))
    prefills = left_out_prefills(ranges, range_pattern)
    if prefills:
        checks[PREFILLS_LEFT_OUT] = prefills
        notes.append(f"{prefills} prefill ranges seen and left out: the steps are the ranges matching --range "
                     f"{range_pattern!r} (--range prefill attributes the prefills)")
    return Frames(trace=trace, ranges=ranges, steps=found, skip=skip, calls=calls, gpu=gpu,
                  strings=source.read_strings(trace), gpu_info=source.read_gpu_info(trace), notes=tuple(notes),
                  checks=checks)
