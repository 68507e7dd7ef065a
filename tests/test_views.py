"""`gapprof view` and its renderers (analysis.views): the anatomy as intervals, the annotated trace read back against
the per-step table on shipped traces, the HTML report, the suffix -> renderer registry and the command line."""

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import H100, SHIPPED_TRACES, basic_step, launch_mix_step
from gapprof.analysis import anatomy_intervals, cross_gpu, projection, views
from gapprof.analysis.attribution import Options, analyze, summary_table
from gapprof.analysis.readers import compressed
from gapprof.analysis.views.annotated_trace import PID, AnnotatedTrace
from synthetic import TraceBuilder

from gapprof import render
from gapprof.cli import main
from gapprof.errors import GapprofError

ANATOMY_TERMS = ("head", "busy", "starved", "latency", "tail", "spill")


def synthetic_trace(tmp_path, name="t.sqlite", kineto=False):
    """Three basic steps and a launch-mix step, the last with a kernel running 100 ns past its range; no capture
    metadata, so no floor unless --model and --ctx give it."""
    b = TraceBuilder()
    b.gpu_info(H100, None)
    for i in range(3):
        basic_step(b, offset=2000 * i)
    launch_mix_step(b, o=6000)
    b.kernel(6950, 7100, b.call(6900, 6910))
    return b.write_kineto(tmp_path / name) if kineto else b.write(tmp_path / name)


def test_intervals_of_a_known_step_tile_its_range(tmp_path):
    result = analyze(synthetic_trace(tmp_path))
    found = anatomy_intervals.intervals(result.steps, result.ops)
    first = found.filter(pl.col("step") == 0).select(pl.col("term").cast(pl.String), "start", "end").rows()
    assert first == [
        ("head", 0, 100),
        ("busy", 100, 200),
        ("latency", 200, 250),
        ("busy", 250, 300),
        ("starved", 300, 420),
        ("busy", 420, 500),
        ("starved", 500, 530),
        ("busy", 530, 560),
        ("tail", 560, 1000),
    ]
    spill = found.filter(pl.col("term") == "spill").select("step", "start", "end").rows()
    assert spill == [(3, 7000, 7100)]
    anatomy_intervals.check(result.steps, found)


def test_intervals_that_miss_a_term_are_refused(tmp_path):
    result = analyze(synthetic_trace(tmp_path))
    found = anatomy_intervals.intervals(result.steps, result.ops)
    with pytest.raises(AssertionError, match="steps \\[0\\]"):
        anatomy_intervals.check(result.steps, found.filter((pl.col("step") != 0) | (pl.col("term") != "tail")))


def _read_back(document: bytes) -> list[dict]:
    """The events of a Chrome trace, ts and dur as exact integer ns (three decimals of µs)."""
    events = json.loads(document, parse_float=Decimal)["traceEvents"]
    for event in events:
        for key in ("ts", "dur"):
            if key in event:
                ns = Decimal(event[key]) * 1000
                assert ns == ns.to_integral_value(), (key, event)
                event[f"{key}_ns"] = int(ns)
    return events


def _ours(events: list[dict], category: str) -> list[dict]:
    return [e for e in events if e.get("pid") == PID and e.get("cat") == category]


def check_annotated(result, document: bytes) -> list[dict]:
    """Every step's anatomy intervals, read back, sum to its terms; step events span [t0, t1]; the floor counter
    holds each measured step's floor. Returns the events."""
    events = _read_back(document)
    sums = defaultdict(int)
    for e in _ours(events, "gapprof anatomy"):
        assert e["dur_ns"] == e["args"]["ns"] > 0
        sums[e["args"]["step"], e["name"]] += e["dur_ns"]
    steps = {e["args"]["step"]: e for e in _ours(events, "gapprof step")}
    assert len(steps) == result.steps.height
    for row in result.steps.iter_rows(named=True):
        assert {t: sums[row["step"], t] for t in ANATOMY_TERMS} == {t: row[t] for t in ANATOMY_TERMS}
        assert (steps[row["step"]]["ts_ns"], steps[row["step"]]["dur_ns"]) == (row["t0"], row["wall"])
    floors = {e["ts_ns"]: int(Decimal(e["args"]["floor_us"]) * 1000) for e in events if e.get("ph") == "C"}
    if result.floor is not None:
        assert {t0: floors[t0] for t0 in result.measured["t0"]} == dict(result.measured.select("t0", "floor").rows())
    gpu = [e for e in events if e.get("pid") == PID and e.get("tid", 0) >= 100_000 and e.get("ph") == "X"]
    assert len(gpu) == result.frames.gpu.height
    assert sorted(e["ts_ns"] for e in gpu) == sorted(result.frames.gpu["start"])
    return events


@pytest.mark.parametrize("name", ["h100-graphs.sqlite.xz", "h100.sqlite.xz", "h100-graphs-graph-level.sqlite.xz"])
def test_annotated_trace_of_a_shipped_trace_reads_back_as_the_per_step_table(name):
    path = SHIPPED_TRACES / name
    result = analyze(path)
    check_annotated(result, views.view([path], Path("t.trace.json"), Options()))


def test_annotated_torch_profiler_trace_keeps_every_original_event():
    path = SHIPPED_TRACES / "h100-graphs-torch.json.gz"
    result = analyze(path)
    events = check_annotated(result, views.view([path], Path("t.json"), Options()))
    original = json.loads(compressed.contents(path), parse_float=Decimal)["traceEvents"]
    kept = [e for e in events if e.get("pid") != PID]
    assert len(kept) == len(original)
    for e in kept:  # the time keys read back here; the rest is the original event
        e.pop("ts_ns", None), e.pop("dur_ns", None)
    assert kept == original


def test_annotated_synthetic_traces_with_spill_from_nsys_and_torch_profiler(tmp_path):
    for trace in (synthetic_trace(tmp_path), synthetic_trace(tmp_path, "t.json", kineto=True)):
        result = analyze(trace)
        assert result.steps["spill"].to_list() == [0, 0, 0, 100]
        events = check_annotated(result, AnnotatedTrace().render([views.Viewed("t", result)]))
        classes = {
            e["name"]: e["cat"] for e in events if e.get("pid") == PID and e.get("tid", 0) >= 100_000 and e["ph"] == "X"
        }
        assert classes["flash_attn"] == "attention" and classes["[memset]"] == "memcpy/memset"


def test_report_shows_the_summary_self_contained(tmp_path):
    path = SHIPPED_TRACES / "h100-graphs.sqlite.xz"
    document = views.view([path], Path("r.html"), Options())
    assert len(document) < 5_000_000
    page = document.decode()
    summary = summary_table(analyze(path))
    for value in summary["mean_ms"]:
        assert f">{render.text(value)}<" in page
    for section in (
        "Summary",
        "Findings",
        "Anatomy of a step",
        "Timeline",
        "Kernel classes",
        "Top kernels",
        "Launch delays",
        "cudaGraphLaunch",
    ):
        assert section in page
    assert "http://" not in page and "https://" not in page and "<link" not in page and " src=" not in page
    assert "@media print" in page


def test_report_of_several_traces_compares_them(tmp_path):
    paths = [SHIPPED_TRACES / "h100-graphs.sqlite.xz", SHIPPED_TRACES / "h200-graphs.sqlite.xz"]
    page = views.view(paths, Path("r.html"), Options()).decode()
    assert page.index("Comparison") < page.index('id="trace-0"') < page.index('id="trace-1"')
    assert "explanation h100-graphs -&gt; h200-graphs" in page


def test_report_projects_each_trace_as_project_does(tmp_path):
    path = SHIPPED_TRACES / "h100-graphs.sqlite.xz"
    page = views.view([path], Path("r.html"), Options(), targets=["h200"]).decode()
    projected = cross_gpu.project(path, ["h200"], projection.Knobs(), Options(), False, aggregate=True)
    wall = next(c for c in projected.columns if "projected" in c.label).values["wall ms"]
    assert page.index('id="projection"') < page.index('id="trace-0"')
    assert "kernel model (aggregate)" in page and render.text(wall) in page
    with pytest.raises(GapprofError, match="--to projects in the HTML report only"):
        views.view([path], Path("t.trace.json"), Options(), targets=["h200"])


@pytest.mark.parametrize("renderer", views.RENDERERS.values(), ids=lambda r: r.name)
def test_every_renderer_is_picked_by_each_of_its_extensions(tmp_path, renderer):
    trace = synthetic_trace(tmp_path)
    for extension in renderer.extensions:
        assert views.for_output(Path(f"out{extension.upper()}")) is renderer
        assert views.view([trace], Path(f"out{extension}"), Options())


def test_suffixes_that_no_renderer_writes_and_several_traces_in_one_trace_file(tmp_path):
    trace = synthetic_trace(tmp_path)
    with pytest.raises(GapprofError, match="no renderer writes this suffix; use one of .html"):
        views.for_output(Path("out.png"))
    with pytest.raises(GapprofError, match="holds one trace, not 2"):
        views.view([trace, trace], Path("out.trace.json"), Options())


def test_the_command_writes_the_file_and_says_a_bad_suffix_in_one_line(tmp_path):
    trace = synthetic_trace(tmp_path)
    runner = CliRunner()
    written = runner.invoke(main, ["view", str(trace), "-o", str(tmp_path / "r.html")])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    bad = runner.invoke(main, ["view", str(trace), "-o", str(tmp_path / "r.txt")])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "no renderer writes this suffix" in bad.output
    conflict = runner.invoke(
        main, ["view", str(trace), "--model", "llama-3.1-8b", "--ctx", "10", "-o", str(tmp_path / "r.html")]
    )
    assert conflict.exit_code == 1 and "--force uses them anyway" in conflict.output
    assert "gapprof view traces/h100-graphs.sqlite.xz -o report.html" in runner.invoke(main, ["view", "--help"]).output
