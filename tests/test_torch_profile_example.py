"""examples/torch_profile_decode.py on CPU with a tiny config: the session's profiled pass as decode_step ranges in
a torch.profiler Chrome trace, its metadata beside it, and an attribute line that reads the trace (refused here
as a CPU-only trace)."""

import gzip
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from gapprof.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "torch_profile_decode.py"
# As a user runs it, with polars unimportable: the GPU machines that run it have the capture side only.
RUN = (
    "import runpy, sys; sys.modules['polars'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _example():
    spec = importlib.util.spec_from_file_location("torch_profile_decode", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _events(path: Path) -> list:
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.name.endswith(".gz") else data)["traceEvents"]


@pytest.mark.parametrize("runtime, name", [("eager", "eager.json.gz"), ("static", "static.json")])
def test_the_profiled_steps_are_decode_step_ranges_and_the_printed_command_reads_the_trace(tmp_path, runtime, name):
    trace = tmp_path / name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    args = [
        "--model",
        "tiny-qwen2",
        "--runtime",
        runtime,
        "--device",
        "cpu",
        "--ctx",
        "16",
        "--steps",
        "3",
        "--warmup",
        "1",
        "-o",
        str(trace),
    ]
    result = subprocess.run([sys.executable, "-c", RUN, str(SCRIPT), *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    assert (trace.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    ranges = sorted((e for e in _events(trace) if e.get("cat") == "user_annotation"), key=lambda e: e["ts"])
    assert [e["name"] for e in ranges] == ["decode_step"] * 4  # warm-up 1 + 3 steps
    assert all(a["ts"] + a["dur"] <= b["ts"] for a, b in zip(ranges, ranges[1:]))

    meta = json.loads((tmp_path / f"{runtime}.meta.json").read_text())
    assert (meta["runtime"], meta["steps"], meta["warmup"], meta["ctx"]) == (runtime, 3, 1, 16)
    assert meta["backend"] == "torch.profiler"
    assert len(meta["unprofiled_step_ms"]) == len(meta["profiled_step_ms"]) == 3
    # 1 warm-up + 3 unprofiled steps before the profiled pass; its first measured step follows 1 warm-up step.
    assert meta["first_profiled_index"] == 4
    command = f"gapprof attribute {trace} --model tiny-qwen2 --ctx 21 --skip 1"
    assert meta["attribute_command"] == command
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{trace}: median step ") and line.endswith(f"; analyse with: {command}")

    attributed = CliRunner().invoke(main, shlex.split(command)[1:])
    assert attributed.exit_code == 1
    assert attributed.stderr.strip().splitlines()[-1] == (
        f"Error: {trace}: a torch.profiler trace with no GPU kernels (a CPU-only trace?); profile with "
        "activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] on a GPU"
    )


def test_the_metadata_lies_beside_the_trace_whatever_dots_the_name_has():
    example = _example()
    assert example.meta_path(Path("traces/qwen2.5-7b-graphs.json.gz")) == Path("traces/qwen2.5-7b-graphs.meta.json")
    assert example.meta_path(Path("t/qwen2.5-7b.json")) == Path("t/qwen2.5-7b.meta.json")


def test_a_request_the_session_refuses_stops_in_one_line_before_any_model_is_built(tmp_path, capsys):
    example = _example()
    with pytest.raises(SystemExit) as stopped:
        example.main(
            [
                "--model",
                "tiny-qwen2",
                "--runtime",
                "graphs",
                "--warmup",
                "2",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "t.json"),
            ]
        )
    assert stopped.value.code == (
        "Error: runtime graphs needs --warmup >= 3 (eager steps and graph capture happen in warm-up)"
    )
    assert "built" not in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as refused:
        example.main(["-o", str(tmp_path / "t.trace")])
    assert refused.value.code == 2
    assert "a Chrome trace is written as .json or .json.gz" in capsys.readouterr().err
