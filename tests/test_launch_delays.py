"""Launch delays (analysis.launch_delays) on synthetic steps whose every launch is known, and the registry table."""

import polars as pl
import pytest
from conftest import launch_mix_step, with_meta
from gapprof.analysis import launch_delays
from gapprof.analysis.attribution import Options, analyze
from gapprof.analysis.tables import TABLES, Inputs
from synthetic import TraceBuilder


@pytest.fixture
def result(tmp_path):
    """Two steps of launch_mix_step, the second's calls and work 10 ns slower."""
    b = with_meta(TraceBuilder())
    launch_mix_step(b)
    launch_mix_step(b, o=2000, slower=10)
    return analyze(b.write(tmp_path / "t.sqlite"), Options())


@pytest.mark.parametrize(
    "values, expected",
    [(range(1, 11), [5, 9, 10]), (range(1, 101), [50, 90, 99]), ([7], [7, 7, 7]), ([3, 1], [1, 3, 3])],
)
def test_percentiles_are_nearest_rank(values, expected):
    frame = pl.DataFrame({"x": list(values)[::-1]})
    assert [frame.select(launch_delays.nearest_rank("x", p)).item() for p in (50, 90, 99)] == expected


def test_every_launch_kind_with_its_cpu_time_and_delay(result):
    ops = launch_delays.launched_ops(result)
    first = launch_delays.launches(ops.filter(pl.col("step") == 0))
    assert first.select("api", "ops", "cpu_ns", "delay_ns").sort("api").rows() == [
        ("cuLaunchKernelEx", 1, 15, 40),
        ("cudaGraphLaunch", 3, 70, 80),
        ("cudaLaunchKernel", 1, 10, 20),
        ("cudaMemcpyAsync", 1, 20, 30),
        ("cudaMemsetAsync", 1, 5, 10),
    ]
    nodes = ops.filter((pl.col("step") == 0) & (pl.col("api") == "cudaGraphLaunch")).sort("start")
    assert nodes.select("class", "delay_ns").rows() == [("gemv/gemm", 80), ("attention", 110), ("elementwise", 140)]


def test_percentiles_per_api_class_and_step(result):
    ops = launch_delays.launched_ops(result)
    launched = launch_delays.launches(ops)
    api = launch_delays.by_api(launched, 2).filter(pl.col("api") == "cudaGraphLaunch").to_dicts()[0]
    assert api["launches_per_step"] == 1 and api["ops_per_launch"] == 3
    # Two launches: 70 and 80 ns in the call, 80 and 90 to the first node; p50 is the lower, p90 and p99 the higher.
    assert [api[f"cpu_p{p}_ns"] for p in (50, 90, 99)] == [70, 80, 80]
    assert [api[f"delay_p{p}_ns"] for p in (50, 90, 99)] == [80, 90, 90]
    gemv = launch_delays.by_class(ops, 2).filter(pl.col("class") == "gemv/gemm").sort("api")
    assert gemv.select("api", "ops_per_step", "delay_p50_ns", "delay_p99_ns").rows() == [
        ("cuLaunchKernelEx", 1.0, 40, 50),
        ("cudaGraphLaunch", 1.0, 80, 90),
    ]
    steps = launch_delays.by_step(launched)
    # Step 0's launch delays 10, 20, 30, 40, 80: p50 30, p90 and p99 80; step 1 each 10 ns more.
    assert steps.select("step", "launches", "delay_p50_ns", "delay_p90_ns", "cpu_p50_ns").rows() == [
        (0, 5, 30, 80, 15),
        (1, 5, 40, 90, 25),
    ]


def test_the_registry_table_shows_microseconds_and_gives_nanoseconds(result):
    built = TABLES["launches"].build(Inputs(result, Options()))
    titles = [title for title, _ in built.sections]
    assert titles == ["launches by api", "launches by class", "launches by step"]
    by_class = dict(built.sections)["launches by class"]
    assert "delay_p50_us" in by_class.columns and "delay_p50_ns" in built.frame.columns
    row = by_class.filter(pl.col("class") == "attention").to_dicts()[0]
    assert row["delay_p50_us"] == 0.11 and row["delay_p99_us"] == 0.12
