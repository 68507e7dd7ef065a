"""A trace is read once: the steps of another pattern (the graph-level pass of a two-pass capture) are selected
from the frames already read, checked as a fresh read would check them."""

import dataclasses
import json

import pytest
from click.testing import CliRunner
from conftest import SHIPPED_TRACES, basic_step
from gapprof.analysis import frames
from gapprof.analysis.attribution import Options, analyze
from gapprof.analysis.readers import nsys
from gapprof.analysis.steps import NoStepRanges
from gapprof.analysis.trace_checks import UNLAUNCHED
from gapprof.analysis.two_pass import graph_level_pass
from synthetic import PID, TID, TraceBuilder

from gapprof import trace_schema
from gapprof.cli import main
from gapprof.nvtx_names import GRAPH_LEVEL_MESSAGE

TWO_PASS = SHIPPED_TRACES / "h100-lean-two-pass.sqlite.xz"


def test_attributing_a_two_pass_trace_reads_it_once(monkeypatch):
    opened, queries = [], []
    read_trace, read = nsys.read, nsys._read
    monkeypatch.setattr(nsys, "read", lambda path, progress: opened.append(path) or read_trace(path, progress))
    monkeypatch.setattr(nsys, "_read", lambda conn, query, schema: queries.append(query) or read(conn, query, schema))
    result = CliRunner().invoke(main, ["attribute", str(TWO_PASS), "--tables", "two-pass", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert len(opened) == 1 and len(queries) == len(set(queries))
    rows = {row["term"]: row for row in json.loads(result.stdout)["two-pass"]}
    # The table as it was when the graph-level pass read the trace a second time.
    assert rows["wall ms"]["graph-level pass"] == pytest.approx(6.0437791, rel=1e-12)
    assert rows["busy ms"]["graph-level pass"] == pytest.approx(5.99546015, rel=1e-12)
    assert rows["busy ms"]["joined"] == pytest.approx(5.81399845, rel=1e-12)
    assert rows["latency ms"]["joined"] == pytest.approx(0.18718165, rel=1e-9)


@pytest.mark.parametrize("skip", [None, 2])
def test_the_graph_level_pass_is_what_a_fresh_read_of_its_steps_gives(skip):
    options = Options(skip=skip)
    graph = graph_level_pass(analyze(TWO_PASS, options), options)
    fresh = analyze(TWO_PASS, Options(skip=skip, range_pattern=GRAPH_LEVEL_MESSAGE))
    for name in ("steps", "ops", "calls"):
        assert getattr(graph, name).equals(getattr(fresh, name)), name
    assert graph.frames.calls.equals(fresh.frames.calls)
    assert (graph.notes, graph.frames.checks, graph.frames.skip) == (
        fresh.notes,
        fresh.frames.checks,
        fresh.frames.skip,
    )


def test_select_steps_reads_nothing_and_lists_the_ranges_when_none_match(monkeypatch):
    read = frames.read_trace(TWO_PASS)

    def no_io(*_):
        raise AssertionError("the trace was read again")

    monkeypatch.setattr(nsys, "read", no_io)
    monkeypatch.setattr(nsys, "_read", no_io)
    assert frames.select_steps(read, GRAPH_LEVEL_MESSAGE).steps.height == 24
    with pytest.raises(NoStepRanges) as error:
        frames.select_steps(read, "no_such_range")
    assert str(error.value) == (
        "no NVTX ranges match --range 'no_such_range'; ranges found: gapprof:decode_step "
        "(24), gapprof:decode_step_graph_level (24)"
    )


def test_the_calls_of_every_thread_are_read_once_and_the_steps_take_their_threads(tmp_path):
    b = TraceBuilder()
    basic_step(b)
    loader = trace_schema.global_tid(PID, 200)  # a thread with no NVTX range, launching a copy after the step
    b.memcpy(2000, 2100, b.call(1900, 1910, "cudaMemcpyAsync_v3020", tid=loader))
    read = frames.read_trace(b.write(tmp_path / "t.sqlite"))
    assert read.calls["globalTid"].unique().sort().to_list() == sorted([TID, loader])
    chosen = frames.select_steps(read, skip=0)
    assert chosen.calls["globalTid"].unique().to_list() == [TID]
    assert chosen.checks[UNLAUNCHED] == 0  # the copy's launch call is found on its own thread


def test_a_reader_whose_frame_leaves_its_schema_is_refused():
    trace = frames.read_trace(TWO_PASS).trace
    with pytest.raises(TypeError, match="calls has schema"):
        dataclasses.replace(trace, calls=trace.calls.drop("source"))
