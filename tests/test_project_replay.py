"""The launch-timeline replay on synthetic steps with answers worked out by hand, and the project knobs."""

import pytest
from conftest import SYNC, cpu_bound, gpu_bound, with_meta
from gapprof.analysis import anatomy, cross_gpu_columns, projection, replay
from gapprof.analysis.attribution import Options
from synthetic import TraceBuilder

from gapprof import gpus
from gapprof.errors import GapprofError


def sync_inside(b: TraceBuilder, o: int = 0) -> None:
    """5 queued 100 ns kernels, a sync that waits for them (ends 525), 200 ns of CPU, one more kernel, a sync."""
    b.range(o, o + 850)
    for i in range(5):
        b.launch(o + 10 + 5 * i, o + 14 + 5 * i, o + 20 + 100 * i, o + 120 + 100 * i)
    b.call(o + 40, o + 525, SYNC)
    b.launch(o + 725, o + 729, o + 735, o + 835)
    b.call(o + 735, o + 840, SYNC)


def _built(builder) -> TraceBuilder:
    b = with_meta(TraceBuilder())
    builder(b)
    return b


def load(b: TraceBuilder, path) -> cross_gpu_columns.Loaded:
    return cross_gpu_columns.load([b.write(path)], Options())[0]


def replayed(loaded: cross_gpu_columns.Loaded, factor: float, cpu_scale: float = 1.0) -> dict:
    """Terms of the single step replayed with every op `factor` times as long."""
    tl = loaded.timeline
    table = anatomy.step_anatomy(*replay.replay(tl, tl.ops["dur"] * factor, cpu_scale))[0]
    return table.select("wall", "busy", "starved", "latency", "head", "tail", "wait").row(0, named=True)


@pytest.mark.parametrize("builder", [gpu_bound, cpu_bound, sync_inside])
def test_replay_with_nothing_changed_is_exact(tmp_path, builder):
    loaded = load(_built(builder), tmp_path / "t.sqlite")
    terms = ("wall", "busy", "starved", "latency", "head", "tail")
    assert {k: v for k, v in replayed(loaded, 1.0).items() if k in terms} == loaded.analysis.steps.select(terms).row(
        0, named=True
    )


def test_gpu_bound_step_scales_with_bandwidth(tmp_path):
    loaded = load(_built(gpu_bound), tmp_path / "t.sqlite")
    assert loaded.analysis.steps["wall"][0] == 1030
    # Kernels [20 + 50i, 70 + 50i]; the sync waits until 520 and returns 6 ns later; 4 ns of trailing CPU.
    assert replayed(loaded, 0.5) == dict(wall=530, busy=500, starved=0, latency=0, head=20, tail=10, wait=520 - 64)


def test_cpu_bound_step_stays_cpu_bound_on_a_faster_gpu(tmp_path):
    loaded = load(_built(cpu_bound), tmp_path / "t.sqlite")
    before = loaded.analysis.steps.row(0, named=True)
    assert (before["wall"], before["busy"], before["starved"]) == (1010, 100, 810)
    # Same launches, kernels [100i + 20, 100i + 25]: the wall does not move, the freed time becomes starved.
    assert replayed(loaded, 0.5) == dict(wall=1010, busy=50, starved=855, latency=0, head=20, tail=85, wait=0)


def test_sync_inside_a_step_shifts_the_cpu_work_after_it(tmp_path):
    loaded = load(_built(sync_inside), tmp_path / "t.sqlite")
    # Phase 1 ends at 270 instead of 520, so the sync returns at 275 and everything after moves 250 ns earlier;
    # the last kernel [485, 535] saves 50 more.
    terms = replayed(loaded, 0.5)
    assert terms == dict(wall=550, busy=300, starved=215, latency=0, head=20, tail=15, wait=(270 - 40) + (535 - 485))
    assert loaded.timeline.calls.filter("blocking").height == 2


def test_launch_cost_scale_stretches_cpu_time_only(tmp_path):
    loaded = load(_built(cpu_bound), tmp_path / "t.sqlite")
    # Every CPU interval doubles (think, call, the in-call 4 ns of the 10 ns latency): the first kernel starts at
    # 20 + 8 + 6, the wall doubles; kernels keep 10 ns.
    terms = replayed(loaded, 1.0, cpu_scale=2.0)
    assert (terms["wall"], terms["busy"], terms["head"]) == (2020, 100, 34)


def test_graphs_collapse_launches_into_one(tmp_path):
    loaded = load(_built(cpu_bound), tmp_path / "t.sqlite")
    tl = projection.as_graph(loaded.timeline, 20)
    assert tl.calls.height == 2  # the graph launch and the sync
    table = anatomy.step_anatomy(*replay.replay(tl, tl.ops["dur"]))[0].row(0, named=True)
    # Graph launch 10..30, nodes back to back from 20 (typical latency 10) to 120; the sync starts 86 ns after
    # the launch returns (the captured think time), finds the GPU busy until 120, returns 5 ns later; 5 ns tail.
    found = (table["wall"], table["busy"], table["starved"], table["head"], table["launch_calls"])
    assert found == (130, 100, 0, 20, 1)


def test_durations_scale_dram_work_and_keep_host_copies(tmp_path):
    b = with_meta(TraceBuilder())
    b.range(0, 1000)
    b.launch(10, 14, 20, 120, name="gemv_kernel")
    b.launch(20, 24, 120, 220, name="rmsnorm_kernel")
    c = b.call(30, 34, "cudaMemcpyAsync_v3020")
    b.memcpy(220, 320, c, copy_kind=2)
    b.call(40, 330, SYNC)
    tl = load(b, tmp_path / "t.sqlite").timeline
    knobs = projection.Knobs(fixed_ns=20, kernel_scale={"norm": 2.0})
    assert projection.durations(tl.ops, 0.5, knobs).to_list() == [20 + 80 * 0.5, (20 + 80 * 0.5) * 2, 100]


def test_project_to_own_gpu_is_the_measurement_and_to_h200_shrinks_gpu_bound_steps(tmp_path):
    loaded = load(_built(gpu_bound), tmp_path / "t.sqlite")
    own, _ = cross_gpu_columns.projected(loaded, gpus.resolve_gpu("h100"), projection.Knobs())
    assert own.values["wall ms"] == loaded.analysis.steps["wall"][0] / 1e6
    faster, table = cross_gpu_columns.projected(loaded, gpus.resolve_gpu("h200"), projection.Knobs())
    assert table["busy"][0] == pytest.approx(1000 * 3350 / 4800, abs=10)
    assert faster.values["floor ms"] == pytest.approx(own.values["floor ms"] * 3350 / 4800, rel=1e-6)


def test_bad_kernel_scale():
    with pytest.raises(GapprofError, match="CLASS=X"):
        projection.parse_kernel_scale(("gemm=2",))
    with pytest.raises(GapprofError, match="> 0"):
        projection.parse_kernel_scale(("norm=0",))
    assert projection.parse_kernel_scale(("norm=2", "attention=0.5")) == {"norm": 2.0, "attention": 0.5}


def test_unknown_source_gpu_is_refused(tmp_path):
    b = with_meta(TraceBuilder(), gpu_name="Mystery GPU")
    gpu_bound(b)
    b.meta["copy_bandwidth_gbps"] = 1000.0  # a floor exists, but no datasheet entry to rescale from
    loaded = load(b, tmp_path / "t.sqlite")
    with pytest.raises(GapprofError, match="no datasheet bandwidth"):
        cross_gpu_columns.projected(loaded, gpus.resolve_gpu("h200"), projection.Knobs())


def test_replayed_steps_keep_their_order_and_count(tmp_path):
    b = with_meta(TraceBuilder())
    for i in range(3):
        cpu_bound(b, o=5000 * i)
    loaded = load(b, tmp_path / "t.sqlite")
    steps, calls, gpu = replay.replay(loaded.timeline, loaded.timeline.ops["dur"] * 0.5)
    assert steps["step"].to_list() == [0, 1, 2] and steps["t0"].to_list() == [0, 5000, 10000]
    assert gpu.height == 30 and calls.height == 33
    assert (steps["t1"] - steps["t0"]).to_list() == [1010] * 3
    # Slower CPU: every step lasts twice as long and the next one starts twice the captured 3990 ns later.
    steps = replay.replay(loaded.timeline, loaded.timeline.ops["dur"], cpu_scale=2.0)[0]
    assert steps["t0"].to_list() == [0, 2020 + 7980, 2 * (2020 + 7980)]
    assert (steps["t1"] - steps["t0"]).to_list() == [2020] * 3


def norms_inside(b: TraceBuilder) -> None:
    """gpu_bound's step with kernels 3 and 4 RMSNorms: 10 kernels of 100 ns queued back to back from 20."""
    b.range(0, 1030)
    for i in range(10):
        name = "rms_norm_kernel" if i in (3, 4) else "gemv_kernel"
        b.launch(10 + 5 * i, 14 + 5 * i, 20 + 100 * i, 120 + 100 * i, name=name)
    b.call(64, 1026, SYNC)


@pytest.mark.parametrize("what", ["norm", "^rms_"])
def test_dropped_kernels_take_their_time_and_the_rest_close_up(tmp_path, what):
    loaded = load(_built(norms_inside), tmp_path / "t.sqlite")
    here = gpus.resolve_gpu(loaded.analysis.frames.trace.meta["gpu_name"])
    table = projection.project(loaded.analysis, loaded.timeline, here, projection.Knobs(drop_kernels=what))
    # Kernels 0-2 at 20-320, 5-9 queued behind them at 320-820; the sync returns at 826, the step ends at 830.
    terms = table.select("wall", "busy", "starved", "latency", "head", "tail", "kernels").row(0, named=True)
    assert terms == dict(wall=830, busy=800, starved=0, latency=0, head=20, tail=10, kernels=8)


def test_drop_kernels_refuses_what_matches_nothing_or_everything_or_is_no_pattern(tmp_path):
    loaded = load(_built(norms_inside), tmp_path / "t.sqlite")
    here = gpus.resolve_gpu(loaded.analysis.frames.trace.meta["gpu_name"])
    for what, message in [("rope", "no kernel of the measured steps"), ("_kernel$", "matches every kernel")]:
        with pytest.raises(GapprofError, match=message):
            projection.project(loaded.analysis, loaded.timeline, here, projection.Knobs(drop_kernels=what))
    with pytest.raises(GapprofError, match=r"'\(\[': neither a kernel class .* nor a regular expression"):
        projection.check_drop_kernels("([")
    with pytest.raises(GapprofError, match="nor a regular expression .backreferences are not supported"):
        projection.check_drop_kernels(r"(gemv)\1")  # Python's re takes it; polars, which runs it, does not
