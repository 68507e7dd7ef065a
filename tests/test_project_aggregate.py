"""project's aggregate kernel model, for traces without bytes per kernel: each step's floor bytes move at the
target's achievable bandwidth and the rest of its kernel time is kept (analysis.kernel_bytes.aggregate_bytes).
Checked exactly against that arithmetic, and against the shipped traces of the other GPU."""

import polars as pl
import pytest
from conftest import SHIPPED_TRACES
from gapprof.analysis import projection
from gapprof.analysis.achievable import fixed_scale, of_target, reference_bandwidth
from gapprof.analysis.attribution import Options
from gapprof.analysis.cross_gpu_columns import load, projected, unprofiled_ms, with_bytes_per_kernel

from gapprof import gpus

GPU = {"h100": "h100-sxm", "h200": "h200"}
RUNTIMES = ("graphs", "compile", "lean")


def loaded(name: str, aggregate: bool = True, find_steps: bool = False):
    """A shipped trace with its steps as marked, or found from its GPU work as if it marked none."""
    (trace,) = load([SHIPPED_TRACES / f"{name}.sqlite.xz"], Options(find_steps=find_steps))
    return with_bytes_per_kernel(trace, None, None, Options().range_pattern, aggregate=aggregate)


def test_each_step_keeps_its_fixed_part_and_moves_its_floor_bytes_at_the_targets_bandwidth():
    source, target = loaded("h100-graphs"), gpus.resolve_gpu("h200")
    profiles = source.timeline.profiles
    rs, there = reference_bandwidth(source.analysis, profiles), of_target(target, profiles)
    assert fixed_scale(rs.parameters, there) == 1.0  # one chip: the fixed part is kept as it is
    ops = source.timeline.ops
    rates = projection.kernel_rates(source.analysis, target, profiles)
    new = projection.durations(ops, rs.gbps / there.gbps, projection.Knobs(), rates)
    kernels = ops.with_columns(new=new).filter(pl.col("kind") == "kernel")
    per_step = kernels.group_by("step").agg(old=pl.col("dur").sum(), new=pl.col("new").sum())
    steps = source.timeline.steps.select("step", "bytes").join(per_step, on="step")
    assert steps.height == source.timeline.steps.height
    for step in steps.iter_rows(named=True):
        expected = step["old"] - step["bytes"] / rs.gbps + step["bytes"] / there.gbps
        assert step["new"] == pytest.approx(expected, rel=1e-9)


def test_without_aggregate_every_kernel_takes_the_bandwidth_ratio():
    assert loaded("h100-graphs", aggregate=False).bytes_source is None
    assert loaded("h100-graphs").bytes_source.startswith("aggregate")


@pytest.mark.parametrize("steps", ["marked", "found"])
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("source, target", [("h100", "h200"), ("h200", "h100")])
def test_kernel_time_within_3_percent_and_the_unprofiled_step_within_5_of_the_other_gpus_trace(
    source, target, runtime, steps
):
    there = loaded(f"{target}-{runtime}", aggregate=False)
    here = loaded(f"{source}-{runtime}", find_steps=steps == "found")
    column, table = projected(here, gpus.resolve_gpu(GPU[target]), projection.Knobs())
    busy, measured_busy = table["busy"].mean(), there.timeline.steps["busy"].mean()
    assert busy == pytest.approx(measured_busy, rel=0.03)
    assert column.values["unprofiled wall ms"] == pytest.approx(unprofiled_ms(there), rel=0.05)
