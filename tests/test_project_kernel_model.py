"""project with the kernel model (projection.with_kernel_bytes): each kernel keeps its fixed part and moves its bytes
at 0.9 x the target's peak. Synthetic kernels with known fixed and bytes parts land exactly where the model puts
them; on the trace's own GPU the model is the identity; the CLI takes --ncu and refuses --fixed-kernel-us with it."""
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from gapprof import gpus
from gapprof.analysis import anatomy, fraction_model, projection, study
from gapprof.analysis.attribution import Options
from gapprof.cli import main
from conftest import H100, SYNC, with_meta
from synthetic import TraceBuilder

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
    header = ['"ID","Kernel Name","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum"',
              '"","","byte","byte","nsecond"']
    rows = [f'"{i}","{name}","{nbytes}","0","{on(3350, nbytes, fixed)}"' for i, (name, nbytes, fixed) in enumerate(KERNELS)]
    csv.write_text("\n".join(header + rows) + "\n")
    return b.write(tmp_path / "t.sqlite"), csv


def with_model(trace: Path, csv: Path) -> study.Loaded:
    return study.with_kernel_model(study.load([trace], Options())[0], csv)


def replayed_durations(loaded: study.Loaded, gpu: str) -> list[int]:
    _, _, ops = projection.replayed(loaded.analysis, loaded.timeline, gpus.resolve_gpu(gpu), projection.Knobs())
    return ops.sort("start").select(pl.col("end") - pl.col("start")).to_series().to_list()


def test_known_fixed_and_bytes_parts_land_exactly_on_the_target(tmp_path):
    loaded = with_model(*known_steps(tmp_path))
    assert replayed_durations(loaded, "h100-sxm") == [on(3350, b, f) for _, b, f in KERNELS] * 3
    assert replayed_durations(loaded, "h200") == [on(4800, b, f) for _, b, f in KERNELS] * 3
    table = projection.project(loaded.analysis, loaded.timeline, gpus.resolve_gpu("h200"), projection.Knobs())
    assert table["busy"].to_list() == [sum(on(4800, b, f) for _, b, f in KERNELS)] * 3
    # Without the model every kernel, fixed part included, scales with the bandwidth ratio.
    plain = study.load([tmp_path / "t.sqlite"], Options())[0]
    assert replayed_durations(plain, "h200")[1] == round(1500 * 3350 / 4800)


def test_projection_to_the_source_gpu_reproduces_every_kernel_and_step():
    loaded = with_model(TRACES / "h100-graphs.sqlite", TRACES / "h100-graphs-ncu.csv")
    tl = loaded.timeline
    new_steps, new_calls, new_ops = projection.replayed(loaded.analysis, tl, gpus.resolve_gpu("h100-sxm"),
                                                        projection.Knobs())
    assert (new_ops["end"] - new_ops["start"]).to_list() == tl.ops["dur"].to_list()
    table = anatomy.attribute(new_steps, new_calls, new_ops)[0]
    measured = loaded.analysis.measured
    assert table["wall"].to_list() == measured["wall"].to_list()
    assert table["busy"].to_list() == measured["busy"].to_list()


def test_graphs_trace_on_h200_gives_the_kernel_time_design_md_quotes():
    loaded = with_model(TRACES / "h100-graphs.sqlite", TRACES / "h100-graphs-ncu.csv")
    column, _ = study.projected(loaded, gpus.resolve_gpu("h200"), projection.Knobs())
    assert column.values["busy ms"] == pytest.approx(7.59, abs=0.03)  # measured on the H200: 7.62 ms


def test_project_cli_takes_ncu_and_refuses_a_fixed_kernel_cost_with_it(tmp_path):
    trace, csv = known_steps(tmp_path)
    result = CliRunner().invoke(main, ["project", str(trace), "--to", "h200", "--ncu", str(csv)])
    assert result.exit_code == 0, result.output
    assert "kernel model" in result.output and "assumed" in result.output
    result = CliRunner().invoke(main, ["project", str(trace), "--to", "h200", "--ncu", str(csv),
                                       "--fixed-kernel-us", "4"])
    assert result.exit_code == 2 and "--fixed-kernel-us" in result.output


def test_plot_fraction_with_ncu_draws_the_model(tmp_path):
    trace, csv = known_steps(tmp_path)
    out = tmp_path / "fraction.png"
    result = CliRunner().invoke(main, ["plot", "fraction", str(trace), "--ncu", str(csv), "--to", "h200", "-o",
                                       str(out)])
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
