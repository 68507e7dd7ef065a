"""`gapprof attribute` end to end through click, including every bad input: one line, exit status 1."""

import json
import sqlite3
import stat

import pytest
from click.testing import CliRunner
from conftest import basic_step
from synthetic import TraceBuilder

from gapprof.cli import main


@pytest.fixture
def trace(tmp_path):
    b = TraceBuilder()
    for i in range(4):
        basic_step(b, offset=2000 * i)
    b.range(9000, 9100, "other_range")
    b.gpu_info("NVIDIA H100 80GB HBM3", 3_352_320_000_000)
    return b.write(tmp_path / "run.sqlite")


def run(*args, env=None):
    return CliRunner().invoke(main, ["attribute", *map(str, args)], env=env)


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output
    return lines[-1]


def test_table_output_and_notes(trace):
    result = run(trace)
    assert result.exit_code == 0, result.output
    for section in ("summary", "facts", "classes", "kernels", "api"):
        assert f"\n{section}\n" in f"\n{result.stdout}"
    # Notes follow the tables on stdout, so that a saved report keeps them; stderr carries progress only.
    notes = result.stdout.split("\n\n")[-1]
    assert "skipping the first 1 steps" in notes  # 4 steps, no metadata
    assert "no floor" in notes
    assert "skipping" not in result.stderr


def test_json_holds_every_number(trace):
    result = run(trace, "--format", "json", "--per-step", "--skip", "0")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"summary", "facts", "classes", "kernels", "api", "findings", "steps", "notes"}
    assert len(doc["steps"]) == 4
    for step in doc["steps"]:
        assert step["wall"] == step["busy"] + step["starved"] + step["latency"] + step["head"] + step["tail"]
        assert (step["busy"], step["starved"], step["latency"]) == (260, 150, 50)
    assert doc["facts"]["kernels per step"] == 3.0


def test_floor_options_and_convention(trace):
    result = run(trace, "--model", "tiny-qwen2", "--ctx", "64", "--count-embedding", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "whole embedding table counted" in doc["facts"]["floor convention"]
    assert any("whole embedding table counted" in note for note in doc["notes"])
    assert doc["facts"]["floor/excess split against"] == "datasheet"
    assert {"floor", "excess"} <= {row["term"] for row in doc["summary"]}


def test_csv_markdown_and_output_file(trace, tmp_path):
    csv = run(trace, "--format", "csv", "--tables", "summary,kernels", "-o", tmp_path / "tables")
    assert csv.exit_code == 0 and (tmp_path / "tables" / "summary.csv").read_text().startswith("term,median_ms,")
    assert (tmp_path / "tables" / "kernels.csv").read_text().startswith("name,class,")
    md = run(trace, "--format", "markdown", "--tables", "api")
    assert md.stdout.startswith("## api\n\n| name | source |")
    out = tmp_path / "out.json"
    written = run(trace, "--format", "json", "-o", out)
    assert written.exit_code == 0 and written.stdout == ""
    assert json.loads(out.read_text())["facts"]["measured steps"] == 3


def test_top_limits_kernel_rows(trace):
    doc = json.loads(run(trace, "--format", "json", "--top", "2").stdout)
    assert len(doc["kernels"]) == 2
    assert len(json.loads(run(trace, "--format", "json", "--top", "0").stdout)["kernels"]) == 4


def test_unknown_table_is_a_usage_error(trace):
    result = run(trace, "--tables", "summary,nope")
    assert result.exit_code == 2 and "unknown table nope" in result.output


def test_missing_file(tmp_path):
    assert error_line(run(tmp_path / "none.sqlite")) == f"Error: {tmp_path / 'none.sqlite'}: no such file"


def test_not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("hello")
    assert "not an SQLite file" in error_line(run(path))


@pytest.mark.parametrize("table, flag", [("CUPTI_ACTIVITY_KIND_KERNEL", "-t cuda"), ("NVTX_EVENTS", "-t nvtx")])
def test_missing_tables_name_the_nsys_flag(tmp_path, table, flag):
    b = TraceBuilder()
    basic_step(b)
    line = error_line(run(b.write(tmp_path / "t.sqlite", skip_tables=(table,))))
    assert table in line and flag in line


def test_empty_sqlite_names_what_is_missing(tmp_path):
    # NVTX is not demanded: a trace captured with `-t cuda` alone has its steps found.
    path = tmp_path / "empty.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE x (a)").connection.close()
    line = error_line(run(path))
    assert "-t cuda" in line and "StringIds" in line and "-t nvtx" not in line


def test_no_matching_ranges_lists_names_with_counts(trace):
    line = error_line(run(trace, "--range", "step"))
    assert line == "Error: no NVTX ranges match --range 'step'; ranges found: decode_step (4), other_range (1)"


@pytest.mark.parametrize(
    "pattern, why",
    [
        ("(", "unclosed group"),
        ("(?=decode)decode_step", "look-around"),  # Python's re takes it; polars, which runs it, does not
        ("a{99999999}", "exceeds size limit"),
    ],
)
def test_bad_regex(trace, pattern, why):
    line = error_line(run(trace, "--range", pattern))
    assert "not a valid regular expression" in line and why in line


def test_unknown_gpu_lists_known_ones(trace):
    line = error_line(run(trace, "--model", "tiny-qwen2", "--ctx", "8", "--gpu", "voodoo5"))
    assert "unknown GPU 'voodoo5'" in line and "h100-sxm" in line and "rtx-4090" in line


def test_unknown_model(trace):
    assert "unknown model 'gpt-9'" in error_line(run(trace, "--model", "gpt-9", "--ctx", "8"))


def test_skip_past_every_step(trace):
    assert "all steps are warm-up" in error_line(run(trace, "--skip", "4"))


def test_nsys_rep_uses_the_sqlite_beside_it(trace):
    rep = trace.with_suffix(".nsys-rep")
    rep.write_bytes(b"not read")
    assert run(rep).exit_code == 0


def test_an_xz_compressed_export_reads_as_the_sqlite(trace, tmp_path):
    import lzma

    packed = tmp_path / "packed" / "run.sqlite.xz"
    packed.parent.mkdir()
    packed.write_bytes(lzma.compress(trace.read_bytes()))
    plain, unpacked = run(trace, "--format", "json"), run(packed, "--format", "json")
    assert plain.exit_code == unpacked.exit_code == 0, unpacked.output
    assert json.loads(unpacked.stdout)["summary"] == json.loads(plain.stdout)["summary"]
    rep = packed.with_name("run.nsys-rep")  # a report with only the compressed export beside it
    rep.write_bytes(b"not read")
    assert json.loads(run(rep, "--format", "json").stdout)["summary"] == json.loads(plain.stdout)["summary"]
    damaged = tmp_path / "damaged.sqlite.xz"
    damaged.write_bytes(lzma.compress(trace.read_bytes())[:100])
    assert error_line(run(damaged)).startswith(f"Error: {damaged}: not an xz-compressed trace")


def test_nsys_rep_without_sqlite_or_nsys(tmp_path):
    rep = tmp_path / "h100.nsys-rep"
    rep.write_bytes(b"rep")
    empty = tmp_path / "bin"
    empty.mkdir()
    line = error_line(run(rep, env={"PATH": str(empty), "GAPPROF_NSYS": ""}))
    assert "no h100.sqlite beside it and no nsys" in line
    assert f"nsys export --type sqlite --output {tmp_path / 'h100.sqlite'} {rep}" in line


def test_nsys_rep_exported_with_gapprof_nsys(tmp_path, trace):
    rep = tmp_path / "fresh.nsys-rep"
    rep.write_bytes(b"rep")
    fake = tmp_path / "nsys"
    # Stands in for `nsys export --type sqlite --force-overwrite=true -o OUT REP`: copies a ready trace to OUT.
    fake.write_text(f'#!/bin/sh\ncp {trace} "$6"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = run(rep, "--format", "json", env={"GAPPROF_NSYS": str(fake)})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fresh.sqlite").exists()


def test_failing_nsys_export(tmp_path):
    rep = tmp_path / "bad.nsys-rep"
    rep.write_bytes(b"rep")
    fake = tmp_path / "nsys"
    fake.write_text("#!/bin/sh\necho 'cannot open report' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert "cannot open report" in error_line(run(rep, env={"GAPPROF_NSYS": str(fake)}))


@pytest.mark.parametrize("pattern, left_out", [("decode_step", 2), ("prefill|decode_step", 0)])
def test_prefill_ranges_are_no_steps_and_are_counted(tmp_path, pattern, left_out):
    b = TraceBuilder()
    b.domain("gapprof", 1)
    for i in range(2):
        b.range(10_000 * i, 10_000 * i + 900, "prefill", domain_id=1)
        for j in range(3):
            basic_step(b, offset=10_000 * i + 1000 + 2000 * j)
    result = run(b.write(tmp_path / "marked.sqlite"), "--range", pattern, "--skip", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["facts"]["steps found"] == 6 + (2 - left_out)
    assert doc["facts"].get("prefill ranges (not steps, left out)", 0) == left_out
    seen = any(note.startswith(f"{left_out} prefill ranges seen and left out") for note in doc["notes"])
    assert seen == bool(left_out)
