"""Each finding fires on a synthetic trace built to show it and stays silent on one that does not."""

import polars as pl
import pytest
from conftest import SYNC, cpu_bound, gpu_bound, with_meta
from gapprof.analysis import findings
from gapprof.analysis.attribution import Options, analyze
from synthetic import TraceBuilder


def found(b: TraceBuilder, tmp_path, name: str = "t") -> dict:
    result = analyze(b.write(tmp_path / f"{name}.sqlite"), Options(skip=0))
    return {f.title: f for f in findings.findings(result)}


def test_a_cpu_bound_step_is_starved_and_a_gpu_bound_one_is_not(tmp_path):
    b = with_meta(TraceBuilder())
    for i in range(3):
        cpu_bound(b, o=2000 * i)
    starved = found(b, tmp_path)["GPU starved by the CPU's launches"]
    assert starved.ms == pytest.approx(810 / 1e6)  # 9 gaps of 90 ns between 10 kernels, each ended by a late call
    g = with_meta(TraceBuilder())
    for i in range(3):
        gpu_bound(g, o=2000 * i, kernel=10_000)
    assert "GPU starved by the CPU's launches" not in found(g, tmp_path, "quiet")


def _step_with_a_load(b: TraceBuilder, o: int, load: bool) -> None:
    """Two kernels; between them (with `load`) a cuLibraryLoadData call, so the second kernel starts late."""
    b.range(o, o + 100_000)
    b.launch(o + 10, o + 20, o + 30, o + 10_030, name="gemv")
    if load:
        b.call(o + 11_000, o + 60_000, "cuLibraryLoadData")
    start = o + 61_000 if load else o + 10_100
    b.launch(start - 500, start - 400, start, start + 10_000, name="flash_attn")
    b.call(start + 10_010, start + 10_020, SYNC)


def test_a_module_load_inside_the_step_is_found_with_the_wait_after_it(tmp_path):
    loads, plain = with_meta(TraceBuilder()), with_meta(TraceBuilder())
    for i in range(2):
        _step_with_a_load(loads, 200_000 * i, True)
        _step_with_a_load(plain, 200_000 * i, False)
    setup = found(loads, tmp_path)["module loading or compilation inside each step"]
    assert setup.ms == pytest.approx((61_000 - 10_030) / 1e6)  # the gap before the next kernel, all starved
    assert "cuLibraryLoadData" in setup.evidence
    # The same wait sits before the attention kernels, and is said so.
    assert "GPU waits before the attention kernels" in found(loads, tmp_path, "again")
    quiet = found(plain, tmp_path, "quiet")
    assert "module loading or compilation inside each step" not in quiet
    assert "GPU waits before the attention kernels" not in quiet


def test_more_than_one_sync_a_step_is_found(tmp_path):
    b, one = with_meta(TraceBuilder()), with_meta(TraceBuilder())
    for i in range(2):
        gpu_bound(b, o=5000 * i, kernel=10)
        b.call(5000 * i + 30, 5000 * i + 40, SYNC)  # an extra sync before the step's last one
        gpu_bound(one, o=5000 * i, kernel=10)
    sync = found(b, tmp_path)["host synchronisation inside the step"]
    assert sync.ms == pytest.approx(10 / 1e6) and "2.0 synchronising calls a step" in sync.evidence
    assert "host synchronisation inside the step" not in found(one, tmp_path, "quiet")


def test_short_kernels_are_found_and_long_ones_are_not(tmp_path):
    short, long = with_meta(TraceBuilder()), with_meta(TraceBuilder())
    for i in range(2):
        gpu_bound(short, o=5000 * i, kernel=100)
        gpu_bound(long, o=200_000 * i, kernel=10_000)
    assert found(short, tmp_path)["many short kernels, each with a fixed cost"].ms == pytest.approx(1000 / 1e6)
    assert "many short kernels, each with a fixed cost" not in found(long, tmp_path, "quiet")


@pytest.mark.parametrize("runtime, knob", [("graphs", "torch.compile"), ("lean", "megakernel")])
def test_short_kernels_knob_fits_the_runtime(tmp_path, runtime, knob):
    """torch.compile is no advice for a step it has already fused."""
    b = with_meta(TraceBuilder(), runtime=runtime)
    for i in range(2):
        gpu_bound(b, o=5000 * i, kernel=100)
    assert knob in found(b, tmp_path)["many short kernels, each with a fixed cost"].knob


def _cost(rows: list[tuple]) -> pl.DataFrame:
    """A cost table: the step total first, then classes (time, MB, GB/s, floor, extra, at peak, shortfall, fixed)."""
    columns = [
        "class",
        "time_us",
        "mb_per_step",
        "achieved_gbps",
        "floor_us",
        "extra_us",
        "at_peak_us",
        "shortfall_us",
        "fixed_us",
    ]
    return pl.DataFrame(rows, schema=columns, orient="row")


def _step_with_long_kernels(b: TraceBuilder, o: int, kernels: tuple[tuple[str, int], ...]) -> None:
    """Kernels (name, ns) back to back, launched at once, then a sync: a GPU-bound step."""
    ends = [sum(ns for _, ns in kernels[: i + 1]) for i in range(len(kernels))]
    b.range(o, o + 20 + ends[-1] + 100)
    for i, (name, ns) in enumerate(kernels):
        b.launch(o + 10 + i, o + 11 + i, o + 20 + ends[i] - ns, o + 20 + ends[i], name=name)
    b.call(o + 15, o + 20 + ends[-1] + 50, SYNC)


def test_one_kernel_longer_than_the_whole_floor_is_found_and_a_split_one_is_not(tmp_path):
    """qwen2.5-7b at ctx 2048 on an H100 has a floor of about 4.26 ms a step: one 5 ms kernel exceeds it; the same
    5 ms in two kernels of different names does not, nor one kernel of 4 ms."""
    shapes = {
        "one": (("slow_gemv", 5_000_000), ("norm", 10_000)),
        "split": (("gemv_a", 2_500_000), ("gemv_b", 2_500_000)),
        "short": (("gemv", 4_000_000),),
    }
    traces = {name: with_meta(TraceBuilder()) for name in shapes}
    for name, kernels in shapes.items():
        for i in range(3):
            _step_with_long_kernels(traces[name], 10_000_000 * i, kernels)
    result = analyze(traces["one"].write(tmp_path / "one.sqlite"), Options(skip=0))
    assert result.measured.height == 3
    floor_ms = result.measured["floor"].mean() / 1e6
    assert 4 < floor_ms < 5
    over = {f.title: f for f in findings.findings(result)}["one kernel takes longer than the step's whole floor"]
    assert over.ms == pytest.approx(5 - floor_ms)  # the kernel's time above the floor: a lower bound on its excess
    assert over.evidence.startswith(f"slow_gemv: 1 call a step takes 5.00 ms, {5 / floor_ms:.1f}x the floor")
    for name in ("split", "short"):
        assert "one kernel takes longer than the step's whole floor" not in found(traces[name], tmp_path, name)


def test_a_class_far_below_bandwidth_and_one_above_its_bytes_are_found():
    peak = 1000.0
    cost = _cost(
        [
            ("all (busy)", 10_000.0, 10_000.0, 1000.0, 9_000.0, 1_000.0, 10_000.0, 1_000.0, 0.0),
            ("copy", 1_000.0, 100.0, 100.0, 0.0, 100.0, 100.0, 10.0, 890.0),
            ("attention", 2_000.0, 1_800.0, 900.0, 600.0, 1_200.0, 1_800.0, 200.0, 0.0),
            ("gemv", 7_000.0, 8_100.0, 950.0, 8_400.0, -300.0, 8_100.0, 500.0, 0.0),
        ]
    )
    slow = findings.low_bandwidth_classes(cost, peak)
    assert [(f.title, f.ms) for f in slow] == [("copy far below bandwidth", 0.9)]
    extra = findings.extra_traffic(cost, peak)
    assert [(f.title, f.ms) for f in extra] == [("attention moves more than its analytic bytes", 1.2)]
    assert "(3.0x)" in extra[0].evidence


def test_findings_on_the_shipped_eager_trace():
    from pathlib import Path

    result = analyze(Path(__file__).parents[1] / "traces" / "h100-eager-cudnn.sqlite.xz", Options())
    titles = [f.title for f in findings.findings(result)]
    assert titles == [
        "GPU starved by the CPU's launches",
        "GPU waits before the attention kernels",
        "module loading or compilation inside each step",
        "many short kernels, each with a fixed cost",
    ]


def test_compare_ends_with_the_findings_of_each_trace(pair):
    import json

    from click.testing import CliRunner

    from gapprof.cli import main

    doc = json.loads(CliRunner().invoke(main, ["compare", *map(str, pair), "--format", "json"]).stdout)
    for label in ("h100", "h200"):
        assert any(key.startswith("1. GPU starved by the CPU's launches") for key in doc[f"findings {label}"])


def test_the_flash_eager_trace_pays_no_setup_inside_its_steps():
    """The same eager runtime with --attn auto (flash attention): launch-bound, with no per-length setup."""
    from pathlib import Path

    result = analyze(Path(__file__).parents[1] / "traces" / "h100.sqlite.xz", Options())
    assert [f.title for f in findings.findings(result)] == [
        "GPU starved by the CPU's launches",
        "many short kernels, each with a fixed cost",
    ]
