"""The step anatomy of a trace with its floor, and the tables `gapprof attribute` shows, one function each.

`attribute_frames(frames, options)` runs the anatomy (analysis.anatomy) over the frames and splits busy into floor
and excess (analysis.floor); the result keeps every step, warm-up included, with the ops and API calls that
belong to each step. The table functions read only that.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import polars as pl
from gapprof.analysis import anatomy, api, kernels, summary, trace_checks
from gapprof.analysis.floor import SOURCES, Floor, apply_floor, floor_model, step_context
from gapprof.analysis.frames import Frames, read_frames

from gapprof.errors import GapprofError
from gapprof.nvtx_names import STEP_MESSAGE

# Per-step table order: identity terms first, then the floor split, then what the step contained.
GRAPH_LEVEL_NOTE = (
    "graph-level trace: each CUDA graph execution is one GPU op (class cuda graph), its nodes not "
    "traced, so busy counts each graph's span, the gaps between its kernels included, and the "
    "kernel tables show graphs, not kernels; a node-level capture (--cuda-graph-trace node) gives "
    "each kernel at a higher profiling cost"
)
STEP_COLUMNS = (
    "step",
    "globalTid",
    "index",
    "payload",
    "warmup",
    "t0",
    "t1",
    "wall",
    "busy",
    "starved",
    "latency",
    "head",
    "tail",
    "ctx",
    "bytes",
    "bytes_unquantised",
    "floor",
    "excess",
    *(f"floor_{s}" for s in SOURCES),
    "spill",
    "overlap",
    "g0",
    "g1",
    "kernels",
    "memcpys",
    "memsets",
    "graphs",
    "launch_calls",
    "launch_cpu",
    "api_calls",
    "streams",
    "starved_gaps",
    "latency_gaps",
    "spill_ops",
    "nested",
    "empty",
)


@dataclass(frozen=True)
class Options:
    range_pattern: str = STEP_MESSAGE
    skip: int | None = None
    model: str | None = None
    ctx: int | None = None
    dtype: str | None = None
    gpu: str | None = None
    count_embedding: bool = False
    quant: str | None = None  # gapprof.quant.METHODS: the floor's analytic estimate where the trace records none
    quant_lm_head: bool = False
    find_steps: bool = False  # steps from the GPU work (analysis.step_finding) even where ranges match


@dataclass(frozen=True)
class Attribution:
    frames: Frames
    steps: pl.DataFrame  # every step, warm-up included, with the anatomy (and floor) columns
    ops: pl.DataFrame  # every step's GPU ops (anatomy.step_anatomy); `op` indexes frames.gpu
    calls: pl.DataFrame  # every step's API calls
    floor: Floor | None
    device_name: str | None
    notes: tuple[str, ...]

    @property
    def measured(self) -> pl.DataFrame:
        return self.steps.filter(~pl.col("warmup"))

    def measured_only(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of a per-step frame (ops, calls) that belong to measured steps."""
        return frame.filter(pl.col("step").is_in(self.measured["step"].implode()))

    @cached_property
    def per_kernel(self) -> pl.DataFrame:
        """The measured steps' ops per distinct kernel (kernels.per_kernel), aggregated once for the kernel and
        class tables and the findings that read them."""
        return kernels.per_kernel(self.measured_only(self.ops), self.frames.gpu)


def _device(ops: pl.DataFrame, gpu: pl.DataFrame, info: pl.DataFrame) -> tuple[str | None, int | None]:
    """Name and bandwidth of the device that ran most of the steps' work, from TARGET_INFO_GPU."""
    if ops.is_empty() or info.is_empty():
        return None, None
    device = gpu["deviceId"].gather(ops["op"]).mode().sort()[0]
    row = info.filter(pl.col("id") == device)
    if row.is_empty():
        row = info.head(1)
    return row["name"][0] or None, row["memoryBandwidth"][0]


def attribute_frames(
    frames: Frames, options: Options = Options(), progress: Callable[[str], None] = lambda _: None
) -> Attribution:
    steps, meta, notes = frames.steps, frames.meta, list(frames.notes)
    progress(f"attributing {steps.height} steps, {frames.gpu.height} GPU ops, {frames.calls.height} API calls")
    table, ops, step_calls = anatomy.step_anatomy(steps, frames.calls, frames.gpu, frames.on_gpu)
    trace_checks.refuse_without_kernels(
        frames.trace, table.filter(~pl.col("warmup")), int((frames.gpu["kind"] == "kernel").sum())
    )

    device_name, device_bw = _device(ops, frames.gpu, frames.gpu_info)
    floor = floor_model(
        meta,
        model=options.model,
        dtype=options.dtype,
        count_embedding=options.count_embedding,
        gpu=options.gpu,
        device_name=device_name,
        device_bytes_per_s=device_bw,
        quant=options.quant,
        quant_lm_head=options.quant_lm_head,
    )
    if floor is None:
        notes.append("no floor: the trace has no gapprof metadata; pass --model and --ctx (and --gpu if needed)")
    else:
        context = step_context(table, meta, options.ctx, frames.skip)
        if context is None:
            raise GapprofError(
                "--ctx is needed for the floor: the trace has no capture metadata with the context "
                "length (pass the context at the first measured step)"
            )
        if options.ctx is not None:
            notes.append(f"--ctx {options.ctx} is the context at the first measured step, +1 each step after")
        table = apply_floor(table, floor, context)
        notes.append(floor.convention)
    if table["graphs"].sum():
        notes.append(GRAPH_LEVEL_NOTE)
    uneven, common = trace_checks.uneven_steps(table.filter(~pl.col("warmup")))
    if uneven:
        notes.append(
            f"{uneven} measured steps ran another number of GPU ops than the most common step ({common:,}): lost GPU "
            "records (their busy time is short) or steps that did other work; --per-step shows which"
        )
    table = table.select(*(c for c in STEP_COLUMNS if c in table.columns))
    return Attribution(
        frames=frames, steps=table, ops=ops, calls=step_calls, floor=floor, device_name=device_name, notes=tuple(notes)
    )


def analyze(path, options: Options = Options(), progress: Callable[[str], None] = lambda _: None) -> Attribution:
    """Read the trace at `path` and attribute it."""
    return attribute_frames(
        read_frames(path, options.range_pattern, options.skip, progress, options.find_steps), options, progress
    )


def summary_table(result: Attribution) -> pl.DataFrame:
    return summary.term_table(result.measured)


def facts_table(result: Attribution) -> dict:
    facts = summary.facts(result.steps, result.measured, result.floor, result.frames.meta)
    facts["GPU ops not launched inside any step"] = result.frames.gpu.height - result.ops.height
    uneven, _ = trace_checks.uneven_steps(result.measured)
    return facts | result.frames.checks | ({trace_checks.UNEVEN_STEPS: uneven} if uneven else {})


def facts_frame(facts: dict) -> pl.DataFrame:
    """A facts table typed: key, value (a number, Float64; null for words) and text (the words, null for a
    number)."""

    def is_number(value) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    return pl.DataFrame(
        {
            "key": list(facts),
            "value": [float(v) if is_number(v) else None for v in facts.values()],
            "text": [None if v is None or is_number(v) else str(v) for v in facts.values()],
        },
        schema={"key": pl.String, "value": pl.Float64, "text": pl.String},
    )


def _busy_total(result: Attribution) -> int:
    return int(result.measured["busy"].sum())


def kernel_table(result: Attribution, full_names: bool = False) -> pl.DataFrame:
    return kernels.kernel_table(
        result.per_kernel, result.frames.strings, result.measured.height, _busy_total(result), full_names
    )


def class_table(result: Attribution) -> pl.DataFrame:
    return kernels.class_table(result.per_kernel, result.frames.strings, result.measured.height, _busy_total(result))


def api_table(result: Attribution) -> pl.DataFrame:
    return api.api_table(result.measured_only(result.calls), result.frames.strings, result.measured.height)
