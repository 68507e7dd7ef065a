"""From a trace path to every table `gapprof attribute` shows: load, steps, anatomy, floor, kernels, API."""
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from gapprof.analysis import anatomy, api, floor as floor_mod, kernels, load, steps as steps_mod, summary
from gapprof.errors import GapprofError


# Per-step table order: identity terms first, then the floor split, then what the step contained.
STEP_COLUMNS = ("step", "globalTid", "index", "payload", "warmup", "t0", "t1", "wall", "busy", "starved", "latency",
                "head", "tail", "ctx", "bytes", "floor", "excess", *(f"floor_{s}" for s in floor_mod.SOURCES),
                "spill", "overlap", "g0", "g1", "kernels", "memcpys", "memsets", "launch_calls", "launch_cpu",
                "api_calls", "streams", "starved_gaps", "latency_gaps", "spill_ops", "nested", "empty")


@dataclass(frozen=True)
class Options:
    range_pattern: str = steps_mod.DEFAULT_RANGE
    skip: int | None = None
    model: str | None = None
    ctx: int | None = None
    dtype: str | None = None
    gpu: str | None = None
    count_embedding: bool = False
    full_names: bool = False


@dataclass
class Analysis:
    trace: load.Trace
    skip: int
    steps: pl.DataFrame  # every step, warm-up included, with the anatomy (and floor) columns
    terms: pl.DataFrame
    facts: dict
    kernels: pl.DataFrame
    classes: pl.DataFrame
    api: pl.DataFrame
    # What replay and plots need beyond the tables: every step's GPU ops (from anatomy.attribute, `op` indexes
    # `gpu`) and API calls, the trace's GPU ops and strings, the floor inputs and the device name.
    ops: pl.DataFrame
    calls: pl.DataFrame
    gpu: pl.DataFrame
    strings: pl.DataFrame
    floor: floor_mod.Floor | None
    device_name: str | None
    notes: list = field(default_factory=list)


def _device(ops: pl.DataFrame, gpu: pl.DataFrame, info: pl.DataFrame) -> tuple[str | None, int | None]:
    """Name and bandwidth of the device that ran most of the steps' work, from TARGET_INFO_GPU."""
    if ops.is_empty() or info.is_empty():
        return None, None
    device = gpu["deviceId"].gather(ops["op"]).mode().sort()[0]
    row = info.filter(pl.col("id") == device)
    if row.is_empty():
        row = info.head(1)
    return row["name"][0] or None, row["memoryBandwidth"][0]


def analyze(path: Path, options: Options, progress: Callable[[str], None] = lambda _: None) -> Analysis:
    trace = load.open_trace(path)
    meta = trace.meta
    notes = []
    progress(f"reading {trace.path}")
    steps = steps_mod.find_steps(load.read_ranges(trace), options.range_pattern)
    if options.skip is None:
        skip, why = steps_mod.default_skip(steps, meta)
        notes.append(f"skipping the first {skip} steps of each thread as warm-up ({why}); --skip N to change")
    else:
        skip = options.skip
    steps = steps_mod.mark_warmup(steps, skip)
    calls = load.read_api_calls(trace, steps["globalTid"].unique().to_list())
    gpu = load.read_gpu_ops(trace)
    progress(f"attributing {steps.height} steps, {gpu.height} GPU ops, {calls.height} API calls")

    table, ops, step_calls = anatomy.attribute(steps, calls, gpu)
    del calls  # the largest frame; step_calls keeps the calls that matter

    device_name, device_bw = _device(ops, gpu, load.read_gpu_info(trace))
    floor = floor_mod.floor_model(meta, model=options.model, dtype=options.dtype,
                                  count_embedding=options.count_embedding, gpu=options.gpu,
                                  device_name=device_name, device_bytes_per_s=device_bw)
    if floor is None:
        notes.append("no floor: the trace has no gapprof metadata; pass --model and --ctx (and --gpu if needed)")
    else:
        context = floor_mod.step_context(table, meta, options.ctx, skip)
        if context is None:
            raise GapprofError("--ctx is needed for the floor: the trace has no capture metadata with the context "
                               "length (pass the context at the first measured step)")
        if options.ctx is not None:
            notes.append(f"--ctx {options.ctx} is the context at the first measured step, +1 each step after")
        table = floor_mod.apply_floor(table, floor, context)
        notes.append(floor.convention)

    table = table.select(*(c for c in STEP_COLUMNS if c in table.columns))
    measured = table.filter(~pl.col("warmup"))
    measured_ops = ops.filter(pl.col("step").is_in(measured["step"].implode()))
    strings = load.read_strings(trace)
    by_kernel, by_class = kernels.kernel_tables(measured_ops, gpu, strings, measured.height,
                                                int(measured["busy"].sum()), options.full_names)
    measured_calls = step_calls.filter(pl.col("step").is_in(measured["step"].implode()))
    facts = summary.facts(table, measured, floor, meta)
    facts["GPU ops not launched inside any step"] = gpu.height - ops.height
    return Analysis(trace=trace, skip=skip, steps=table, terms=summary.term_table(measured), facts=facts,
                    kernels=by_kernel, classes=by_class, api=api.api_table(measured_calls, strings, measured.height),
                    ops=ops, calls=step_calls, gpu=gpu, strings=strings, floor=floor, device_name=device_name,
                    notes=notes)
