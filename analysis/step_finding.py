"""Decode steps found from a trace's own GPU work, for programs that mark none.

Batch-1 decode repeats one sequence of GPU work per token. The decode thread is the thread whose API calls
launched the most GPU ops. Its calls that launched work, and its host waits (a *Synchronize call or a
synchronous copy), in start order, form a sequence of tokens: a launch call's token is its API name with the
kind, name and count of the ops it launched (a cudaGraphLaunch with its graph's node count, a kernel with its
name, a copy with its direction), a wait's token its API name. The period P is the shift under which the
sequence matches itself at the largest share of positions (the smallest such P: multiples of P match as well);
its candidates are the distances between consecutive occurrences of a token. Decode is each run of positions
that match P positions on, at least MIN_PERIODS periods long; prefill, warm-up, compilation and graph capture do
not repeat the sequence (other kernels, other names, no replay) and fall outside every run, and a second
generate() call starts a new run after its prefill. Every run is cut into periods at the same place of the
pattern, its anchor: right after the host's wait for the token (the wait after which the GPU idled longest,
where a period has several), else before the op the GPU idled longest for. A run's positions before its first
anchor and after its last whole period are partial periods, left out and counted.

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
from dataclasses import dataclass

import numpy as np
import polars as pl

from gapprof.analysis.load import GLOBAL_PID
from gapprof.errors import GapprofError

# Fewer whole repeats than this is no decode loop (a warm-up pair, a layer pattern inside a prefill).
MIN_PERIODS = 3
# Shifts tried as the period: the most frequent distances between a token's consecutive occurrences.
CANDIDATE_PERIODS = 64
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
    steps: pl.DataFrame   # step, globalTid, index, t0, t1, payload (index in its run), nested (0)
    calls: pl.DataFrame   # the decode thread's calls; with `step` for GPU-timeline steps
    on_gpu: bool          # GPU-timeline steps (the host does not wait for each token)
    anchor: str           # the call (and kernel) that starts each period
    calls_per_step: int   # launch calls and waits of one period
    ops_per_step: int
    runs: int
    left_out: dict        # what -> GPU ops of the decode thread left out of the steps

    def notes(self, why: str) -> list[str]:
        definition = ("GPU-timeline steps: the host does not wait for each token, so a step is one period of GPU "
                      "work, from the end of the previous period's to the end of its own (head and tail 0, every "
                      "gap starved or latency by when its op was launched)" if self.on_gpu else
                      "host-synced steps: the host waits for each token, so a step runs from the end of one "
                      "token's wait to the end of the next")
        left = ", ".join(f"{n:,} {what}" for what, n in self.left_out.items() if n) or "nothing"
        return [f"steps found from the trace's GPU work ({why}): {self.steps.height} decode steps in {self.runs} "
                f"run(s) of one repeating sequence of {self.calls_per_step} launch calls and waits "
                f"({self.ops_per_step:,} GPU ops) on the thread that launched the most work, each period anchored at "
                f"{self.anchor}; {definition}",
                f"GPU ops of the decode thread left out of the found steps: {left}"]


def _launches(calls: pl.DataFrame, gpu: pl.DataFrame) -> pl.DataFrame:
    """Every GPU op with its launching call (`call` indexes `calls`), the runtime call where both APIs claim it."""
    keyed = calls.with_row_index("call").select("call", "globalTid", "correlationId", "source", "nameId",
                                                call_start="start", call_end="end", globalPid=GLOBAL_PID)
    ops = (gpu.with_row_index("op").join(keyed, on=["globalPid", "correlationId"], how="inner"))
    if ops["op"].n_unique() < ops.height:
        ops = ops.sort("source").unique("op", keep="first")
    return ops


def _decode_thread(ops: pl.DataFrame) -> int:
    """The thread that launched the most GPU ops; refused where another launched comparable work meanwhile."""
    if ops.is_empty():
        raise NoDecodeSteps("no periodic decode work found: no GPU op has a launch call in the trace")
    threads = (ops.group_by("globalTid")
               .agg(n=pl.len(), first=pl.col("call_start").min(), last=pl.col("call_start").max())
               .sort("n", "globalTid", descending=[True, False]))
    main = threads.row(0, named=True)
    rivals = threads.slice(1).filter((pl.col("n") >= INTERLEAVED_SHARE * main["n"])
                                     & (pl.col("first") < main["last"]) & (main["first"] < pl.col("last")))
    if not rivals.is_empty():
        rival = rivals.row(0, named=True)
        raise NoDecodeSteps(f"two decode loops interleave: threads {main['globalTid']} and {rival['globalTid']} "
                            f"launch {main['n']:,} and {rival['n']:,} GPU ops over the same time; steps cannot be "
                            "found from the GPU work (mark them, --range)")
    return main["globalTid"]


def _sequence(calls: pl.DataFrame, ops: pl.DataFrame, strings: pl.DataFrame, thread: int) -> pl.DataFrame:
    """The decode thread's launch calls and waits in start order: position `i`, integer token `code`, `wait`,
    the GPU span (g0, g1) and op count of what each launched, and its name for the notes."""
    names = strings.select(nameId="id", name=pl.col("value").str.replace(API_VERSION, ""))
    kernel_names = strings.select(shortName="id", kernel="value")
    launched = (ops.filter(pl.col("globalTid") == thread).sort("call", "start")
                .group_by("call", maintain_order=True)
                .agg(pl.col("call_start", "call_end", "nameId", "kind", "shortName", "copyKind").first(),
                     graph=pl.col("graphExecId").first(), n_ops=pl.len(),
                     g0=pl.col("start").min(), g1=pl.col("end").max()))
    own = calls.with_row_index("call").filter(pl.col("globalTid") == thread)
    waits = (own.join(names, on="nameId").filter(pl.col("name").str.contains(WAIT_CALL))
             .join(launched.select("call"), on="call", how="anti")
             .select("call", "nameId", call_start="start", call_end="end", n_ops=pl.lit(0, pl.UInt32)))
    sequence = (pl.concat([launched, waits], how="diagonal_relaxed").sort("call_start", "call")
                .join(names, on="nameId", how="left", maintain_order="left")
                .join(kernel_names, on="shortName", how="left", maintain_order="left")
                .with_columns(wait=pl.col("name").str.contains(WAIT_CALL).fill_null(False),
                              label=pl.when(pl.col("n_ops") > 1)
                              .then(pl.format("{} ({} GPU ops)", "name", "n_ops"))
                              .when(pl.col("kernel").is_not_null())
                              .then(pl.format("{} {}", "name", "kernel")).otherwise(pl.col("name")))
                .with_row_index("i"))
    token = pl.struct("nameId", "kind", "shortName", "copyKind", "graph", "n_ops")
    return sequence.with_columns(code=token.rank("dense").cast(pl.Int64))


def _period(codes: np.ndarray) -> int | None:
    """The shift under which the sequence matches itself at the largest share of positions, the smallest on ties."""
    n = len(codes)
    positions = pl.DataFrame({"code": codes}).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
    distances = (positions.select(d=pl.col("i") - pl.col("i").shift(1).over("code")).drop_nulls()
                 .filter(pl.col("d") <= n // MIN_PERIODS)["d"].value_counts(sort=True).head(CANDIDATE_PERIODS))
    best, best_share = None, -1.0
    for shift in sorted(distances["d"].to_list()):
        share = float(np.mean(codes[shift:] == codes[:-shift]))
        if share > best_share:
            best, best_share = shift, share
    return best


def _runs(codes: np.ndarray, period: int) -> list[tuple[int, int]]:
    """[start, end) of each stretch at least MIN_PERIODS periods long where the sequence repeats `period` on."""
    match = pl.Series(codes[:-period] == codes[period:])
    runs = (pl.DataFrame({"match": match}).with_row_index("i")
            .with_columns(run=(pl.col("match") != pl.col("match").shift(1)).fill_null(True).cum_sum())
            .filter(pl.col("match")).group_by("run").agg(a=pl.col("i").min(), b=pl.col("i").max())
            .with_columns(end=pl.col("b") + 1 + period)
            .filter(pl.col("end") - pl.col("a") >= MIN_PERIODS * period).sort("a"))
    return list(zip(runs["a"].to_list(), runs["end"].to_list()))


def _anchor_offset(sequence: pl.DataFrame, start: int, periods: int, period: int) -> int:
    """Where, in the pattern starting at `start`, a step begins: after the host's wait for the token, else before
    the op the GPU idled longest for (median over the run's periods)."""
    block = (sequence.with_columns(idle=pl.col("g0") - pl.col("g1").cum_max().shift(1))
             .slice(start, periods * period).with_columns(offset=(pl.col("i") - start) % period))
    waits = block.head(period).filter("wait")["offset"]
    candidates = ((waits + 1) % period).unique() if len(waits) else block.head(period)["offset"]
    idle = (block.filter(pl.col("offset").is_in(candidates.implode())).group_by("offset")
            .agg(pl.col("idle").median()).sort("idle", "offset", descending=[True, False], nulls_last=True))
    return int(idle["offset"][0])


def _align(codes: np.ndarray, pattern: np.ndarray, start: int, end: int) -> int | None:
    """The first position of [start, end) where a whole `pattern` begins, None if none does."""
    period = len(pattern)
    for j in np.flatnonzero(codes[start:min(start + period, end - period + 1)] == pattern[0]) + start:
        if np.array_equal(codes[j:j + period], pattern):
            return int(j)
    return None


def find_decode_steps(calls: pl.DataFrame, gpu: pl.DataFrame, strings: pl.DataFrame) -> DecodeSteps:
    """Decode steps from the repeating GPU work of the decode thread (see the module docstring)."""
    ops = _launches(calls, gpu)
    thread = _decode_thread(ops)
    sequence = _sequence(calls, ops, strings, thread)
    codes = sequence["code"].to_numpy()
    period = _period(codes) if len(codes) >= MIN_PERIODS else None
    runs = _runs(codes, period) if period else []
    if not runs:
        raise NoDecodeSteps(f"no periodic decode work found: the {len(codes):,} launch calls and waits of the thread "
                            f"that launched the most GPU work repeat no sequence {MIN_PERIODS} times in a row")
    # The decode loop is the run that ran the most GPU work (a two-pass capture repeats it graph-level first).
    ops_before = np.concatenate([[0], np.cumsum(sequence["n_ops"].to_numpy())])
    main_start, main_end = max(runs, key=lambda run: ops_before[run[1]] - ops_before[run[0]])
    offset = _anchor_offset(sequence, main_start, (main_end - main_start) // period, period)
    pattern = codes[main_start + offset:main_start + offset + period]

    period_of = np.full(len(codes), -1, dtype=np.int64)
    run_of = np.full(len(codes), -1, dtype=np.int64)
    for number, (start, end) in enumerate(runs):
        first = _align(codes, pattern, start, end)
        if first is None:  # periodic work of another pattern: no decode step of this loop
            continue
        whole = (end - first) // period
        span = slice(first, first + whole * period)
        period_of[span] = period_of.max() + 1 + np.arange(whole * period) // period
        run_of[span] = number
    sequence = sequence.with_columns(period=pl.Series(period_of), run=pl.Series(run_of),
                                     prior_call_end=pl.col("call_end").shift(1),
                                     next_call_start=pl.col("call_start").shift(-1))
    periods = (sequence.filter(pl.col("period") >= 0).group_by("period", maintain_order=True)
               .agg(pl.col("run").first(), c0=pl.col("call_start").first(),
                    last_end=pl.col("call_end").last(), prior_end=pl.col("prior_call_end").first(),
                    c_end=pl.col("next_call_start").last(),
                    g0=pl.col("g0").min(), g1=pl.col("g1").max(), n_ops=pl.col("n_ops").sum())
               .with_columns(next_c0=pl.col("c0").shift(-1).over("run"), prior_g1=pl.col("g1").shift(1).over("run")))
    host_waits = bool(sequence.filter(pl.col("period") >= 0)["wait"].any())
    waited = periods.filter(pl.col("next_c0").is_not_null()).select((pl.col("next_c0") >= pl.col("g1")).mean())
    on_gpu = not (host_waits and (waited.item() or 0) >= 0.5)
    if on_gpu:
        chosen = periods.with_columns(t0=pl.col("prior_g1").fill_null(pl.col("g0")), t1=pl.col("g1"))
    else:
        # From the end of the call before the anchor (the previous token's wait) to the end of the period's wait.
        chosen = periods.with_columns(t0=pl.col("prior_end").fill_null(pl.col("c0")), t1=pl.col("last_end"))
    steps = (chosen.sort("t0").with_row_index("step")
             .select(pl.col("step").cast(pl.Int64), pl.lit(thread, pl.Int64).alias("globalTid"),
                     index=pl.int_range(pl.len(), dtype=pl.Int64),
                     t0="t0", t1="t1", payload=pl.int_range(pl.len(), dtype=pl.Int64).over("run"),
                     nested=pl.lit(0, pl.Int64), period="period"))
    own_calls = calls.filter(pl.col("globalTid") == thread)
    if on_gpu:
        bounds = (chosen.join(steps.select("period", "step"), on="period")
                  .select("step", "c0", pl.col("c_end").fill_null(own_calls["end"].max() + 1)).sort("c0"))
        own_calls = (own_calls.sort("start").join_asof(bounds, left_on="start", right_on="c0", strategy="backward")
                     .filter(pl.col("start") < pl.col("c_end")).drop("c0", "c_end"))
    in_steps = sequence.filter(pl.col("period") >= 0)
    first_i, last_i = int(in_steps["i"].min()), int(in_steps["i"].max())
    before = int(ops_before[first_i])
    after = int(ops_before[-1] - ops_before[last_i + 1])
    left_out = {"before the first decode period (prefill, warm-up, compilation, graph capture)": before,
                "between decode runs (another generate() call's prefill, partial periods)":
                    int(ops_before[-1]) - int(in_steps["n_ops"].sum()) - before - after,
                "after the last decode period (a step cut off by the end of the trace, other work)": after}
    anchor = sequence["label"][main_start + offset]
    return DecodeSteps(steps=steps.drop("period"), calls=own_calls, on_gpu=on_gpu, anchor=anchor,
                       calls_per_step=period, ops_per_step=int(chosen["n_ops"].mode().sort()[0]),
                       runs=chosen["run"].n_unique(),
                       left_out=left_out)
