"""Decode steps found from a trace's own GPU work, for programs that mark none.

Batch-1 decode repeats one sequence of GPU work per token. The decode thread is the thread whose API calls
launched the most GPU ops. The ops it launched, in launch order (a graph launch's nodes in their GPU order), and
its host waits (a *Synchronize call or a synchronous copy, launching nothing) form a sequence of tokens: an op's
token hashes its launch call's API name with the op's kind and name (kernel name, copy direction, graph), a
wait's its API name. The period P is the shift under which the sequence matches itself at the largest share of
positions (the smallest such P: multiples of P match as well), found by analysis.periodicity. Decode is each run
of positions that match P positions on (a kernel variant that changes per token tolerated, see
analysis.periodicity), at least MIN_PERIODS periods long; prefill, warm-up, compilation and graph capture do not
repeat the sequence (other kernels, other names, no replay) and fall outside every run, and a second generate()
call starts a new run after its prefill. The run that ran the most GPU ops sets the pattern; every run holding it
is cut into periods at the same place, its anchor: right after the host's wait for the token (the wait after
which the GPU idled longest, where a period has several), else before the op the GPU idled longest for among the
first ops of their launch calls (a graph replay's nodes share one call and one step). A run's positions before
its first anchor and after its last whole period, and runs of another pattern, are left out and counted.

Two step definitions keep wall = busy + starved + latency + head + tail exact (analysis.anatomy):
- host-synced steps, where the host waits for each token (a wait in the pattern, and most periods' first launch
  starts after the previous period's GPU work ended: Hugging Face generate(), gapprof's runtimes): a step is the
  CPU range on the decode thread from the end of the call before its anchor (the previous token's wait; for a
  run's first period, the prefill's, else the anchor call's start) to the end of its period's last call, the wait
  that gives the host its token. Steps tile each run and the anatomy applies unchanged: head is the host's time
  from the previous token to the first GPU work, tail from the last GPU work to the token on the host.
- GPU-timeline steps, where the host does not wait (gpt-fast samples on the GPU; the CPU runs many tokens
  ahead, so a step's launch calls happen long before its GPU work): a step is one period of GPU work. Its ops
  are the ops launched by its period's calls; it runs from the end of the previous period's GPU work (its own
  first op's start for a run's first period) to the end of its own, so the GPU timeline of a run is tiled and
  every gap between two ops, the one between two periods too, lies inside exactly one step. The anatomy runs
  with `on_gpu`: the gap before a step's first op is an inter-op gap like any other, starved when the op's launch
  call began after the gap began, else latency; head and tail are 0 (no CPU range bounds such a step: the CPU
  time that delays the GPU shows as starved gaps, the rest overlaps GPU work). Every call of the decode thread
  from a period's anchor call to the next period's belongs to that step.

Refused in one line: a trace without periodic GPU work (NoDecodeSteps), and two threads whose launches of
comparable GPU work overlap in time (two decode loops interleaved). A trace cut mid-step leaves a partial period,
counted in the notes.
"""

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
from gapprof.analysis import periodicity
from gapprof.analysis.periodicity import MIN_PERIODS
from gapprof.analysis.readers.raw_trace import launch_keys

from gapprof.errors import GapprofError

# Periods the anchor is chosen from.
ANCHOR_PERIODS = 64
# A second thread launching at least this share of the decode thread's GPU ops, at the same time, is a second loop.
INTERLEAVED_SHARE = 0.25
# Calls after which the host holds the token: it waited for the GPU.
WAIT_CALL = r"Synchronize$|^cudaMemcpy$|^cuMemcpyDtoH$"
# The version suffix of runtime API names in an export (cudaLaunchKernel_v7000), as trace_schema.api_name drops it.
API_VERSION = r"_v\d+$"


class NoDecodeSteps(GapprofError):
    """The trace has no GPU work that repeats as decode does, or two decode loops interleave."""


@dataclass(frozen=True)
class DecodeSteps:
    """Steps found from the GPU work: the frame find_steps returns, and how they were found."""

    steps: pl.DataFrame  # step, globalTid, index, t0, t1, payload (index in its run), nested (0)
    calls: pl.DataFrame  # the decode thread's calls; with `step` for GPU-timeline steps
    on_gpu: bool  # GPU-timeline steps (the host does not wait for each token)
    anchor: str  # the call (and kernel) that starts each period
    period: int  # GPU ops and host waits of one period
    ops_per_step: int
    runs: int
    left_out: dict  # what -> GPU ops of the decode thread left out of the steps

    def notes(self, why: str) -> list[str]:
        definition = (
            "GPU-timeline steps: the host does not wait for each token, so a step is one period of GPU "
            "work, from the end of the previous period's to the end of its own (head and tail 0, every "
            "gap starved or latency by when its op was launched)"
            if self.on_gpu
            else "host-synced steps: the host waits for each token, so a step runs from the end of one "
            "token's wait to the end of the next"
        )
        left = ", ".join(f"{n:,} {what}" for what, n in self.left_out.items() if n) or "nothing"
        found = (
            f"steps found from the trace's GPU work ({why}): {self.steps.height} decode steps in {self.runs} "
            f"run(s) of one repeating sequence of {self.period:,} GPU ops and host waits ({self.ops_per_step:,} "
            f"GPU ops) on the thread that launched the most work, each period anchored at {self.anchor}; "
            f"{definition}"
        )
        return [found, f"GPU ops of the decode thread left out of the found steps: {left}"]


def _launches(calls: pl.DataFrame, gpu: pl.DataFrame) -> pl.DataFrame:
    """Every GPU op with its launching call (`call` indexes `calls`), the runtime call where both APIs claim it."""
    call_key, op_key = launch_keys(calls)
    keyed = (
        calls.lazy()
        .with_row_index("call")
        .select("call", "globalTid", "source", "nameId", call_key, call_start="start", call_end="end")
    )
    ops = (
        gpu.lazy()
        .select("start", "end", "kind", "shortName", "copyKind", "graphExecId", op_key)
        .with_row_index("op")
        .join(keyed, on="launch", how="inner")
        .collect()
    )
    if ops["op"].n_unique() < ops.height:
        ops = ops.sort("source").unique("op", keep="first")
    return ops


def _decode_thread(ops: pl.DataFrame) -> int:
    """The thread that launched the most GPU ops; refused where another launched comparable work meanwhile."""
    if ops.is_empty():
        raise NoDecodeSteps("no periodic decode work found: no GPU op has a launch call in the trace")
    threads = (
        ops.group_by("globalTid")
        .agg(n=pl.len(), first=pl.col("call_start").min(), last=pl.col("call_start").max())
        .sort("n", "globalTid", descending=[True, False])
    )
    main = threads.row(0, named=True)
    rivals = threads.slice(1).filter(
        (pl.col("n") >= INTERLEAVED_SHARE * main["n"])
        & (pl.col("first") < main["last"])
        & (main["first"] < pl.col("last"))
    )
    if not rivals.is_empty():
        rival = rivals.row(0, named=True)
        raise NoDecodeSteps(
            f"two decode loops interleave: threads {main['globalTid']} and {rival['globalTid']} "
            f"launch {main['n']:,} and {rival['n']:,} GPU ops over the same time; steps cannot be "
            "found from the GPU work (mark them, --range)"
        )
    return main["globalTid"]


def _sequence(calls: pl.DataFrame, ops: pl.DataFrame, strings: pl.DataFrame, thread: int) -> pl.DataFrame:
    """The GPU ops the decode thread launched and its waits (n_ops 0), in launch order: position `i`, token `code`
    (a hash of the launch call's name and the op's kind and name), the op's GPU span (g0, g1) and its call's."""
    launched = (
        ops.lazy()
        .filter(pl.col("globalTid") == thread)
        .select(
            "call",
            "call_start",
            "call_end",
            "nameId",
            "kind",
            "shortName",
            "copyKind",
            "graphExecId",
            g0="start",
            g1="end",
            n_ops=pl.lit(1, pl.UInt32),
        )
    )
    wait_names = strings.lazy().filter(pl.col("value").str.replace(API_VERSION, "").str.contains(WAIT_CALL))
    waits = (
        calls.lazy()
        .with_row_index("call")
        .filter(pl.col("globalTid") == thread)
        .join(wait_names.select(nameId="id"), on="nameId", how="semi")
        .join(launched.select("call"), on="call", how="anti")
        .select("call", "nameId", call_start="start", call_end="end", n_ops=pl.lit(0, pl.UInt32))
    )
    token = pl.struct("nameId", "kind", "shortName", "copyKind", "graphExecId").hash()
    # One thread's calls never start in the same ns, so a call's start orders the calls and g0 its ops.
    return (
        pl.concat([launched, waits], how="diagonal_relaxed")
        .with_columns(code=token)
        .drop("call", "copyKind", "graphExecId")
        .sort("call_start", "g0")
        .with_row_index("i")
        .with_columns(wait=pl.col("n_ops") == 0, opens=pl.col("call_start").diff().fill_null(1) != 0)
        .collect()
    )


def _label(op: dict, strings: pl.DataFrame) -> str:
    """The launch call's name, with the kernel's where the op is one: cudaLaunchKernel embedding_kernel."""
    text = dict(strings.filter(pl.col("id").is_in([op["nameId"], op.get("shortName")])).iter_rows())
    call = re.sub(API_VERSION, "", text.get(op["nameId"], "an unnamed call"))
    return f"{call} {text[op['shortName']]}" if op.get("kind") == "kernel" and op["shortName"] in text else call


def _anchor_offset(sequence: pl.DataFrame, start: int, periods: int, period: int) -> int:
    """Where, in the pattern starting at `start`, a step begins: after the host's wait for the token, else before
    the op the GPU idled longest for (median over the run's first ANCHOR_PERIODS periods)."""
    block = sequence.slice(start, min(periods, ANCHOR_PERIODS) * period).with_columns(
        idle=pl.col("g0") - pl.col("g1").cum_max().shift(1), offset=(pl.col("i") - start) % period
    )
    waits = block.head(period).filter("wait")["offset"]
    # A graph launch's nodes share one call, which a step boundary cannot split: only a call's first op anchors.
    candidates = ((waits + 1) % period).unique() if len(waits) else block.head(period).filter("opens")["offset"]
    idle = (
        block.filter(pl.col("offset").is_in(candidates.implode()))
        .group_by("offset")
        .agg(pl.col("idle").median())
        .sort("idle", "offset", descending=[True, False], nulls_last=True)
    )
    return int(idle["offset"][0])


def _periods(
    sequence: pl.DataFrame,
    runs: list[tuple[int, int]],
    pattern: np.ndarray,
    ops_before: np.ndarray,
    after_every_call: int,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every whole period of the runs holding `pattern`, from its anchor: its run, its first call's start (c0), the
    start of the call after it (c_end), the end of its last call and of the call before it, its GPU span and op
    count; and each period's positions (one row a period)."""
    codes, period = sequence["code"].to_numpy(), len(pattern)
    firsts, runs_of = [], []
    for number, (start, end) in enumerate(runs):
        aligned = periodicity.align(codes, pattern, start, end)
        if aligned is not None:  # else periodic work of another pattern: no decode step of this loop
            whole = (end - aligned) // period
            firsts.append(aligned + period * np.arange(whole))
            runs_of.append(np.full(whole, number))
    first = np.concatenate(firsts)
    members = first[:, None] + np.arange(period)
    call_start, call_end = sequence["call_start"].to_numpy(), sequence["call_end"].to_numpy()
    after = first + period
    periods = pl.DataFrame(
        {
            "run": np.concatenate(runs_of),
            "c0": call_start[first],
            "last_end": call_end[after - 1],
            "prior_end": np.where(first > 0, call_end[first - 1], call_start[first]),
            "c_end": np.where(after < len(codes), call_start[np.minimum(after, len(codes) - 1)], after_every_call),
            # Waits launch nothing: their null spans take no part in the period's.
            "g0": sequence["g0"].fill_null(np.iinfo(np.int64).max).to_numpy()[members].min(axis=1),
            "g1": sequence["g1"].fill_null(np.iinfo(np.int64).min).to_numpy()[members].max(axis=1),
            "n_ops": ops_before[after] - ops_before[first],
        }
    )
    return (
        periods.with_row_index("period").with_columns(
            next_c0=pl.col("c0").shift(-1).over("run"), prior_g1=pl.col("g1").shift(1).over("run")
        ),
        members,
    )


def find_decode_steps(calls: pl.DataFrame, gpu: pl.DataFrame, strings: pl.DataFrame) -> DecodeSteps:
    """Decode steps from the repeating GPU work of the decode thread (see the module docstring)."""
    ops = _launches(calls, gpu)
    thread = _decode_thread(ops)
    sequence = _sequence(calls, ops, strings, thread)
    codes = sequence["code"].to_numpy()
    period = periodicity.period(codes) if len(codes) >= MIN_PERIODS else None
    runs = periodicity.repeating_runs(codes, period) if period else []
    if not runs:
        raise NoDecodeSteps(
            f"no periodic decode work found: the {len(codes):,} GPU ops and host waits of the thread "
            f"that launched the most GPU work repeat no sequence {MIN_PERIODS} times in a row"
        )
    # The decode loop is the run that ran the most GPU work (a two-pass capture repeats it graph-level first).
    ops_before = np.concatenate([[0], np.cumsum(sequence["n_ops"].to_numpy())])
    main_start, main_end = max(runs, key=lambda run: ops_before[run[1]] - ops_before[run[0]])
    offset = _anchor_offset(sequence, main_start, (main_end - main_start) // period, period)
    pattern = codes[main_start + offset : main_start + offset + period]

    periods, members = _periods(sequence, runs, pattern, ops_before, int(calls["end"].max()) + 1)
    host_waits = bool(sequence["wait"].to_numpy()[members].any())
    waited = periods.filter(pl.col("next_c0").is_not_null()).select((pl.col("next_c0") >= pl.col("g1")).mean())
    on_gpu = not (host_waits and (waited.item() or 0) >= 0.5)
    if on_gpu:
        chosen = periods.with_columns(t0=pl.col("prior_g1").fill_null(pl.col("g0")), t1=pl.col("g1"))
    else:
        # From the end of the call before the anchor (the previous token's wait) to the end of the period's wait.
        chosen = periods.with_columns(t0=pl.col("prior_end"), t1=pl.col("last_end"))
    steps = (
        chosen.sort("t0")
        .with_row_index("step")
        .select(
            pl.col("step").cast(pl.Int64),
            pl.lit(thread, pl.Int64).alias("globalTid"),
            index=pl.int_range(pl.len(), dtype=pl.Int64),
            t0="t0",
            t1="t1",
            payload=pl.int_range(pl.len(), dtype=pl.Int64).over("run"),
            nested=pl.lit(0, pl.Int64),
            period="period",
        )
    )
    own_calls = calls.filter(pl.col("globalTid") == thread)
    if on_gpu:
        bounds = chosen.join(steps.select("period", "step"), on="period").select("step", "c0", "c_end").sort("c0")
        own_calls = (
            own_calls.sort("start")
            .join_asof(bounds, left_on="start", right_on="c0", strategy="backward")
            .filter(pl.col("start") < pl.col("c_end"))
            .drop("c0", "c_end")
        )
    before, after_last = int(ops_before[members.min()]), int(ops_before[-1] - ops_before[members.max() + 1])
    left_out = {
        "before the first decode period (prefill, warm-up, compilation, graph capture)": before,
        "between decode runs (another generate() call's prefill, partial periods)": int(ops_before[-1])
        - int(periods["n_ops"].sum())
        - before
        - after_last,
        "after the last decode period (a step cut off by the end of the trace, other work)": after_last,
    }
    return DecodeSteps(
        steps=steps.drop("period"),
        calls=own_calls,
        on_gpu=on_gpu,
        anchor=_label(sequence.row(main_start + offset, named=True), strings),
        period=period,
        ops_per_step=int(chosen["n_ops"].mode().sort()[0]),
        runs=chosen["run"].n_unique(),
        left_out=left_out,
    )
