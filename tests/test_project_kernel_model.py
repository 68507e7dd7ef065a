"""project with the kernel model (projection.with_kernel_bytes): each kernel keeps its fixed part and moves its bytes
at the target's achievable bandwidth: 0.9 x its peak, or measured by its GPU profile, which with the source's also
rescales the fixed part. Synthetic kernels with known fixed and bytes parts land exactly where the model puts
them; on the trace's own GPU the model is the identity; the CLI takes --ncu and refuses --fixed-kernel-us with it,
and says which parameters were measured and which assumed."""

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import H100, SYNC, with_meta, write_gpu_profile
from gapprof.analysis import anatomy, fraction_model, projection
from gapprof.analysis.attribution import Options
from gapprof.analysis.cross_gpu_columns import Loaded, load, projected, with_kernel_model
from synthetic import TraceBuilder

from gapprof import gpu_profile, gpus
from gapprof.cli import main

TRACES = Path(__file__).resolve().parents[1] / "traces"
UNIT = 289_440  # bytes that take a whole number of ns at both 0.9 x 3,350 (96 ns) and 0.9 x 4,800 GB/s (67 ns)
# name, bytes, fixed ns: on the H100 SXM a kernel lasts fixed + bytes / 3,015; on the H200 fixed + bytes / 4,320.
KERNELS = [("gemv_a", 10 * UNIT, 700), ("add_kernel", 0, 1500), ("flash_attn", 2 * UNIT, 2000)]


def on(gbps: float, nbytes: int, fixed: int) -> int:
    return fixed + round(nbytes / (0.9 * gbps))


def known_steps(tmp_path: Path, steps: int = 3) -> tuple[Path, Path]:
    """(trace, ncu CSV): steps of KERNELS back to back from 100 ns after the range starts, launched ahead."""
    b = with_meta(TraceBuilder())
    for i in range(steps):
        o = 20_000 * i
        t = o + 100
        b.range(o, o + 10_000)
        for k, (name, nbytes, fixed) in enumerate(KERNELS):
            b.launch(o + 10 + 5 * k, o + 14 + 5 * k, t, t + on(3350, nbytes, fixed), name)
            t += on(3350, nbytes, fixed)
        b.call(o + 50, t + 10, SYNC)
    csv = tmp_path / "t-ncu.csv"
    header = [
        '"ID","Kernel Name","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum"',
        '"","","byte","byte","nsecond"',
    ]
    rows = [
        f'"{i}","{name}","{nbytes}","0","{on(3350, nbytes, fixed)}"' for i, (name, nbytes, fixed) in enumerate(KERNELS)
    ]
    csv.write_text("\n".join(header + rows) + "\n")
    return b.write(tmp_path / "t.sqlite"), csv


def with_model(trace: Path, csv: Path) -> Loaded:
    return with_kernel_model(load([trace], Options())[0], csv)


def replayed_durations(loaded: Loaded, gpu: str) -> list[int]:
    _, _, ops = projection.replayed(loaded.analysis, loaded.timeline, gpus.resolve_gpu(gpu), projection.Knobs())
    return ops.sort("start").select(pl.col("end") - pl.col("start")).to_series().to_list()


def test_known_fixed_and_bytes_parts_land_exactly_on_the_target(tmp_path):
    loaded = with_model(*known_steps(tmp_path))
    assert replayed_durations(loaded, "h100-sxm") == [on(3350, b, f) for _, b, f in KERNELS] * 3
    assert replayed_durations(loaded, "h200") == [on(4800, b, f) for _, b, f in KERNELS] * 3
    table = projection.project(loaded.analysis, loaded.timeline, gpus.resolve_gpu("h200"), projection.Knobs())
    assert table["busy"].to_list() == [sum(on(4800, b, f) for _, b, f in KERNELS)] * 3
    # Without the model every kernel, fixed part included, scales with the bandwidth ratio.
    plain = load([tmp_path / "t.sqlite"], Options())[0]
    assert replayed_durations(plain, "h200")[1] == round(1500 * 3350 / 4800)


def test_projection_to_the_source_gpu_reproduces_every_kernel_and_step():
    loaded = with_model(TRACES / "h100-graphs.sqlite.xz", TRACES / "h100-graphs-ncu.csv.gz")
    tl = loaded.timeline
    new_steps, new_calls, new_ops = projection.replayed(
        loaded.analysis, tl, gpus.resolve_gpu("h100-sxm"), projection.Knobs()
    )
    assert (new_ops["end"] - new_ops["start"]).to_list() == tl.ops["dur"].to_list()
    table = anatomy.step_anatomy(new_steps, new_calls, new_ops)[0]
    measured = loaded.analysis.measured
    assert table["wall"].to_list() == measured["wall"].to_list()
    assert table["busy"].to_list() == measured["busy"].to_list()


def test_graphs_trace_on_h200_gives_the_kernel_time_design_md_quotes():
    loaded = with_model(TRACES / "h100-graphs.sqlite.xz", TRACES / "h100-graphs-ncu.csv.gz")
    column, _ = projected(loaded, gpus.resolve_gpu("h200"), projection.Knobs())
    assert column.values["busy ms"] == pytest.approx(7.59, abs=0.03)  # measured on the H200: 7.62 ms


@pytest.mark.parametrize(
    "source, target, busy_ms", [("h100-compile", "h200", 5.633), ("h200-compile", "h100-sxm", 7.045)]
)
def test_compile_traces_project_to_the_kernel_time_the_readme_quotes(source, target, busy_ms):
    result = CliRunner().invoke(
        main,
        ["project", str(TRACES / f"{source}.sqlite.xz"), "--to", target, "--ncu", str(TRACES / f"{source}-ncu.csv.gz")],
    )
    assert result.exit_code == 0, result.output
    busy = next(line.split() for line in result.output.splitlines() if line.startswith("busy ms"))
    # The GPU profiles of both GPUs set the bandwidths; measured on the target (traces/h200-compile,
    # traces/h100-compile): 5.600 and 7.085 ms.
    assert float(busy[-1]) == pytest.approx(busy_ms, abs=0.0005)


def test_project_cli_takes_ncu_and_refuses_a_fixed_kernel_cost_with_it(tmp_path):
    trace, csv = known_steps(tmp_path)
    result = CliRunner().invoke(main, ["project", str(trace), "--to", "h200", "--ncu", str(csv)])
    assert result.exit_code == 0, result.output
    assert "kernel model" in result.output and "assumed" in result.output
    result = CliRunner().invoke(
        main, ["project", str(trace), "--to", "h200", "--ncu", str(csv), "--fixed-kernel-us", "4"]
    )
    assert result.exit_code == 2 and "--fixed-kernel-us" in result.output


def test_plot_fraction_with_ncu_draws_the_model(tmp_path):
    trace, csv = known_steps(tmp_path)
    out = tmp_path / "fraction.png"
    result = CliRunner().invoke(
        main, ["plot", "fraction", str(trace), "--ncu", str(csv), "--to", "h200", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 5000
    result = CliRunner().invoke(main, ["plot", "anatomy", str(trace), "--ncu", str(csv), "-o", str(out)])
    assert result.exit_code == 2 and "fraction only" in result.output


def test_fraction_model_passes_through_the_measured_point_and_falls_to_zero(tmp_path):
    loaded = with_model(*known_steps(tmp_path))
    model = fraction_model.fraction_model(loaded.label, loaded.analysis, loaded.bytes_ops)
    measured = loaded.analysis.measured
    assert model.fraction(3350.0) == pytest.approx(measured["floor"].mean() / measured["wall"].mean())
    assert model.fixed_ms == pytest.approx(sum(f for _, _, f in KERNELS) / 1e6)
    assert model.fraction(1e12) < 1e-5
    assert model.floor_ms * model.peak_gbps / model.crossover_gbps == pytest.approx(model.fixed_ms)


def test_project_and_compare_take_the_model_of_a_trace_without_metadata(tmp_path):
    traces = []
    for name in ("a", "b"):
        b = TraceBuilder()
        b.gpu_info(H100, None)
        b.range(0, 50_001_000)
        for i in range(10):  # 50 ms of kernels: above the floor of qwen2.5-7b on an H100 (4.3 ms)
            b.launch(10 + 5 * i, 14 + 5 * i, 100 + 5_000_000 * i, 100 + 5_000_000 * (i + 1))
        b.call(64, 50_000_200, SYNC)
        traces.append(str(b.write(tmp_path / f"{name}.sqlite")))
    floor = ["--model", "qwen2.5-7b", "--ctx", "2048"]
    result = CliRunner().invoke(main, ["project", traces[0], "--to", "h200"])
    assert result.exit_code == 1 and "--model and --ctx" in result.output
    result = CliRunner().invoke(main, ["project", traces[0], "--to", "h200", *floor])
    assert result.exit_code == 0, result.output
    assert "H200 (projected)" in result.output
    assert CliRunner().invoke(main, ["compare", *traces, *floor]).exit_code == 0
    result = CliRunner().invoke(main, ["project", traces[0], "--to", "h200", *floor[:2], "--ctx", "10000000"])
    assert result.exit_code == 1 and "floor is above the GPU busy time" in result.output


def profiles(tmp_path: Path, *which: tuple) -> dict:
    """GPU key -> profile, each written to tmp_path by conftest.write_gpu_profile: (key, read GB/s, fixed us)."""
    names = {"h100-sxm": H100, "h200": "NVIDIA H200"}
    return {
        key: gpu_profile.read(write_gpu_profile(tmp_path / f"{key}.json", key, names[key], gbps, fixed, *sms))
        for key, gbps, fixed, *sms in which
    }


def on_target(source_gbps: float, target_gbps: float, scale: float) -> list[float]:
    """Each of KERNELS (as measured on the H100) moved by the kernel model: fixed part x scale + bytes on target."""
    out = []
    for _, nbytes, fixed in KERNELS:
        d = on(3350, nbytes, fixed)
        out.append((d - nbytes / source_gbps) * scale + nbytes / target_gbps)
    return out * 3


@pytest.mark.parametrize(
    "measured, source_gbps, target_gbps, scale",
    [
        ((("h100-sxm", 3000.0, 2.0), ("h200", 4400.0, 1.5)), 3000.0, 4400.0, 0.75),  # both: fixed part x 1.5 / 2
        ((("h200", 4400.0, 1.5),), 0.9 * 3350, 4400.0, 1.0),  # target only: fixed part kept
        ((("h100-sxm", 3000.0, 2.0),), 3000.0, 0.9 * 4800, 1.0),  # source only: fixed part kept
        ((("h100-sxm", 3000.0, 2.0, 132), ("h200", 4400.0, 1.5, 132)), 3000.0, 4400.0, 1.0),  # same chip: kept
        ((("h100-sxm", 3000.0, 2.0, 132), ("h200", 4400.0, 1.5, 114)), 3000.0, 4400.0, 0.75),  # other chips: x 1.5 / 2
    ],
)
def test_measured_profiles_set_the_bandwidths_and_only_both_rescale_the_fixed_part(
    tmp_path, measured, source_gbps, target_gbps, scale
):
    trace, csv = known_steps(tmp_path)
    loaded = with_kernel_model(load([trace], Options())[0], csv, profiles=profiles(tmp_path, *measured))
    assert replayed_durations(loaded, "h200") == pytest.approx(on_target(source_gbps, target_gbps, scale), abs=1)
    # On its own GPU the model still gives back every measured duration.
    assert replayed_durations(loaded, "h100-sxm") == [on(3350, b, f) for _, b, f in KERNELS] * 3


def test_project_says_which_parameters_were_measured_and_which_assumed(tmp_path):
    trace, csv = known_steps(tmp_path)
    profiles(tmp_path, ("h100-sxm", 3000.0, 2.0), ("h200", 4400.0, 1.5))
    given = ["--gpu-profile", str(tmp_path / "h100-sxm.json"), "--gpu-profile", str(tmp_path / "h200.json")]
    result = CliRunner().invoke(
        main, ["project", str(trace), "--to", "h200", "--to", "l4", "--ncu", str(csv), *given, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = {row["gpu"]: row for row in doc["kernel model"]}
    assert rows["H100 SXM"] == dict(
        gpu="H100 SXM",
        role="source",
        achievable_gbps=pytest.approx(3000),
        bandwidth="measured",
        fixed_us_per_kernel=2.0,
        fixed_part_scale=1.0,
    )
    assert (rows["H200"]["bandwidth"], rows["H200"]["fixed_part_scale"]) == ("measured", 0.75)
    assert (rows["L4"]["bandwidth"], rows["L4"]["achievable_gbps"], rows["L4"]["fixed_us_per_kernel"]) == (
        "assumed",
        pytest.approx(270),
        None,
    )
    notes = "\n".join(doc["notes"])
    assert f"read bandwidth at large transfers ({tmp_path / 'h200.json'}, measured 2026-12-01)" in notes
    assert "fixed part times 0.750 (target / source fixed cost per kernel)" in notes
    assert (
        "L4 (target): achievable bandwidth 270 GB/s, assumed: 0.9 x peak 300 GB/s (L4 datasheet, gapprof/gpus.py)"
        in notes
        and "no fixed cost per kernel measured on the target" in notes
    )


def test_gpu_profiles_are_refused_without_the_kernel_model_and_when_broken(tmp_path):
    trace, csv = known_steps(tmp_path)
    good = write_gpu_profile(tmp_path / "h200.json", "h200", "NVIDIA H200", 4400.0, 1.5)
    result = CliRunner().invoke(
        main, ["project", str(trace), "--to", "h200", "--bandwidth-ratio", "--gpu-profile", str(good)]
    )
    assert result.exit_code == 2 and "--gpu-profile applies to the kernel model" in result.output
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"format": "gapprof-gpu-profile", "version": 1}))
    result = CliRunner().invoke(
        main, ["project", str(trace), "--to", "h200", "--ncu", str(csv), "--gpu-profile", str(broken)]
    )
    assert (
        result.exit_code == 1
        and result.output.strip().splitlines()[-1]
        == f"Error: {broken}: not a usable gapprof GPU profile: 'gpu' missing or not an object"
    )
    result = CliRunner().invoke(main, ["attribute", str(trace), "--gpu-profile", str(good)])
    assert result.exit_code == 2 and "--ncu or --tables cost" in result.output


def test_attribute_and_the_fraction_model_split_fixed_time_at_the_measured_bandwidth(tmp_path):
    trace, csv = known_steps(tmp_path)
    measured = profiles(tmp_path, ("h100-sxm", 3000.0, 2.0))
    moved = sum(b for _, b, _ in KERNELS)
    fixed_ns = sum(on(3350, b, f) for _, b, f in KERNELS) - moved / 3000.0
    result = CliRunner().invoke(
        main,
        [
            "attribute",
            str(trace),
            "--ncu",
            str(csv),
            "--gpu-profile",
            str(tmp_path / "h100-sxm.json"),
            "--tables",
            "summary",
            "--format",
            "json",
            "--force",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["cost facts"]["reference bandwidth GB/s (measured)"] == pytest.approx(3000)
    assert doc["cost facts"]["fixed time per step, ms (mean)"] == pytest.approx(fixed_ns / 1e6, abs=1e-6)
    assert any("R = 3,000 GB/s, measured: read bandwidth at large transfers" in note for note in doc["notes"])
    loaded = with_kernel_model(load([trace], Options())[0], csv, profiles=measured)
    model = fraction_model.fraction_model(loaded.label, loaded.analysis, loaded.bytes_ops, measured)
    assert model.fixed_ms == pytest.approx(fixed_ns / 1e6, abs=1e-6)


def test_a_measured_bandwidth_above_the_peak_is_capped_at_it_and_said(tmp_path):
    trace, csv = known_steps(tmp_path)
    profiles(tmp_path, ("h100-sxm", 4000.0, 2.0))
    result = CliRunner().invoke(
        main,
        [
            "attribute",
            str(trace),
            "--ncu",
            str(csv),
            "--gpu-profile",
            str(tmp_path / "h100-sxm.json"),
            "--tables",
            "summary",
            "--format",
            "json",
            "--force",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["cost facts"]["reference bandwidth GB/s (measured, capped at peak)"] == 3350
    assert any("above the peak: capped at it" in note for note in doc["notes"])


def test_project_says_why_the_same_chip_keeps_the_fixed_part(tmp_path):
    trace, csv = known_steps(tmp_path)
    profiles(tmp_path, ("h100-sxm", 3000.0, 2.0, 132), ("h200", 4400.0, 1.5, 132))
    given = ["--gpu-profile", str(tmp_path / "h100-sxm.json"), "--gpu-profile", str(tmp_path / "h200.json")]
    result = CliRunner().invoke(
        main, ["project", str(trace), "--to", "h200", "--ncu", str(csv), *given, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {row["gpu"]: row["fixed_part_scale"] for row in doc["kernel model"]} == {"H100 SXM": 1.0, "H200": 1.0}
    assert "fixed part kept as on the source: the same chip (132 SMs each)" in "\n".join(doc["notes"])
