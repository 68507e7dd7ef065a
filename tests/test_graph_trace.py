"""Graph-level traces (`nsys --cuda-graph-trace=graph`): each CUDA graph execution is one GPU op, its nodes not
traced. Synthetic traces whose terms are known by construction, in the anatomy, the tables and the facts."""
import polars as pl

from gapprof.analysis.attribution import Options, analyze, class_table, kernel_table
from gapprof.analysis.summary import facts
from conftest import with_meta
from synthetic import TraceBuilder

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
    rows = result.measured.select("wall", "busy", "starved", "latency", "head", "tail", "kernels", "graphs",
                                  "memcpys").to_dicts()
    # busy: the graph's span and the copy; the copy waited for its launch at 6,300 (starved 300 after the graph).
    assert rows == [dict(wall=10_000, busy=6_100, starved=300, latency=0, head=200, tail=3_400, kernels=0,
                         graphs=1, memcpys=1)] * 2


def test_graph_executions_have_their_own_class_and_name(tmp_path):
    result = analyze(graph_steps().write(tmp_path / "t.sqlite"), Options())
    classes = class_table(result).select("class", "calls_per_step", "us_per_step")
    assert classes.filter(pl.col("class") == "cuda graph").row(0) == ("cuda graph", 1.0, 6.0)
    assert "[CUDA graph exec 3]" in kernel_table(result)["name"].to_list()
    found = facts(result.steps, result.measured, result.floor, result.frames.meta)
    assert found["CUDA graph executions per step (graph-level trace)"] == 1
    assert found["kernels per step"] == 0


def test_node_level_traces_say_nothing_of_graph_executions(tmp_path):
    b = with_meta(TraceBuilder())
    b.range(0, 1_000)
    b.launch(10, 20, 100, 300)
    result = analyze(b.write(tmp_path / "t.sqlite"), Options())
    assert "CUDA graph executions per step (graph-level trace)" not in \
        facts(result.steps, result.measured, result.floor, result.frames.meta)
