"""Steps found from a trace's own GPU work (analysis.step_finding): synthetic decode loops whose every step is
known by construction, the refusals, the CLI, and every shipped marked trace with its step ranges removed."""

import dataclasses
import json
import re

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import SHIPPED_TRACES
from gapprof.analysis import attribution, frames
from gapprof.analysis.attribution import Options
from gapprof.analysis.steps import NoStepRanges
from synthetic import (
    PID,
    RUN_AHEAD,
    TraceBuilder,
    host_synced_decode,
    host_synced_step,
    run_ahead_decode,
    unmarked_prefill,
)

from gapprof import trace_schema as ts
from gapprof.cli import main
from gapprof.errors import GapprofError

TERMS = ["wall", "busy", "starved", "latency", "head", "tail"]
HOST_SYNCED_STEP = dict(wall=430, busy=260, starved=20, latency=40, head=100, tail=10)
LEFT_OUT = "GPU ops of the decode thread left out of the found steps"


def analyze(builder: TraceBuilder, path, **options) -> attribution.Attribution:
    return attribution.analyze(builder.write(path), Options(skip=0, **options))


def terms(result: attribution.Attribution) -> list[dict]:
    return result.steps.select(TERMS).to_dicts()


def test_host_synced_steps_run_from_one_tokens_wait_to_the_next(tmp_path):
    b = TraceBuilder()
    end = host_synced_decode(b, 0, steps=4)
    result = analyze(b, tmp_path / "t.sqlite")
    assert not result.frames.on_gpu
    assert terms(result) == [HOST_SYNCED_STEP] * 4
    assert result.steps["t0"].to_list() == [1000, 1430, 1860, 2290] and result.steps["t1"][-1] == end
    assert result.steps["payload"].to_list() == [0, 1, 2, 3] and result.steps["kernels"].to_list() == [3] * 4
    assert result.frames.checks[LEFT_OUT] == 3  # the prefill's two kernels and its copy
    notes = " ".join(result.notes)
    assert (
        "steps found from the trace's GPU work (no NVTX range matches --range 'decode_step'): 4 decode steps in "
        "1 run(s) of one repeating sequence of 5 GPU ops and host waits (4 GPU ops)"
    ) in notes
    assert "anchored at cudaLaunchKernel embed; host-synced steps" in notes
    assert (
        "left out of the found steps: 3 before the first decode period (prefill, warm-up, compilation, graph capture)"
    ) in notes


def test_a_second_generate_call_starts_a_new_run_after_its_prefill(tmp_path):
    b = TraceBuilder()
    host_synced_decode(b, host_synced_decode(b, 0, steps=3), steps=4)
    result = analyze(b, tmp_path / "t.sqlite")
    assert terms(result) == [HOST_SYNCED_STEP] * 7
    assert result.steps["payload"].to_list() == [0, 1, 2, 0, 1, 2, 3]
    assert "7 decode steps in 2 run(s)" in " ".join(result.notes)
    assert "3 between decode runs (another generate() call's prefill, partial periods)" in " ".join(result.notes)


def test_a_trace_cut_mid_step_leaves_its_partial_step_out_and_counts_it(tmp_path):
    b = TraceBuilder()
    host_synced_step(b, host_synced_decode(b, 0, steps=4), cut=True)
    result = analyze(b, tmp_path / "t.sqlite")
    assert terms(result) == [HOST_SYNCED_STEP] * 4
    assert result.frames.checks[LEFT_OUT] == 3 + 2
    assert "2 after the last decode period (a step cut off by the end of the trace" in " ".join(result.notes)


def test_steps_the_host_does_not_wait_on_are_periods_of_gpu_work(tmp_path):
    b = TraceBuilder()
    run_ahead_decode(b)
    result = analyze(b, tmp_path / "t.sqlite")
    assert result.frames.on_gpu
    other = dict(wall=300, busy=240, starved=0, latency=60, head=0, tail=0)
    assert terms(result) == [
        dict(wall=280, busy=240, starved=0, latency=40, head=0, tail=0),
        other,
        other,
        dict(wall=400, busy=240, starved=120, latency=40, head=0, tail=0),
        other,
        other,
    ]
    ends = [start + 280 for _, start in RUN_AHEAD]
    assert result.steps["t0"].to_list() == [RUN_AHEAD[0][1], *ends[:-1]] and result.steps["t1"].to_list() == ends
    # Each step's calls are its own graph launch, though the host made them long before the GPU ran them.
    assert result.calls.sort("step")["start"].to_list() == [call for call, _ in RUN_AHEAD]
    assert result.frames.checks[LEFT_OUT] == 1 and "GPU-timeline steps" in " ".join(result.notes)


def test_a_torch_profiler_trace_gives_the_same_steps(tmp_path):
    b = TraceBuilder()
    host_synced_decode(b, 0, steps=4)
    sqlite = analyze(b, tmp_path / "t.sqlite")
    kineto = attribution.analyze(b.write_kineto(tmp_path / "t.json"), Options(skip=0))
    assert kineto.steps.select("t0", "t1", *TERMS).equals(sqlite.steps.select("t0", "t1", *TERMS))


def test_two_interleaved_decode_loops_are_refused_in_one_line(tmp_path):
    b = TraceBuilder()
    host_synced_decode(b, 0, steps=4)
    host_synced_decode(b, 200, steps=4, tid=ts.global_tid(PID, 101))
    with pytest.raises(GapprofError) as error:
        analyze(b, tmp_path / "t.sqlite")
    assert re.search(
        r"; two decode loops interleave: threads \d+ and \d+ launch 19 and 19 GPU ops over the same "
        r"time; steps cannot be found from the GPU work \(mark them, --range\)$",
        str(error.value),
    )


def test_a_trace_without_periodic_work_is_refused_with_the_ranges_it_has(tmp_path):
    b = TraceBuilder()
    unmarked_prefill(b, 0)
    b.range(0, 1000, "generate")
    with pytest.raises(NoStepRanges) as error:
        analyze(b, tmp_path / "t.sqlite")
    assert str(error.value) == (
        "no NVTX ranges match --range 'decode_step'; ranges found: generate (1); no periodic "
        "decode work found: the 4 GPU ops and host waits of the thread that launched the most "
        "GPU work repeat no sequence 3 times in a row"
    )
    with pytest.raises(NoStepRanges, match="^no NVTX ranges match --range 'iteration'; ranges found"):
        analyze(b, tmp_path / "u.sqlite", range_pattern="iteration")  # only the default pattern falls back


def test_steps_auto_finds_the_steps_of_a_marked_trace(tmp_path):
    b = TraceBuilder()
    host_synced_decode(b, 0, steps=4)
    b.range(1000, 2720, "decode_step")  # one range around all four steps
    path = b.write(tmp_path / "t.sqlite")
    assert attribution.analyze(path, Options(skip=0)).steps.height == 1
    result = CliRunner().invoke(
        main, ["attribute", str(path), "--steps", "auto", "--skip", "0", "--format", "json", "--tables", "steps"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [{k: s[k] for k in TERMS} for s in doc["steps"]] == [HOST_SYNCED_STEP] * 4
    assert any(
        note.startswith("steps found from the trace's GPU work (--steps auto): 4 decode steps") for note in doc["notes"]
    )


def _shipped() -> list[str]:
    """The shipped traces that mark their steps (a program gapprof did not write has its timings beside it)."""
    return [
        name
        for name in sorted(p.name for p in SHIPPED_TRACES.glob("*.sqlite.xz"))
        if not (SHIPPED_TRACES / name.replace(".sqlite.xz", ".timings.json")).exists()
    ] + ["h100-graphs-torch.json.gz"]


def _with_frames(read: frames.TraceFrames, **replaced) -> frames.TraceFrames:
    """The trace as read, with some of its frames replaced."""
    return dataclasses.replace(read, trace=dataclasses.replace(read.trace, **replaced))


@pytest.mark.parametrize("name", _shipped())
def test_shipped_traces_without_their_step_ranges_give_the_marked_steps(name):
    """Same measured steps (+/-1), mean wall and mean busy within 1%, found from the GPU work alone."""
    read = frames.read_trace(SHIPPED_TRACES / name)
    marked = attribution.attribute_frames(frames.select_steps(read)).measured
    unmarked = _with_frames(read, ranges=read.ranges.filter(pl.col("message") != "decode_step"))
    found = attribution.attribute_frames(frames.select_steps(unmarked)).measured
    assert abs(found.height - marked.height) <= 1
    for term in ("wall", "busy"):
        assert found[term].mean() == pytest.approx(marked[term].mean(), rel=0.01), term


@pytest.mark.parametrize(
    "name", ["h100.sqlite.xz", "h100-graphs.sqlite.xz", "h200-compile.sqlite.xz", "h100-graphs-torch.json.gz"]
)
def test_shipped_traces_without_host_waits_give_gpu_timeline_steps_of_the_same_work(name):
    """Without its step ranges and its synchronize calls a trace reads as a loop the host never waits on: its
    GPU-timeline steps hold the same work (busy, latency) and the same wall, within 1%."""
    read = frames.read_trace(SHIPPED_TRACES / name)
    marked = attribution.attribute_frames(frames.select_steps(read)).measured
    waits = read.strings.filter(pl.col("value").str.contains("Synchronize"))["id"].implode()
    unmarked = _with_frames(
        read,
        ranges=read.ranges.filter(pl.col("message") != "decode_step"),
        calls=read.calls.filter(~pl.col("nameId").is_in(waits)),
    )
    result = attribution.attribute_frames(frames.select_steps(unmarked))
    assert result.frames.on_gpu and abs(result.measured.height - marked.height) <= 1
    for term in ("wall", "busy", "latency"):
        assert result.measured[term].mean() == pytest.approx(marked[term].mean(), rel=0.01), term
    assert (result.measured["head"] == 0).all() and (result.measured["tail"] == 0).all()


# Programs gapprof did not write, with the GPU-timeline steps expected where the host never waits per token.
UNMARKED_PROGRAMS = {
    "h100-gpt-fast-compile.sqlite.xz": True,
    "h100-gpt-fast-compile-torch.json.gz": True,
    "h100-gpt-fast-eager.sqlite.xz": True,
    "h100-gpt-fast-eager-torch.json.gz": True,
    "h100-hf-generate.sqlite.xz": False,
}


@pytest.mark.parametrize("name", sorted(UNMARKED_PROGRAMS))
def test_programs_that_mark_nothing_give_one_step_per_new_token(name):
    """A step per decode token (new tokens less the prefill's, +/-1), each holding one token's ops, no spill; the
    compiled program's mean wall within 3% of its own unprofiled time per token (under a profiler the eager
    programs' launches cost more CPU time: traces/README.md states the observer effect)."""
    timings = json.loads((SHIPPED_TRACES / re.sub(r"\.(sqlite\.xz|json\.gz)$", ".timings.json", name)).read_text())
    result = attribution.analyze(SHIPPED_TRACES / name, Options())
    measured = result.measured
    assert result.frames.on_gpu == UNMARKED_PROGRAMS[name]
    assert abs(result.steps.height - (timings["new_tokens"] - 1)) <= 1
    for count in ("kernels", "memcpys", "memsets", "launch_calls"):
        assert measured[count].n_unique() == 1, count
    assert (measured["spill"] == 0).all()
    if timings.get("compile"):
        assert measured["wall"].mean() / 1e6 == pytest.approx(timings["decode_ms_per_token"], rel=0.03)


def test_gpu_timeline_steps_replay_exactly_on_their_own_gpu_and_project_with_the_kernel_model():
    """The compiled gpt-fast trace: replayed on its own GPU every step is as measured; on an H200 each step holds
    the same ops, its kernel time follows the aggregate kernel model and the GPU still never waits for the CPU."""
    from gapprof.analysis import cross_gpu_columns, projection

    from gapprof import gpus

    [loaded] = cross_gpu_columns.load(
        [SHIPPED_TRACES / "h100-gpt-fast-compile.sqlite.xz"], Options(model="llama-3.1-8b", ctx=2048)
    )
    loaded = cross_gpu_columns.with_bytes_per_kernel(loaded, None, None, "decode_step", aggregate=True)
    measured = loaded.analysis.measured
    _, own = cross_gpu_columns.projected(loaded, gpus.resolve_gpu("h100"), projection.Knobs())
    assert own.select(TERMS + ["kernels"]).equals(measured.select(TERMS + ["kernels"]))
    _, h200 = cross_gpu_columns.projected(loaded, gpus.resolve_gpu("h200"), projection.Knobs())
    assert (h200["kernels"] == 451).all() and (h200["starved"] == 0).all() and (h200["spill"] == 0).all()
    assert h200["busy"].mean() / 1e6 == pytest.approx(5.46, abs=0.01)


def test_a_kernel_variant_per_token_keeps_one_run_which_ends_on_an_exact_repeat():
    """Five periods of 200 codes, one code alternating per period (as an elementwise kernel's vectorised and unrolled
    variants do, so that two periods repeat exactly): the period is one, and with 150 other codes after them one run
    of the five periods; the other codes are not tolerated into it."""
    import numpy as np
    from gapprof.analysis import periodicity

    periods = np.tile(np.arange(200), (5, 1))
    periods[::2, 7] = 1000
    assert periodicity.period(periods.ravel()) == 200
    codes = np.concatenate([periods.ravel(), np.arange(2000, 2150)])
    assert periodicity.repeating_runs(codes, 200) == [(0, 1000)]
    assert periodicity.align(codes, codes[200:400], 0, 1000) == 0


def test_a_trace_captured_without_nvtx_has_its_steps_found(tmp_path):
    # `nsys profile -t cuda` writes no NVTX_EVENTS table: nothing marks the steps, and nothing needs to.
    import lzma
    import sqlite3

    shipped = SHIPPED_TRACES / "h100-gpt-fast-compile.sqlite.xz"
    bare = tmp_path / "no-nvtx.sqlite"
    bare.write_bytes(lzma.decompress(shipped.read_bytes()))
    with sqlite3.connect(bare) as conn:
        conn.execute("DROP TABLE NVTX_EVENTS")
    found, original = attribution.analyze(bare), attribution.analyze(shipped)
    assert found.frames.ranges.is_empty()
    assert found.steps.select("t0", "t1", "busy").equals(original.steps.select("t0", "t1", "busy"))
