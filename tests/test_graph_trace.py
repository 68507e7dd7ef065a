"""Graph-level traces (`nsys --cuda-graph-trace=graph`): each CUDA graph execution is one GPU op, its nodes not
traced. Synthetic traces whose terms are known by construction, in the anatomy, the tables and the facts."""

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import with_meta
from gapprof.analysis.attribution import GRAPH_LEVEL_NOTE, Options, analyze, class_table, kernel_table
from gapprof.analysis.summary import facts
from gapprof.analysis.two_pass import graph_level_pass, joined
from gapprof.profiler import nsys_capture
from gapprof.profiler.request import CaptureRequest, validate
from synthetic import TraceBuilder

from gapprof.cli import main
from gapprof.commands import options
from gapprof.errors import GapprofError

GRAPH_LAUNCH = "cudaGraphLaunch_v10000"


def graph_steps(steps: int = 2) -> TraceBuilder:
    """Each step: a range of 10,000 ns; one graph launched at 50-80 that runs 200-6,200; a memcpy of the token to
    the host launched at 6,300 (after a host wait) that runs 6,500-6,600."""
    b = with_meta(TraceBuilder(), runtime="graphs")
    for i in range(steps):
        o = 20_000 * i
        b.range(o, o + 10_000)
        b.graph(o + 200, o + 6_200, b.call(o + 50, o + 80, GRAPH_LAUNCH), exec_id=3)
        b.memcpy(o + 6_500, o + 6_600, b.call(o + 6_300, o + 6_400, "cudaMemcpyAsync_v3020"))
        b.call(o + 6_410, o + 6_700, "cudaStreamSynchronize_v3020")
    return b


def test_a_graph_execution_is_one_op_and_the_anatomy_adds_up(tmp_path):
    result = analyze(graph_steps().write(tmp_path / "t.sqlite"), Options())
    rows = result.measured.select(
        "wall", "busy", "starved", "latency", "head", "tail", "kernels", "graphs", "memcpys"
    ).to_dicts()
    # busy: the graph's span and the copy; the copy waited for its launch at 6,300 (starved 300 after the graph).
    assert (
        rows
        == [dict(wall=10_000, busy=6_100, starved=300, latency=0, head=200, tail=3_400, kernels=0, graphs=1, memcpys=1)]
        * 2
    )


def test_graph_executions_have_their_own_class_and_name(tmp_path):
    result = analyze(graph_steps().write(tmp_path / "t.sqlite"), Options())
    classes = class_table(result).select("class", "calls_per_step", "us_per_step")
    assert classes.filter(pl.col("class") == "cuda graph").row(0) == ("cuda graph", 1.0, 6.0)
    assert "[CUDA graph exec 3]" in kernel_table(result)["name"].to_list()
    found = facts(result.steps, result.measured, result.floor, result.frames.meta)
    assert found["CUDA graph executions per step (graph-level trace)"] == 1
    assert found["kernels per step"] == 0
    assert GRAPH_LEVEL_NOTE in result.notes


@pytest.mark.parametrize("command", ["attribute", "project"])
def test_ncu_bytes_for_a_graph_level_trace_are_one_line(tmp_path, command):
    # No kernel to join the CSV's rows to: an IndexError traceback before.
    trace = graph_steps(3).write(tmp_path / "t.sqlite")
    ncu_csv = Path(__file__).parent / "data" / "ncu-raw-constructed.csv"
    extra = ["--tables", "cost"] if command == "attribute" else ["--to", "h200"]
    result = CliRunner().invoke(main, [command, str(trace), "--ncu", str(ncu_csv), "--skip", "0", "--force", *extra])
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
    assert "the measured steps ran no kernel to join its rows to" in result.output.splitlines()[-1]


def test_node_level_traces_say_nothing_of_graph_executions(tmp_path):
    b = with_meta(TraceBuilder())
    b.range(0, 1_000)
    b.launch(10, 20, 100, 300)
    result = analyze(b.write(tmp_path / "t.sqlite"), Options())
    assert "CUDA graph executions per step (graph-level trace)" not in facts(
        result.steps, result.measured, result.floor, result.frames.meta
    )


def test_nsys_traces_graphs_at_the_level_asked():
    assert "--cuda-graph-trace=node" in nsys_capture.profile_command("nsys", "r")
    assert "--cuda-graph-trace=graph" in nsys_capture.profile_command("nsys", "r", graph_trace="graph")


@pytest.mark.parametrize(
    "request_args, message",
    [
        (
            dict(runtime="eager"),
            "--cuda-graph-trace graph: runtime eager launches no CUDA graph; the runtimes that do: "
            "graphs, compile, lean",
        ),
        (
            dict(runtime="graphs", backend="cupti"),
            "--cuda-graph-trace graph needs --backend nsys (the CUPTI backend records every node)",
        ),
        (
            dict(runtime="compile", graph_trace="both"),
            "--cuda-graph-trace both needs --backend cupti (one nsys run traces graphs one way)",
        ),
        (
            dict(runtime="static", graph_trace="both", backend="cupti"),
            "--cuda-graph-trace both: runtime static launches "
            "no CUDA graph; the runtimes that do: graphs, "
            "compile, lean",
        ),
    ],
)
def test_graph_level_capture_is_refused_where_it_means_nothing(request_args, message):
    with pytest.raises(GapprofError) as error:
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, **{"graph_trace": "graph", **request_args}))
    assert str(error.value) == message


def test_a_two_pass_session_decodes_a_profiled_pass_more():
    from gapprof.profiler.request import decode_steps

    one = CaptureRequest(model="tiny-qwen2", ctx=16, steps=20, warmup=4, runtime="graphs", backend="cupti")
    two = CaptureRequest(
        model="tiny-qwen2", ctx=16, steps=20, warmup=4, runtime="graphs", backend="cupti", graph_trace="both"
    )
    assert (decode_steps(one), decode_steps(two)) == (4 + 20 + 24, 4 + 20 + 24 + 24)


def test_graph_level_capture_writes_its_own_trace_name(monkeypatch, tmp_path):
    monkeypatch.setattr(options, "check_session_device", lambda *_: None)  # as on a machine with a GPU
    asked = {}

    def fake_capture(request, output, command):
        asked.update(graph_trace=request.graph_trace, output=output)
        raise GapprofError("stop here")

    monkeypatch.setattr(nsys_capture, "capture_with_nsys", fake_capture)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["capture", "--model", "tiny-qwen2", "--ctx", "16", "--runtime", "graphs", "--cuda-graph-trace", "graph"]
    )
    assert result.exit_code == 1 and "stop here" in result.output
    assert asked == dict(graph_trace="graph", output=Path("traces", "tiny-qwen2-graphs-graph-level.nsys-rep"))


def test_cupti_two_pass_trace_keeps_each_pass_under_its_own_ranges(tmp_path):
    from gapprof.profiler.trace_writer import write_trace
    from synthetic import PID

    from gapprof import trace_schema
    from gapprof.nvtx_names import GRAPH_LEVEL_MESSAGE

    pid, tid = PID, 100

    def call(start, end, corr):
        return {
            "start": start,
            "end": end,
            "globalTid": trace_schema.global_tid(pid, tid),
            "correlationId": corr,
            "name": GRAPH_LAUNCH,
            "returnValue": 0,
        }

    def op(start, end, corr):
        return {
            "start": start,
            "end": end,
            "deviceId": 0,
            "contextId": 1,
            "streamId": 7,
            "correlationId": corr,
            "globalPid": trace_schema.global_pid(pid),
        }

    # Graph-level pass: steps at 0 and 1,000, each one graph execution 100-700 launched at 10-20. Node-level pass:
    # steps at 5,000 and 6,000, each two kernels of one graph launch, 100-300 and 400-500.
    calls = [call(o + 10, o + 20, c) for c, o in enumerate((0, 1_000, 5_000, 6_000), 1)]
    graphs = [{**op(o + 100, o + 700, c), "graphId": 4, "graphExecId": 4} for c, o in ((1, 0), (2, 1_000))]
    kernels = [
        {**op(o + a, o + b, c), "name": "_Z4gemvv"}
        for c, o in ((3, 5_000), (4, 6_000))
        for a, b in ((100, 300), (400, 500))
    ]
    meta = {
        "model": "tiny-qwen2",
        "ctx": 16,
        "warmup": 0,
        "range_message": "decode_step",
        "range_domain": "gapprof",
        "dtype_bytes": 4,
        "dtype": "float32",
        "first_profiled_index": 6,
        "graph_level_first_index": 4,
        "cuda_graph_trace": "both",
        "unprofiled_step_ms": [0.0008, 0.0008],
        "graph_level_step_ms": [0.001] * 2,
        "profiled_step_ms": [0.0012] * 2,
    }
    path = tmp_path / "two-pass.sqlite"
    write_trace(
        path,
        kernels,
        [],
        [],
        calls,
        [],
        [(5_000, 6_000), (6_000, 7_000)],
        {"id": 0, "name": "NVIDIA H100 80GB HBM3", "totalMemory": 1},
        meta,
        thread_id=tid,
        pid=pid,
        graphs=graphs,
        graph_step_spans=[(0, 1_000), (1_000, 2_000)],
    )
    node = analyze(path, Options(skip=0))
    graph = analyze(path, Options(skip=0, range_pattern=GRAPH_LEVEL_MESSAGE))
    assert node.steps.select("payload", "busy", "latency", "kernels", "graphs").rows() == [
        (6, 300, 100, 2, 0),
        (7, 300, 100, 2, 0),
    ]
    assert graph.steps.select("payload", "busy", "head", "tail", "kernels", "graphs").rows() == [
        (4, 600, 100, 300, 0, 1),
        (5, 600, 100, 300, 0, 1),
    ]
    # Joined: wall, head, tail and starved of the graph level, busy of the node level, latency the rest.
    table, notes = joined(node, graph_level_pass(node, Options(skip=0)))
    found = {row["term"]: row for row in table.to_dicts()}
    ns = {
        term: round(found[f"{term} ms"]["joined"] * 1e6)
        for term in ("wall", "busy", "starved", "latency", "head", "tail")
    }
    assert ns == dict(wall=1_000, busy=300, starved=0, latency=300, head=100, tail=300)
    assert round(found["latency ms"]["node-level pass"] * 1e6) == 100
    effect = found["profiled / unprofiled (medians)"]
    assert (effect["graph-level pass"], effect["node-level pass"]) == pytest.approx((1.25, 1.5))
    assert notes[0].startswith(
        "two-pass: joined by the means over each pass's measured steps (graph level from position 4, node level from 6"
    )
    result = CliRunner().invoke(main, ["attribute", str(path), "--skip", "0", "--tables", "summary,two-pass"])
    assert result.exit_code == 0, result.output
    assert "two-pass" in result.output and "graph-level pass" in result.output


REPO = Path(__file__).resolve().parents[1]


def _readme_observer_rows() -> dict[tuple[str, str], list[str]]:
    """docs/results.md's observer-effect table for the graph runtimes: (runtime, GPU) -> its three ratio cells."""
    readme = (REPO / "docs" / "results.md").read_text()
    table = readme[readme.index("| runtime | GPU | nsys, graph level |") :].split("\n\n")[0].splitlines()[2:]
    rows = ([c.strip() for c in line.strip("|").split("|")] for line in table)
    return {(cells[0], cells[1]): cells[2:] for cells in rows}


@pytest.mark.parametrize("gpu", ["h100", "h200"])
@pytest.mark.parametrize("runtime", ["graphs", "compile", "lean"])
def test_readme_observer_table_is_the_shipped_traces(runtime, gpu):
    """Each ratio and median in the table is the shipped trace's, and the graph-level pass meets the goal (<= 1.05)."""

    def cell(meta, profiled_key):
        plain, profiled = (float(pl.Series(meta[key]).median()) for key in ("unprofiled_step_ms", profiled_key))
        return profiled / plain, f"{profiled / plain:.3f}", f"{profiled:.2f}", f"{plain:.2f}"

    row = _readme_observer_rows()[runtime, gpu.upper()]
    two_pass = analyze(REPO / f"traces/{gpu}-{runtime}-two-pass.sqlite.xz", Options()).frames.meta
    cells = [cell(two_pass, "graph_level_step_ms"), cell(two_pass, "profiled_step_ms")]
    graph_level = REPO / f"traces/{gpu}-{runtime}-graph-level.sqlite.xz"
    if graph_level.exists():
        cells.insert(0, cell(analyze(graph_level, Options()).frames.meta, "profiled_step_ms"))
    else:
        assert row[0] == "-"
    for text, (_ratio, *shown) in zip(row[-len(cells) :], cells):
        assert text.replace("(", "").replace(")", "").replace(" ms", "").replace("/", "").split() == shown
    assert cells[-2][0] <= 1.05


def test_two_pass_is_a_table_of_its_own():
    """--tables chooses it like any other table: summary alone stays one csv table, and a one-pass trace asked for
    it says so in one line."""
    two_pass, one_pass = REPO / "traces/h100-lean-two-pass.sqlite.xz", REPO / "traces/h100-lean.sqlite.xz"
    alone = CliRunner().invoke(main, ["attribute", str(two_pass), "--tables", "summary", "--format", "csv"])
    assert alone.exit_code == 0, alone.output
    assert "graph-level pass" not in alone.output and pl.read_csv(alone.stdout.encode())["term"][0] == "wall"
    joined_only = CliRunner().invoke(main, ["attribute", str(two_pass), "--tables", "two-pass", "--format", "csv"])
    assert joined_only.exit_code == 0, joined_only.output
    assert pl.read_csv(joined_only.stdout.encode()).columns == ["term", "graph-level pass", "node-level pass", "joined"]
    refused = CliRunner().invoke(main, ["attribute", str(one_pass), "--tables", "two-pass"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "--tables two-pass needs a two-pass capture" in refused.output.splitlines()[-1]
    assert "graph-level pass" not in CliRunner().invoke(main, ["attribute", str(one_pass)]).output
