"""`gapprof profile` on CPU: a stand-in nsys runs the command and exports a known trace, so the printed report's
numbers are known; the --mark forward site hook marks prefill and decode forwards in a child Python (a stand-in
nvtx module records the ranges) and chains the sitecustomize it shadows; every failure is one line."""

import json
import os
import shlex
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import H100, basic_step
from gapprof.profiler import profile_run
from synthetic import TraceBuilder, host_synced_decode

from gapprof.cli import main
from gapprof.errors import GapprofError
from gapprof.trace_schema import read_meta_text

REPO = Path(__file__).resolve().parents[1]

# Stands in for nsys: `profile ... -o BASE CMD...` runs CMD and writes BASE.nsys-rep, exiting with CMD's status;
# `export ... -o OUT REP` copies the trace named by STANDIN_TRACE to OUT.
STANDIN_NSYS = """
import os, pathlib, shutil, subprocess, sys
args = sys.argv[1:]
if args[0] == "--version":
    print("NVIDIA Nsight Systems version stand-in")
elif args[0] == "profile":
    i = args.index("-o")
    print("Collecting data...", flush=True)
    status = subprocess.call(args[i + 2:])
    pathlib.Path(args[i + 1] + ".nsys-rep").write_text("report")
    print("Generated:\\n    " + args[i + 1] + ".nsys-rep")
    sys.exit(status)
else:
    shutil.copy(os.environ["STANDIN_TRACE"], args[args.index("-o") + 1])
"""

# Stands in for the nvtx package in the child: each push and pop is a line of NVTX_LOG.
STANDIN_NVTX = """
import json, os
class _Domain:
    def __init__(self, name):
        self.name = name
    def get_event_attributes(self, message=None, payload=None):
        return [message, payload]
    def _log(self, event):
        with open(os.environ["NVTX_LOG"], "a") as log:
            log.write(json.dumps(event) + "\\n")
    def push_range(self, attributes):
        self._log(["push", self.name, *attributes])
    def pop_range(self):
        self._log(["pop", self.name])
def get_domain(name):
    return _Domain(name)
"""


def _write(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    if executable:
        path.chmod(0o755)
    return path


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """GAPPROF_NSYS is the stand-in nsys, `nvtx` on the child's PYTHONPATH the stand-in; returns a function that
    sets the trace the stand-in exports."""
    nsys = _write(tmp_path / "bin" / "nsys", f"#!{sys.executable}\n{STANDIN_NSYS}", executable=True)
    _write(tmp_path / "site" / "nvtx" / "__init__.py", STANDIN_NVTX)
    monkeypatch.setenv("GAPPROF_NSYS", str(nsys))
    monkeypatch.setenv("NVTX_LOG", str(tmp_path / "nvtx.log"))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(tmp_path / "site"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )

    def exported(builder: TraceBuilder) -> Path:
        monkeypatch.setenv("STANDIN_TRACE", str(builder.write(tmp_path / "standin.sqlite")))
        return tmp_path

    return exported


def known_trace(steps: int = 4, message: str = "decode_step", gpu_work: bool = True) -> TraceBuilder:
    """A prefill range, then `steps` ranges of basic_step (wall 1000 = busy 260 + starved 150 + latency 50 +
    head 100 + tail 440), on an H100."""
    b = TraceBuilder()
    b.domain("gapprof", 1)
    b.range(0, 400, "prefill", domain_id=1)
    for i in range(steps):
        if gpu_work and message == "decode_step":
            basic_step(b, 1000 + 2000 * i)
        else:
            b.range(1000 + 2000 * i, 2000 + 2000 * i, message)
            if gpu_work:
                b.launch(1000 + 2000 * i + 10, 1000 + 2000 * i + 20, 1000 + 2000 * i + 100, 1000 + 2000 * i + 200)
    b.gpu_info(H100, 3_352_320_000_000)
    return b


def profile(*args):
    return CliRunner().invoke(main, ["profile", *map(str, args)])


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output
    return lines[-1]


def test_the_report_of_the_exported_trace_is_attributes_with_its_known_numbers(standin, monkeypatch):
    folder = standin(known_trace())
    monkeypatch.setattr(sys, "argv", ["/usr/bin/gapprof", "profile", "--as-typed"])
    out = folder / "traces" / "qwen2.5-run"
    result = profile(
        "-o", out, "--skip", "0", "--format", "json", "--per-step", "--", sys.executable, "-c", "print('decoding')"
    )
    assert result.exit_code == 0, result.output
    assert "decoding" in result.stderr  # the program's output goes to stderr: stdout is the report
    assert sorted(p.name for p in out.parent.iterdir()) == ["qwen2.5-run.nsys-rep", "qwen2.5-run.sqlite"]
    doc = json.loads(result.stdout)
    assert [(s["wall"], s["busy"], s["starved"], s["latency"], s["head"], s["tail"]) for s in doc["steps"]] == [
        (1000, 260, 150, 50, 100, 440)
    ] * 4
    assert doc["facts"]["prefill ranges (not steps, left out)"] == 1 and doc["facts"]["kernels per step"] == 3.0
    assert (
        "1 prefill ranges seen and left out: the steps are the ranges matching --range 'decode_step' "
        "(--range prefill attributes the prefills)" in doc["notes"]
    )
    sqlite_path = out.parent / "qwen2.5-run.sqlite"
    meta = {k: json.loads(v) for k, v in read_meta_text(sqlite3.connect(sqlite_path)).items()}
    assert meta["program"] == shlex.join([sys.executable, "-c", "print('decoding')"])
    assert meta["program_exit_status"] == 0
    assert meta["command"] == "gapprof profile --as-typed" and meta["nsys"] == "NVIDIA Nsight Systems version stand-in"
    assert meta["backend"] == "nsys" and meta["mark"] is None and "cpu" in meta and "captured_at" in meta
    # The same code path as attribute's: the table report is the same text.
    table = profile("-o", out, "--", sys.executable, "-c", "pass")
    attributed = CliRunner().invoke(main, ["attribute", str(sqlite_path)])
    assert table.exit_code == 0 and table.stdout == attributed.stdout
    assert "no warm-up in the trace's metadata: a tenth of the steps" in " ".join(table.stdout.split())


def test_without_polars_the_trace_is_written_and_the_attribute_command_printed(standin, monkeypatch):
    folder = standin(known_trace())
    monkeypatch.setitem(sys.modules, "gapprof.commands.attribute_cli", None)  # as on the GPU image: no polars
    result = profile(
        "-o",
        folder / "t.nsys-rep",
        "--skip",
        "2",
        "--range",
        "decode_.*",
        "--steps",
        "auto",
        "--",
        sys.executable,
        "-c",
        "pass",
    )
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert f"run: gapprof attribute {folder / 't.sqlite'} --range 'decode_.*' --steps auto --skip 2" in result.stderr
    assert (folder / "t.sqlite").exists()


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_mark_forward_marks_generate_of_an_unchanged_script_and_records_the_model(standin, tmp_path, cache):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    folder = standin(known_trace())
    # examples/generate.py as it is, its Qwen2.5-7B shapes swapped for tiny ones and run on the CPU.
    app = _write(
        tmp_path / "app.py",
        f"""
        import sys
        sys.path.insert(0, {str(REPO / "examples")!r})
        import generate
        from transformers import Qwen2Config
        generate.qwen2_5_7b_config = lambda: Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=256, max_position_embeddings=256)
        sys.argv = ["generate.py", "--device", "cpu", "--ctx", "7", "--new-tokens", "4"] + sys.argv[1:]
        generate.main()
        """,
    )
    result = profile(
        "--mark",
        "forward",
        "-o",
        folder / "t.nsys-rep",
        "--tables",
        "summary",
        "--",
        sys.executable,
        app,
        "--cache-implementation",
        cache,
    )
    assert result.exit_code == 0, result.output
    assert "generated 4 tokens after a 7-token prompt" in result.stderr
    events = [json.loads(line) for line in (tmp_path / "nvtx.log").read_text().splitlines()]
    # One range per top-level forward (the inner Qwen2Model is not marked again), each closed before the next.
    assert events[0::2] == [
        ["push", "gapprof", "prefill", None],
        ["push", "gapprof", "decode_step", 0],
        ["push", "gapprof", "decode_step", 1],
        ["push", "gapprof", "decode_step", 2],
    ]
    assert events[1::2] == [["pop", "gapprof"]] * 4
    meta = {k: json.loads(v) for k, v in read_meta_text(sqlite3.connect(folder / "t.sqlite")).items()}
    assert (meta["ctx"], meta["prefills"], meta["decode_steps"], meta["dtype"], meta["dtype_bytes"]) == (
        7,
        1,
        3,
        "bfloat16",
        2,
    )
    assert meta["config"]["hidden_size"] == 64 and meta["model"] == "Qwen2ForCausalLM"
    assert meta["mark"] == "transformers.modeling_utils:PreTrainedModel" and "unmarked_because" not in meta
    assert {"torch", "transformers", "python"} <= set(meta) and meta["range_message"] == "decode_step"
    assert "floor " in result.stdout  # the recorded config and prompt length give the floor without options


def test_transformers_compiled_decode_forward_is_marked_from_outside_the_compiled_code(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if not hasattr(torch, "compiler"):
        pytest.skip("torch.compile not available")
    _write(tmp_path / "site" / "nvtx" / "__init__.py", STANDIN_NVTX)
    app = _write(
        tmp_path / "app.py",
        """
        import torch
        from torch._dynamo.utils import counters
        from transformers import AutoModelForCausalLM, CompileConfig, Qwen2Config
        config = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=256, max_position_embeddings=256)
        model = AutoModelForCausalLM.from_config(config).eval()
        compile_config = CompileConfig(backend="eager", fullgraph=True)
        compile_config._compile_all_devices = True  # generate compiles on a GPU only, unless told
        prompt = torch.tensor([[1, 2, 3, 4, 5]])
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False,
                       cache_implementation="static", compile_config=compile_config)
        print("compiled", hasattr(model, "_compiled_call"), "graph breaks", sum(counters["graph_break"].values()))
        """,
    )
    log = tmp_path / "nvtx.log"
    env = profile_run.child_environment(
        profile_run.mark_target("forward", None),
        str(tmp_path),
        {
            **os.environ,
            "NVTX_LOG": str(log),
            "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO), os.environ.get("PYTHONPATH", "")]),
        },
    )
    done = subprocess.run([sys.executable, str(app)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "compiled True graph breaks 0" in done.stdout
    pushes = [json.loads(line)[2:] for line in log.read_text().splitlines() if line.startswith('["push"')]
    assert pushes == [["prefill", None], ["decode_step", 0], ["decode_step", 1]]


def test_mark_module_marks_the_outermost_call_of_its_class_and_chains_the_users_sitecustomize(tmp_path):
    """Torch-free: any class with __call__ is marked the same way; inputs are read by their .shape."""
    _write(tmp_path / "site" / "nvtx" / "__init__.py", STANDIN_NVTX)
    _write(tmp_path / "user_site" / "sitecustomize.py", "import builtins\nbuiltins.USER_SITE_RAN = True\n")
    _write(
        tmp_path / "code" / "toymod.py",
        """
        class Tokens:
            def __init__(self, *shape):
                self.shape = shape

        class Decoder:
            def __init__(self, inner=None):
                self.inner = inner

            def __call__(self, input_ids):
                return self.inner(input_ids) if self.inner else input_ids.shape[-1]
        """,
    )
    app = _write(
        tmp_path / "code" / "app.py",
        """
        import builtins
        import toymod
        model = toymod.Decoder(inner=toymod.Decoder())
        model(toymod.Tokens(1, 5))
        for _ in range(3):
            model(input_ids=toymod.Tokens(1, 1))
        print("user sitecustomize ran:", getattr(builtins, "USER_SITE_RAN", False))
        """,
    )
    log = tmp_path / "nvtx.log"
    paths = [tmp_path / "site", tmp_path / "user_site", REPO, *filter(None, [os.environ.get("PYTHONPATH")])]
    parent = {**os.environ, "NVTX_LOG": str(log), "PYTHONPATH": os.pathsep.join(map(str, paths))}
    target = profile_run.mark_target(None, "toymod:Decoder")
    env = profile_run.child_environment(target, str(tmp_path / "facts"), parent)
    (tmp_path / "facts").mkdir()
    done = subprocess.run([sys.executable, str(app)], env=env, capture_output=True, text=True, cwd=tmp_path / "code")
    assert done.returncode == 0, done.stderr
    assert "user sitecustomize ran: True" in done.stdout
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        ["push", "gapprof", "prefill", None],
        ["pop", "gapprof"],
        ["push", "gapprof", "decode_step", 0],
        ["pop", "gapprof"],
        ["push", "gapprof", "decode_step", 1],
        ["pop", "gapprof"],
        ["push", "gapprof", "decode_step", 2],
        ["pop", "gapprof"],
    ]
    (facts,) = [json.loads(p.read_text()) for p in (tmp_path / "facts").iterdir()]
    assert facts["target_imported"] and facts["patched"] and "mark_error" not in facts
    assert [(m["class"], m["prefill_tokens"], m["decode_steps"]) for m in facts["models"]] == [
        ("toymod.Decoder", [5], 3)
    ]


@pytest.mark.parametrize("program", [["no-such-program-for-gapprof"], None], ids=["missing", "fails"])
def test_a_failing_command_is_one_line_with_its_exit_status_and_last_lines(standin, program):
    folder = standin(known_trace())
    failing = [
        sys.executable,
        "-c",
        "import sys; print('loading', flush=True); print('boom: bad input', file=sys.stderr); sys.exit(3)",
    ]
    line = error_line(profile("-o", folder / "t", "--", *(program or failing)))
    if program:
        assert "exited with status 127 under nsys" in line and "not found" in line
    else:
        assert "exited with status 3 under nsys; its last lines: loading | boom: bad input" in line
    assert not (folder / "t.sqlite").exists()


def test_an_nsys_that_never_runs_the_command_is_one_line(tmp_path, monkeypatch):
    nsys = _write(tmp_path / "nsys", "#!/bin/sh\necho 'cannot start the target'\nexit 2\n", executable=True)
    monkeypatch.setenv("GAPPROF_NSYS", str(nsys))
    line = error_line(profile("-o", tmp_path / "t", "--", "python", "x.py"))
    assert "nsys exited with status 2 before `python x.py` ended; last lines: cannot start the target" in line


def test_no_nsys_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GAPPROF_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    line = error_line(profile("--", "python", "x.py"))
    assert "nsys not found: set GAPPROF_NSYS, put nsys on PATH" in line
    assert "--backend" not in line  # capture's way around nsys: profile has no such option


def test_a_program_without_gpu_work_is_one_line(standin):
    folder = standin(known_trace(gpu_work=False))
    line = error_line(profile("-o", folder / "t", "--", sys.executable, "-c", "pass"))
    assert f"ran no GPU work under nsys: {folder / 't.sqlite'} has no kernel, memcpy or memset" in line


def test_no_step_found_lists_the_ranges_seen_and_why_nothing_was_marked(standin, tmp_path):
    folder = standin(known_trace(steps=2, message="iteration"))  # two launches: too few to repeat as decode does
    line = error_line(profile("--mark", "forward", "-o", folder / "t", "--", sys.executable, "-c", "pass"))
    assert (
        f"no step found in {folder / 't.sqlite'}: no NVTX ranges match --range 'decode_step'; ranges found: "
        "iteration (2), gapprof:prefill (1); no periodic decode work found: the 2 GPU ops and host waits of the "
        "thread that launched the most GPU work repeat no sequence 3 times in a row; --mark forward marked no "
        "decode step: the program never imported transformers.modeling_utils"
    ) in line
    # Its own ranges are found with --range.
    assert profile("--range", "iteration", "-o", folder / "t", "--", sys.executable, "-c", "pass").exit_code == 0


def test_an_unmarked_program_has_its_steps_found_from_its_gpu_work(standin):
    b = TraceBuilder()
    host_synced_decode(b, 0, steps=4)
    folder = standin(b)
    result = profile(
        "-o", folder / "t", "--skip", "0", "--format", "json", "--tables", "steps", "--", sys.executable, "-c", "pass"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(s["wall"], s["busy"], s["head"], s["tail"]) for s in doc["steps"]] == [(430, 260, 100, 10)] * 4
    assert any(
        note.startswith(
            "steps found from the trace's GPU work (no NVTX range matches --range 'decode_step'): 4 decode steps"
        )
        for note in doc["notes"]
    )


def test_the_parent_and_the_site_hook_import_neither_torch_nor_polars():
    # The parent only launches nsys (the GPU image has no polars); the site hook runs in every Python the program
    # starts, so it must stay light.
    code = (
        "import sys; sys.modules.update(torch=None, polars=None, transformers=None); "
        "import gapprof.commands.profile_cli, gapprof.profiler.profile_run, gapprof.profiler.forward_marks"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_mark_module_and_names():
    with pytest.raises(GapprofError, match="--mark-module 'mymodel': expected MODULE:CLASS"):
        profile_run.mark_target(None, "mymodel")
    assert profile_run.mark_target("forward", None) == "transformers.modeling_utils:PreTrainedModel"
    assert profile_run.mark_target(None, None) is None
    assert [
        profile_run.program_name(c)
        for c in (
            ["python", "examples/generate.py", "--ctx", "8"],
            ["python3", "-m", "pkg.serve"],
            ["./bin/app", "x.py"],
            ["python", "run.qwen2.5.py"],
        )
    ] == ["generate", "serve", "app", "run.qwen2.5"]
