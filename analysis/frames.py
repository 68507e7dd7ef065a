"""One trace read once into the polars frames every analysis works on: I/O happens here and nowhere after.

The first of READERS that claims the path reads it into a RawTrace (analysis.readers): an nsys export or
gapprof CUPTI trace, or a torch.profiler Chrome trace, in the same frames. `read_trace` does all the reading;
`select_steps` then takes the steps from what was read, without I/O, so a second step pattern over one trace (the
graph-level pass of a two-pass capture) reads nothing again. Steps are the NVTX ranges matching the step pattern,
or found from the GPU work by analysis.step_finding (on request, or where no range matches the default pattern),
warm-up marked; calls are the API calls of the threads that run steps (the trace as read keeps every thread's);
gpu holds every kernel, memcpy and memset; ranges keeps every NVTX range (module ranges too).
The frames pass analysis.trace_checks before any analysis sees them.
"""

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from gapprof.analysis import trace_checks
from gapprof.analysis.readers import kineto, nsys
from gapprof.analysis.readers.raw_trace import NVTX, RawTrace
from gapprof.analysis.step_finding import DecodeSteps, NoDecodeSteps, find_decode_steps
from gapprof.analysis.steps import NoStepRanges, default_skip, find_steps, left_out_prefills, mark_warmup

from gapprof.errors import GapprofError
from gapprof.input_files import regular_file
from gapprof.nvtx_names import STEP_MESSAGE

# Asked in this order; each claims by content where the content decides (a Chrome trace is JSON, an export SQLite).
READERS = (kineto, nsys)
PREFILLS_LEFT_OUT = "prefill ranges (not steps, left out)"
FOUND_LEFT_OUT = "GPU ops of the decode thread left out of the found steps"


@dataclass(frozen=True)
class TraceFrames:
    """A trace as read, before any step pattern chose its steps."""

    trace: RawTrace  # path, tables present, capture metadata and the frames below
    notes: tuple[str, ...]  # on the trace itself, whichever steps are chosen

    @property
    def ranges(self) -> pl.DataFrame:  # every NVTX range
        return self.trace.ranges

    @property
    def calls(self) -> pl.DataFrame:  # runtime and driver API calls of every thread
        return self.trace.calls

    @property
    def gpu(self) -> pl.DataFrame:  # kernels, memcpys, memsets
        return self.trace.gpu

    @property
    def strings(self) -> pl.DataFrame:
        return self.trace.strings

    @property
    def gpu_info(self) -> pl.DataFrame:  # TARGET_INFO_GPU: name and memory bandwidth per device
        return self.trace.gpu_info

    @property
    def open_ranges(self) -> int:
        return self.trace.open_ranges


@dataclass(frozen=True)
class Frames:
    """The steps one pattern chose from a trace as read, checked, with their threads' calls."""

    read: TraceFrames
    steps: pl.DataFrame  # the step ranges, with `warmup`
    skip: int  # warm-up steps per thread
    calls: pl.DataFrame  # runtime and driver API calls on the step threads
    notes: tuple[str, ...]
    checks: dict  # trace_checks counts, facts label -> count
    on_gpu: bool = False  # GPU-timeline steps (analysis.step_finding): calls carry their step

    @property
    def trace(self) -> RawTrace:
        return self.read.trace

    @property
    def ranges(self) -> pl.DataFrame:
        return self.read.ranges

    @property
    def gpu(self) -> pl.DataFrame:
        return self.read.gpu

    @property
    def strings(self) -> pl.DataFrame:
        return self.read.strings

    @property
    def gpu_info(self) -> pl.DataFrame:
        return self.read.gpu_info

    @property
    def meta(self) -> dict:
        return self.read.trace.meta


def read_trace(path, progress: Callable[[str], None] = lambda _: None) -> TraceFrames:
    """Read every frame of the trace at `path` (a .sqlite or .sqlite.xz, a .nsys-rep with its export beside it, or
    a torch.profiler .json or .json.gz) with the first of READERS that claims it."""
    path = regular_file(path)  # before any reader opens it: a FIFO would block
    reader = next((reader for reader in READERS if reader.claims(path)), None)
    if reader is None:
        raise GapprofError(f"{path}: {nsys.NOT_SQLITE}")
    trace = reader.read(path, progress)
    notes = list(trace.notes)
    if trace.unparsable_meta:
        notes.append(f"capture metadata left out, not JSON: {', '.join(trace.unparsable_meta)}")
    return TraceFrames(trace=trace, notes=tuple(notes))


def _found_steps(read: TraceFrames, unmatched: NoStepRanges | None = None) -> DecodeSteps:
    """analysis.step_finding's steps; where none are found, the ranges that did not match are named too."""
    try:
        return find_decode_steps(read.calls, read.gpu, read.strings)
    except NoDecodeSteps as error:
        if unmatched is None:
            raise
        if NVTX not in read.trace.tables:  # captured without NVTX: nothing could have marked the steps
            unmatched = f"no {NVTX} table to take steps from (capture with `nsys profile -t nvtx` to mark them)"
        raise NoStepRanges(f"{unmatched}; {error}") from None


def select_steps(
    read: TraceFrames, range_pattern: str = STEP_MESSAGE, skip: int | None = None, find: bool = False
) -> Frames:
    """The frames of the steps matching `range_pattern` (found from the GPU work with `find`, or where no range
    matches the default pattern), the first `skip` of each thread warm-up (None: steps.default_skip), checked by
    trace_checks; no I/O."""
    decode, notes = None, list(read.notes)
    if find:
        decode, reason = _found_steps(read), "--steps auto"
    else:
        try:
            found = find_steps(read.ranges, range_pattern)
        except NoStepRanges as unmatched:
            if range_pattern != STEP_MESSAGE:
                raise
            decode, reason = _found_steps(read, unmatched), f"no NVTX range matches --range {range_pattern!r}"
    if decode is not None:
        found = decode.steps
        notes += decode.notes(reason)
    if skip is None:
        skip, why = default_skip(found, read.trace.meta)
        notes.append(f"skipping the first {skip} steps of each thread as warm-up ({why}); --skip N to change")
    found = mark_warmup(found, skip)
    calls = (
        decode.calls
        if decode is not None
        else read.calls.filter(pl.col("globalTid").is_in(found["globalTid"].unique().implode()))
    )
    checks = trace_checks.check_frames(read.trace, read.ranges, found, calls, read.gpu, read.open_ranges)
    prefills = left_out_prefills(read.ranges, range_pattern)
    if prefills:
        checks[PREFILLS_LEFT_OUT] = prefills
        notes.append(
            f"{prefills} prefill ranges seen and left out: the steps are the ranges matching --range "
            f"{range_pattern!r} (--range prefill attributes the prefills)"
        )
    if decode is not None:
        checks[FOUND_LEFT_OUT] = sum(decode.left_out.values())
    return Frames(
        read=read,
        steps=found,
        skip=skip,
        calls=calls,
        notes=tuple(notes),
        checks=checks,
        on_gpu=decode is not None and decode.on_gpu,
    )


def read_frames(
    path,
    range_pattern: str = STEP_MESSAGE,
    skip: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
    find: bool = False,
) -> Frames:
    """read_trace, then select_steps."""
    return select_steps(read_trace(path, progress), range_pattern, skip, find)
