"""`gapprof calibrate` without a GPU: what it plans to measure (sizes, buffers, the decode GEMV shapes of the shipped
configs), its workloads run on CPU tensors, the command's refusal without CUDA, and the profile it writes from
measurements (stood in for here) with its summary."""

import json
import subprocess
import sys
from types import SimpleNamespace

import gapprof.profiler
import pytest
from click.testing import CliRunner
from conftest import gpu_profile_points
from gapprof.profiler import calibration_plan as plan

from gapprof import gpu_profile
from gapprof.cli import main
from gapprof.commands import calibrate_cli

MiB = 1 << 20


def test_sizes_run_from_64_kib_to_1_gib_in_powers_of_two():
    sizes = plan.Settings().sizes
    assert sizes[0] == 64 << 10 and sizes[-1] == 1 << 30 and len(sizes) == 15
    assert all(b == 2 * a for a, b in zip(sizes, sizes[1:]))
    assert set(plan.QUICK.sizes) <= set(sizes) and max(plan.QUICK.sizes) >= 256 * MiB  # a large point for read_gbps


def test_buffers_span_four_l2_caches_so_that_dram_serves_every_op():
    assert plan.reuse_bytes(50 * MiB) == 200 * MiB
    assert plan.reuse_bytes(None) == plan.reuse_bytes(2 * MiB) == 128 * MiB
    assert plan.layout(64 << 10, 200 * MiB) == (3200, 3200)
    assert plan.layout(1 << 30, 200 * MiB) == (1, plan.MIN_NODES)  # one buffer larger than the reuse distance
    assert plan.layout(150 * MiB, 200 * MiB) == (2, plan.MIN_NODES)
    assert plan.layout(1 << 10, 200 * MiB) == (plan.MAX_NODES, plan.MAX_NODES)
    for size in plan.Settings().sizes:
        copies, count = plan.layout(size, 200 * MiB)
        assert copies * size >= 200 * MiB and count >= copies


def test_gemv_shapes_are_the_decode_linears_of_the_shipped_configs():
    qwen = plan.model_gemvs("qwen2.5-7b")
    assert qwen == {
        "q_proj": (3584, 3584),
        "k_proj": (512, 3584),
        "v_proj": (512, 3584),
        "o_proj": (3584, 3584),
        "gate_proj": (18944, 3584),
        "up_proj": (18944, 3584),
        "down_proj": (3584, 18944),
        "lm_head": (152064, 3584),
    }
    shapes = plan.gemv_shapes()
    assert plan.shipped_models() == ["llama-3.1-8b", "mistral-7b-v0.3", "qwen2.5-7b"]
    assert len(shapes) == 11  # llama and mistral share all but lm_head
    by_shape = {(g.n, g.k): g for g in shapes}
    assert by_shape[(1024, 4096)].used_by == (
        "llama-3.1-8b k_proj",
        "llama-3.1-8b v_proj",
        "mistral-7b-v0.3 k_proj",
        "mistral-7b-v0.3 v_proj",
    )
    assert by_shape[(32768, 4096)].used_by == ("mistral-7b-v0.3 lm_head",)
    assert by_shape[(512, 3584)].bytes == 2 * (512 * 3584 + 512 + 3584)
    assert [g.bytes for g in shapes] == sorted(g.bytes for g in shapes)


def test_the_workloads_touch_distinct_buffers_and_compute_the_right_thing():
    torch = pytest.importorskip("torch")
    from gapprof.profiler import calibrate

    cpu = torch.device("cpu")
    read = calibrate.read_workload(4096, 16384, cpu)
    assert (read.copies, read.count) == (4, plan.MIN_NODES)
    assert [float(read.body(i)) for i in range(read.count)] == [1024.0] * 4  # 4096 bytes of float32 ones
    copy = calibrate.copy_workload(4096, 16384, cpu)
    assert copy.body(2).sum().item() == 1024.0
    gemv = plan.Gemv(8, 16, ("test",))
    work = calibrate.gemv_workload(gemv, 3 * gemv.bytes, cpu)
    assert work.copies == 3 and work.count == plan.MIN_NODES
    outputs = [work.body(i).clone() for i in range(3)]
    assert outputs[0].shape == (1, 8) and outputs[0].dtype == torch.bfloat16
    assert not torch.equal(outputs[0], outputs[1])  # each op reads its own weights
    assert torch.equal(work.body(3), outputs[0])  # op 3 is back on buffer 0
    tiny = calibrate.tiny_kernels(cpu, 10)
    assert list(tiny) == ["add"]  # the empty kernel is a CUDA spin kernel
    assert tiny["add"].count == 10 and tiny["add"].body(0).item() == 1.0


def test_calibrate_without_a_gpu_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["calibrate"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: calibrate needs ")
    torch = sys.modules.get("torch")
    if torch is not None and not torch.cuda.is_available():
        assert "needs a CUDA GPU: no CUDA device is visible to torch" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def measured(monkeypatch):
    """The command with the GPU's measurements stood in for: an H200 reading at 4,400 GB/s."""

    def run(settings):
        return {
            "gpu": {"name": "NVIDIA H200", "key": "h200", "datasheet_gbps": 4800.0},
            "versions": {"torch": "2.11"},
            "settings": {"repeats": settings.repeats},
            "points": gpu_profile_points(4400.0, 1.5),
        }

    fake = SimpleNamespace(run=run)
    monkeypatch.setitem(sys.modules, "gapprof.profiler.calibrate", fake)
    monkeypatch.setattr(gapprof.profiler, "calibrate", fake, raising=False)
    monkeypatch.setattr(calibrate_cli.options, "check_session_device", lambda command: None)


def test_calibrate_writes_the_profile_where_analysis_finds_it(tmp_path, monkeypatch, measured):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gapprof", "calibrate"])  # the command line the profile records
    result = CliRunner().invoke(main, ["calibrate"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "runs" / "h200" / "calibration.json"
    found = gpu_profile.read(path)
    assert found.doc["command"] == "gapprof calibrate" and found.doc["settings"]["quick"] is False
    assert found.doc["settings"]["repeats"] == plan.Settings().repeats
    assert found.read_gbps == pytest.approx(4400.0) and found.fixed_us_graph == 1.5
    assert "wrote runs/h200/calibration.json" in result.output
    assert "4,400 (0.92 x datasheet 4,800)" in result.output
    assert "gapprof/gpu_profiles/h200.json" in result.output


def test_quick_calibration_goes_to_its_own_file_and_says_so(tmp_path, monkeypatch, measured):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["calibrate", "--quick"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "runs" / "h200" / "calibration-quick.json").read_text())
    assert doc["settings"] == {"repeats": plan.QUICK.repeats, "quick": True}
    assert "--quick" in result.output
    result = CliRunner().invoke(main, ["calibrate", "-o", str(tmp_path / "missing" / "p.json")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_the_summary_states_each_fitted_parameter():
    doc = gpu_profile.document(
        gpu={"name": "NVIDIA H200", "key": "h200", "datasheet_gbps": None},
        date="2026-12-01T10:00:00+00:00",
        command="gapprof calibrate",
        versions={},
        settings={},
        points=gpu_profile_points(4400.0, 1.5),
    )
    rows = calibrate_cli.summary(doc)
    assert rows["kernel in a CUDA graph, us (add on 1 element)"] == 1.5
    assert rows["kernel launched from the host, us (add on 1 element)"] == 4.5
    assert rows["read bandwidth at large transfers, GB/s"] == "4,400"  # no datasheet: no ratio
    assert rows["GEMV bf16 M=1 at decode shapes: time = fixed + bytes / bandwidth"].startswith(
        "2.00 us + bytes at 3,520 GB/s (R^2 1.0000"
    )


def test_the_command_and_its_plan_import_without_polars():
    # The GPU image has torch but no polars.
    code = (
        "import sys; sys.modules.update(polars=None); import gapprof.commands.calibrate_cli, "
        "gapprof.profiler.calibration_plan, gapprof.gpu_profile"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
