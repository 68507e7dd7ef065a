"""Every file name gapprof derives from another keeps the dots of model names (qwen2.5-7b, mistral-7b-v0.3)."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from gapprof.analysis import cross_gpu_columns
from gapprof.analysis.readers import ncu, nsys
from gapprof.profiler import ncu_capture, nsys_capture, sweep_runner
from gapprof.profiler.request import CaptureRequest

from gapprof.commands.capture_cli import trace_output
from gapprof.errors import GapprofError
from gapprof.paths import sibling, strip_extension

NAMES = ["qwen2.5-7b-eager", "mistral-7b-v0.3-graphs", "h100"]


@pytest.mark.parametrize("name", NAMES)
def test_sibling_replaces_only_a_known_extension(name):
    for extension in (".nsys-rep", ".sqlite", ".csv", ""):
        assert sibling(Path("d", name + extension), ".sqlite") == Path("d", name + ".sqlite")
    assert strip_extension(Path("d", name + ".meta.json")) == Path("d", name)


def _fake_tool(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\nimport json, pathlib, sqlite3, sys\nargs = sys.argv[1:]\n{body}")
    path.chmod(0o755)
    return str(path)


# Stands in for nsys: `profile -o BASE` writes BASE.nsys-rep (nsys appends the extension) and the session's
# metadata file (the last argument); `export -o OUT` writes an SQLite file.
FAKE_NSYS = """
if args[0] == "profile":
    pathlib.Path(args[args.index("-o") + 1] + ".nsys-rep").write_text("report")
    pathlib.Path(args[-1]).write_text(json.dumps({"model": "qwen2.5-7b"}))
else:
    sqlite3.connect(args[args.index("-o") + 1]).close()
"""


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("given", [".nsys-rep", ""])
def test_nsys_capture_finds_the_report_and_export_of_a_dotted_name(tmp_path, monkeypatch, name, given):
    monkeypatch.setenv("GAPPROF_NSYS", _fake_tool(tmp_path / "nsys", FAKE_NSYS))
    out = tmp_path / "traces"
    report, sqlite_path, meta = nsys_capture.capture_with_nsys(
        CaptureRequest(), out / (name + given), "gapprof capture"
    )
    assert (report, sqlite_path) == (out / f"{name}.nsys-rep", out / f"{name}.sqlite")
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.nsys-rep", f"{name}.sqlite"]
    assert meta["command"] == "gapprof capture"


def test_nsys_that_writes_elsewhere_is_named_in_the_error(tmp_path, monkeypatch):
    body = FAKE_NSYS.replace('+ ".nsys-rep"', '+ "-other.nsys-rep"')
    monkeypatch.setenv("GAPPROF_NSYS", _fake_tool(tmp_path / "nsys", body))
    with pytest.raises(
        GapprofError,
        match=r"did not write .*qwen2.5-7b\.nsys-rep; files it wrote there: "
        r"qwen2.5-7b-other.nsys-rep",
    ):
        nsys_capture.capture_with_nsys(CaptureRequest(), tmp_path / "out" / "qwen2.5-7b.nsys-rep", "gapprof capture")


# Stands in for ncu: the profiled run writes BASE.ncu-rep and the metadata; --import prints a CSV.
FAKE_NCU = """
if "--import" in args:
    print('"ID","Kernel Name"')
else:
    pathlib.Path(args[args.index("-o") + 1] + ".ncu-rep").write_text("report")
    pathlib.Path(args[-1]).write_text(json.dumps({"model": "qwen2.5-7b"}))
"""


@pytest.mark.parametrize("name", ["qwen2.5-7b-eager-ncu", "h100-ncu"])
def test_ncu_keeps_the_report_csv_and_metadata_under_a_dotted_name(tmp_path, monkeypatch, name):
    monkeypatch.setenv("GAPPROF_NCU", _fake_tool(tmp_path / "ncu", FAKE_NCU))
    out = tmp_path / "traces"
    written = ncu_capture.run_ncu(CaptureRequest(), out / f"{name}.csv", 10, "gapprof ncu", keep_report=True)
    assert written == (out / f"{name}.csv", out / f"{name}.json")
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{name}.csv", f"{name}.json", f"{name}.ncu-rep"])
    assert json.loads((out / f"{name}.json").read_text())["command"] == "gapprof ncu"
    assert ncu.read_sidecar(out / f"{name}.csv")["command"] == "gapprof ncu"


@pytest.mark.parametrize("backend, extension", [("nsys", ".nsys-rep"), ("cupti", ".sqlite")])
def test_capture_output_keeps_the_model_name_whole(backend, extension):
    default = Path("traces", "qwen2.5-7b-eager.nsys-rep" if backend == "nsys" else "qwen2.5-7b-eager-cupti.sqlite")
    assert trace_output(None, "qwen2.5-7b", "eager", backend) == default
    assert trace_output(Path("x/mistral-7b-v0.3"), "m", "r", backend) == Path(f"x/mistral-7b-v0.3{extension}")
    assert trace_output(Path("x/h100.sqlite"), "m", "r", backend) == Path(f"x/h100{extension}")


@pytest.mark.parametrize("backend", ["nsys", "cupti"])
def test_sweep_profile_points_each_row_at_its_own_sqlite(tmp_path, monkeypatch, backend):
    outputs = []

    def capture(argv, **_):
        outputs.append(argv[argv.index("-o") + 1])
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(sweep_runner.subprocess, "run", capture)
    rows = [
        {"status": "ok", "model": m, "ctx": 2048, "runtime": "eager", "steps": 2, "warmup": 1}
        for m in ("llama-3.1-8b", "tiny-qwen2")
    ]
    sweep_runner.profile_rows(rows, tmp_path, backend, "bfloat16", "sdpa", 0)
    extension = ".nsys-rep" if backend == "nsys" else ".sqlite"
    expected = [tmp_path / "traces" / f"{m}-ctx2048-eager{extension}" for m in ("llama-3.1-8b", "tiny-qwen2")]
    assert outputs == [str(path) for path in expected]
    assert [r["trace"] for r in rows] == [
        str(Path("traces", f"{m}-ctx2048-eager.sqlite")) for m in ("llama-3.1-8b", "tiny-qwen2")
    ]


@pytest.mark.parametrize("name", NAMES)
def test_a_report_is_read_through_the_sqlite_beside_it(tmp_path, name):
    (tmp_path / f"{name}.nsys-rep").write_text("report")
    sqlite3.connect(tmp_path / f"{name}.sqlite").close()
    assert nsys.sqlite_for(tmp_path / f"{name}.nsys-rep") == tmp_path / f"{name}.sqlite"


def test_compare_labels_keep_the_dots_of_a_name(tmp_path):
    paths = [Path("a/qwen2.5-7b-eager.sqlite"), Path("b/qwen2.5-7b-eager.sqlite"), Path("a/h100.nsys-rep")]
    assert cross_gpu_columns.labels(paths) == ["a/qwen2.5-7b-eager", "b/qwen2.5-7b-eager", "h100"]
