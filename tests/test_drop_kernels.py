"""`project --drop-kernels`: the step predicted without some kernels, as if fused away at no cost. On a shipped CUDA
graph trace projected to its own GPU, each step's busy time falls by exactly the dropped kernels' time."""

import polars as pl
import pytest
from conftest import SHIPPED_TRACES, invoke_recorded
from gapprof.analysis import projection
from gapprof.analysis.attribution import Options
from gapprof.analysis.cross_gpu_columns import load, with_bytes_per_kernel

from gapprof import gpus

TRACE, NCU = SHIPPED_TRACES / "h200-lean.sqlite.xz", SHIPPED_TRACES / "h200-lean-ncu.csv.gz"


def test_each_graph_step_loses_exactly_the_dropped_kernels_time():
    (trace,) = load([TRACE], Options())
    trace = with_bytes_per_kernel(trace, NCU, None, Options().range_pattern)
    knobs = projection.Knobs(drop_kernels="norm")
    table = projection.project(trace.analysis, trace.timeline, gpus.resolve_gpu("h200"), knobs).sort("t0")
    ops = trace.timeline.ops
    norms = ops.filter(pl.col("class") == "norm").group_by("step").agg(norm=(pl.col("end") - pl.col("start")).sum())
    measured = trace.analysis.measured.join(norms, on="step").sort("t0")
    assert measured["norm"].min() > 0 and table.height == measured.height
    assert (table["busy"] == measured["busy"] - measured["norm"]).all()
    norms_per_step = ops.filter(pl.col("class") == "norm").height // table.height
    assert (table["kernels"] == measured["kernels"] - norms_per_step).all()


def test_the_aggregate_model_refuses_it_and_the_ncu_bytes_take_it(tmp_path):
    refused = invoke_recorded("project", TRACE, "--to", "h100", "--drop-kernels", "norm")
    assert refused.exit_code != 0 and "the aggregate kernel model shares each step's floor bytes" in refused.output
    errors = [line for line in refused.output.splitlines() if not line.startswith("[gapprof]")]
    assert len(errors) == 1 and errors[0].startswith("Error: --drop-kernels")
    taken = invoke_recorded("project", TRACE, "--ncu", NCU, "--to", "h100", "--drop-kernels", "norm")
    assert taken.exit_code == 0, taken.output
    assert "--drop-kernels 'norm': the projections run without those kernels" in taken.output


@pytest.mark.parametrize("what, message", [("(", "neither a kernel class"), ("xyz_nothing", "no kernel of the")])
def test_bad_values_are_refused_in_one_line(what, message):
    result = invoke_recorded("project", TRACE, "--bandwidth-ratio", "--to", "h100", "--drop-kernels", what)
    assert result.exit_code != 0 and message in result.output
    errors = [line for line in result.output.splitlines() if not line.startswith("[gapprof]")]
    assert len(errors) == 1 and errors[0].startswith("Error: --drop-kernels")


@pytest.mark.parametrize("what_if", [["--drop-kernels", "gemv/gemm"], ["--kernel-scale", "gemv/gemm=0.1"]])
def test_what_ifs_that_leave_kernel_time_below_the_floor_are_refused(what_if):
    result = invoke_recorded("project", TRACE, "--ncu", NCU, "--to", "h200", *what_if)
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if not line.startswith("[gapprof]")]
    assert errors == [
        "Error: the what-ifs (--drop-kernels, --kernel-scale below 1) leave the kernel time of 20 of 20 steps on h200 "
        "below their DRAM floor: the bytes of the kernels dropped or shortened still have to move; drop or shorten "
        "kernels that move few of them"
    ]
