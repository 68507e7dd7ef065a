"""Nothing a user or a damaged file does may lose data, crash or lie: a fixed corpus of damaged inputs and unsafe
outputs, each ending as a one-line error or a right answer, with no input changed; then property-based mutations
of a small synthetic trace and ncu CSV (hypothesis), each ending as an answer or a one-line error."""

import csv
import hashlib
import io
import json
import lzma
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHIPPED_TRACES, basic_step, with_meta
from gapprof.analysis.readers import compressed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import TraceBuilder

import gapprof
from gapprof import models, output_files, result_files
from gapprof.cli import main
from gapprof.errors import GapprofError

GRAPHS = SHIPPED_TRACES / "h100-graphs.sqlite.xz"
GRAPHS_NCU = ("h100-graphs-ncu.csv.gz", "h100-graphs-ncu.json")
CONSTRUCTED_NCU = Path(__file__).parent / "data" / "ncu-raw-constructed.csv"
KERNEL, RUNTIME, NVTX = "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Each test unpacks into a cache of its own, beside its folder (whose files the tests compare)."""
    base = tmp_path.with_name(f"{tmp_path.name}-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    return base / "gapprof" / "unpacked"


def files_in(folder: Path) -> dict[str, str]:
    """Every file under `folder` (links not followed) -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The Error: line of a command that failed cleanly (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert result.exception.__class__ is SystemExit and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0]


def steps_trace(path: Path, count: int = 4) -> Path:
    b = TraceBuilder()
    for i in range(count):
        basic_step(b, offset=2000 * i)
    return b.write(path)


def altered(path: Path, *statements: str) -> Path:
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    return path


def nullable(table: str) -> str:
    """SQL that rebuilds `table` without its NOT NULL constraints (CREATE TABLE AS keeps none)."""
    return f"CREATE TABLE copied AS SELECT * FROM {table}; DROP TABLE {table}; ALTER TABLE copied RENAME TO {table}"


def shipped_copy(tmp_path: Path, *names: str) -> list[Path]:
    return [Path(shutil.copy(SHIPPED_TRACES / name, tmp_path / name)) for name in names]


# --- outputs: never over an input, whole or not at all --------------------------------------------------------


def test_an_output_naming_an_input_is_refused_and_the_input_kept(tmp_path):
    trace = steps_trace(tmp_path / "t.sqlite")
    os.link(trace, tmp_path / "hard.sqlite")
    (tmp_path / "soft.sqlite").symlink_to(trace)
    before = files_in(tmp_path)
    for output in (trace, tmp_path / "hard.sqlite", tmp_path / "soft.sqlite", tmp_path / "." / "t.sqlite"):
        assert "an input of this command" in one_line_error(invoke("attribute", trace, "-o", output))
    assert files_in(tmp_path) == before


def test_a_packed_trace_its_ncu_csv_and_the_metadata_beside_it_are_inputs(tmp_path):
    trace, csv_path, sidecar = shipped_copy(tmp_path, GRAPHS.name, *GRAPHS_NCU)
    before = files_in(tmp_path)
    for output in (trace, csv_path, sidecar):
        fmt = "json" if output.suffix == ".json" else "table"  # a format that fits the name: -o's suffix is checked
        assert "an input of this command" in one_line_error(
            invoke("attribute", trace, "--ncu", csv_path, "--tables", "summary", "--format", fmt, "-o", output)
        )
    assert "an input of this command" in one_line_error(
        invoke("ncu-report", csv_path, "--gpu", "h100", "--format", "json", "-o", sidecar)
    )
    assert files_in(tmp_path) == before


def test_a_failed_write_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch):
    trace = steps_trace(tmp_path / "t.sqlite")
    (tmp_path / "out.txt").write_text("old")

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output_files.os, "replace", full_disk)
    line = one_line_error(invoke("attribute", trace, "-o", tmp_path / "out.txt"))
    assert line == f"Error: {tmp_path / 'out.txt'}: cannot write (No space left on device)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "t.sqlite"]  # no temporary file left
    assert (tmp_path / "out.txt").read_text() == "old"


def test_a_full_device_as_output_or_stdout_is_one_line(tmp_path):
    trace = steps_trace(tmp_path / "t.sqlite")
    assert one_line_error(invoke("attribute", trace, "-o", "/dev/full")).endswith("(No space left on device)")
    assert Path("/dev/full").is_char_device()  # written in place, never replaced
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [sys.executable, "-m", "gapprof", "attribute", str(trace)], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == "Error: stdout: cannot write (No space left on device)"
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr


def _sweep(model: str) -> dict:
    row = {
        "model": model,
        "ctx": 2048,
        "runtime": "eager",
        "attn": "sdpa",
        "status": "ok",
        "reason": None,
        "steps": 4,
        "warmup": 1,
        "median_ms": 20.0,
        "p10_ms": 19.0,
        "p90_ms": 21.0,
        "floor_ms": 4.0,
        "floor_fraction": 0.2,
        "first_token": 1,
    }
    return {
        "command": f"gapprof sweep --models {model}",
        "finished_at": "2026-12-01T10:00:00+00:00",
        "grid": {
            "models": [model],
            "ctx": [2048],
            "runtimes": ["eager"],
            "steps": 4,
            "warmup": 1,
            "dtype": "bfloat16",
            "attn": "sdpa",
            "seed": 0,
            "device": "cuda",
        },
        "floor_convention": "weights once",
        "timing": "host timer",
        "machine": {"gpu_name": "NVIDIA H100"},
        "rows": [row],
    }


def test_a_sweep_set_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    result_files.write_sweep(_sweep("qwen2.5-7b"), tmp_path)
    before = files_in(tmp_path)

    def broken_plot(result, file):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(result_files, "plot_sweep", broken_plot)
    with pytest.raises(GapprofError, match="cannot write"):
        result_files.write_sweep(_sweep("llama-3.1-8b"), tmp_path)
    assert files_in(tmp_path) == before and len(before) == 4  # sweep.csv not new beside an old sweep.json


def test_sweep_merge_never_writes_over_a_part(tmp_path):
    for name, model in (("a", "qwen2.5-7b"), ("b", "llama-3.1-8b")):
        result_files.write_sweep(_sweep(model), tmp_path / name)
    before = files_in(tmp_path)
    line = one_line_error(invoke("sweep-merge", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "a"))
    assert "an input of this command" in line
    assert files_in(tmp_path) == before


# --- the unpack cache ------------------------------------------------------------------------------------------


def _summary(trace) -> str:
    result = invoke("attribute", trace, "--tables", "summary", "--format", "json")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_cache_entry_damaged_swapped_or_planted_as_a_link_is_rebuilt(tmp_path):
    (trace,) = shipped_copy(tmp_path, GRAPHS.name)
    expected = _summary(trace)
    entry = compressed.unpacked(trace)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for damage in (
        lambda: os.truncate(entry, 100_000),
        lambda: shutil.copy(steps_trace(tmp_path / "other.sqlite"), entry),
        lambda: (entry.unlink(), entry.symlink_to(victim)),
    ):
        damage()
        assert _summary(trace) == expected
    assert victim.read_text() == "keep" and not entry.is_symlink()
    assert oct(entry.parent.stat().st_mode & 0o777) == "0o700"


def test_the_cache_drops_the_entries_used_longest_ago(tmp_path, monkeypatch):
    first, second = shipped_copy(tmp_path, GRAPHS.name, "h200-graphs.sqlite.xz")
    old = compressed.unpacked(first)
    os.utime(old, (1, 1))
    monkeypatch.setattr(compressed, "CACHE_BYTES", old.stat().st_size + 1)
    new = compressed.unpacked(second)
    assert new.exists() and not old.exists() and not old.with_suffix(".json").exists()


def test_a_decompression_bomb_is_refused_and_leaves_nothing(tmp_path, cache):
    bomb = tmp_path / "bomb.sqlite.xz"
    bomb.write_bytes(lzma.compress(bytes(64 * 2**20)))
    line = one_line_error(invoke("attribute", bomb))
    assert f"{compressed.MAX_RATIO}x its packed size" in line
    assert list(cache.iterdir()) == []


def test_a_cache_folder_others_can_write_to_is_refused(tmp_path, cache):
    (trace,) = shipped_copy(tmp_path, GRAPHS.name)
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    assert "a folder of your own" in one_line_error(invoke("attribute", trace))


@pytest.mark.parametrize("name", ["t.sqlite", "t.json", "t.sqlite.xz", "t.nsys-rep"])
def test_a_fifo_named_like_a_trace_is_refused_without_blocking(tmp_path, name):
    os.mkfifo(tmp_path / name)
    assert one_line_error(invoke("attribute", tmp_path / name)).endswith("gapprof reads only regular files")


def test_a_device_is_refused():
    assert "a character device" in one_line_error(invoke("attribute", "/dev/zero"))


# --- traces ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statements, found",
    [
        (
            [f'UPDATE {KERNEL} SET "end" = 4611686018427387904 WHERE rowid = 5'],
            "1 GPU ops lie more than a day from the rest of the trace",
        ),
        (
            [f'UPDATE {NVTX} SET "end" = 4611686018427387904 WHERE rowid = 2'],
            "1 NVTX ranges lie more than a day from the rest of the trace",
        ),
        (
            [*nullable(KERNEL).split("; "), f"UPDATE {KERNEL} SET start = NULL WHERE rowid = 3"],
            "1 GPU ops have no start or end",
        ),
        (
            [*nullable(RUNTIME).split("; "), f'UPDATE {RUNTIME} SET "end" = NULL WHERE rowid = 3'],
            "1 API calls have no start or end",
        ),
        ([f"INSERT INTO {KERNEL} SELECT * FROM {KERNEL} WHERE rowid <= 2"], "2 GPU ops are recorded twice"),
        ([f"INSERT INTO {RUNTIME} SELECT * FROM {RUNTIME} WHERE rowid <= 3"], "3 API calls are recorded twice"),
        ([f"DELETE FROM {KERNEL} WHERE rowid = 7"], "1 launch calls inside 1 measured steps"),
    ],
)
def test_a_damaged_trace_is_refused_in_one_line(tmp_path, statements, found):
    trace = altered(steps_trace(tmp_path / "t.sqlite"), *statements)
    assert found in one_line_error(invoke("attribute", trace))


@pytest.mark.parametrize(
    "device_bytes_per_s, copy_gbps, found",
    [
        (-5, None, "TARGET_INFO_GPU.memoryBandwidth: -5e-09 GB/s, no DRAM's bandwidth (1 to 100,000 GB/s)"),
        (1, None, "TARGET_INFO_GPU.memoryBandwidth: 1e-09 GB/s, no DRAM's bandwidth"),
        (None, 1e-300, "copy benchmark at capture: 1e-300 GB/s, no DRAM's bandwidth"),
        (None, 1e300, "copy benchmark at capture: 1e+300 GB/s, no DRAM's bandwidth"),
    ],
)
def test_a_bandwidth_no_dram_has_is_refused(tmp_path, device_bytes_per_s, copy_gbps, found):
    # A negative one made the floor negative; one near 0 overflowed the floor's int64 ns (a polars traceback).
    b = with_meta(TraceBuilder())
    for i in range(4):
        basic_step(b, offset=2000 * i)
    b.rows["TARGET_INFO_GPU"][0]["memoryBandwidth"] = device_bytes_per_s
    b.meta["copy_bandwidth_gbps"] = copy_gbps
    assert found in one_line_error(invoke("attribute", b.write(tmp_path / "t.sqlite")))


def test_kernel_records_lost_inside_graph_replays_are_counted_with_a_note(tmp_path):
    # Every node of a replay carries the graph launch's correlationId: no launch lacks its op, only the counts show.
    entry = compressed.unpacked(Path(shutil.copy(GRAPHS, tmp_path / GRAPHS.name)))
    lossy = altered(Path(shutil.copy(entry, tmp_path / "lossy.sqlite")), f"DELETE FROM {KERNEL} WHERE rowid % 10 = 3")
    result = invoke("attribute", lossy, "--tables", "facts", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    facts = {row["key"]: row["value"] for row in doc["facts"]} if isinstance(doc["facts"], list) else doc["facts"]
    assert facts["measured steps with another number of GPU ops than the most common step"] > 0
    assert any("lost GPU records" in note for note in doc["notes"])
    whole = json.loads(invoke("attribute", GRAPHS, "--tables", "facts", "--format", "json").stdout)
    assert not any("lost GPU records" in note for note in whole["notes"])


def test_a_damaged_page_anywhere_gives_the_error_of_a_damaged_first_page(tmp_path):
    entry = compressed.unpacked(Path(shutil.copy(GRAPHS, tmp_path / GRAPHS.name)))
    lines = set()
    for offset in (100, entry.stat().st_size // 2):
        damaged = Path(shutil.copy(entry, tmp_path / f"damaged-{offset}.sqlite"))
        with open(damaged, "r+b") as f:
            f.seek(offset)
            f.write(b"\xff" * 4096)
        lines.add(one_line_error(invoke("attribute", damaged)).split(": ", 2)[2])
    assert lines == {"unreadable SQLite file (database disk image is malformed)"}


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("ctx", -5, "not a whole number from 0 to 2,147,483,647"),
        ("ctx", "abc", "not a whole number from 0 to 2,147,483,647"),
        ("ctx", 2**63, "not a whole number from 0 to 2,147,483,647"),
        ("steps", -1, "not a whole number, 0 or more"),
        ("copy_bandwidth_gbps", -3000, "not a finite number of GB/s above 0"),
        ("unprofiled_step_ms", [1.0, "NaN"], "not a list of finite times above 0"),
    ],
)
def test_capture_metadata_of_the_wrong_type_or_range_is_refused(tmp_path, key, value, what):
    b = TraceBuilder()
    for i in range(4):
        basic_step(b, offset=2000 * i)
    b.meta = {"model": "qwen2.5-7b", "ctx": 2048, key: value}
    trace = b.write(tmp_path / "t.sqlite")
    assert f"capture metadata {key} is {json.dumps(value)}, {what}" in one_line_error(invoke("attribute", trace))


def _config(**changes) -> dict:
    config = json.loads((Path(gapprof.__file__).parent / "configs" / "qwen2.5-7b.json").read_text())
    return {key: value for key, value in (config | changes).items() if value != "drop"}


@pytest.mark.parametrize(
    "config, found",
    [
        ([1, 2], "not a JSON object"),
        (_config(num_hidden_layers="drop"), "no num_hidden_layers"),
        (_config(num_attention_heads=0), "num_attention_heads is 0, not a whole number above 0"),
        (_config(hidden_size=-3584), "hidden_size is -3584, not a whole number above 0"),
        (_config(vocab_size="big"), 'vocab_size is "big", not a whole number above 0'),
        (_config(intermediate_size=2.5), "intermediate_size is 2.5, not a whole number above 0"),
        (_config(num_hidden_layers=True), "num_hidden_layers is true, not a whole number above 0"),
        (_config(vocab_size=10**30), "beyond 64-bit counts"),
    ],
)
def test_a_config_json_the_floor_cannot_use_is_refused(tmp_path, config, found):
    trace = steps_trace(tmp_path / "t.sqlite")
    (tmp_path / "config.json").write_text(json.dumps(config))
    line = one_line_error(invoke("attribute", trace, "--model", tmp_path / "config.json", "--ctx", 8, "--gpu", "h100"))
    assert found in line


def test_a_capture_config_the_floor_cannot_use_is_refused(tmp_path):
    b = TraceBuilder()
    for i in range(4):
        basic_step(b, offset=2000 * i)
    b.meta = {"model": "qwen2.5-7b", "ctx": 2048, "config": _config(num_key_value_heads=0)}
    line = one_line_error(invoke("attribute", b.write(tmp_path / "t.sqlite")))
    assert "capture metadata config: num_key_value_heads is 0, not a whole number above 0" in line


QUANT = {"method": "int4", "lm_head": False, "bits_per_weight": 4.5, "kinds": {"q_proj": {"read_bytes": 1000}}}


@pytest.mark.parametrize(
    "quant, found",
    [
        ({"method": "int4"}, "lm_head is not true or false"),
        ({**QUANT, "method": "int3"}, 'method is "int3", none of int8'),
        ({**QUANT, "kinds": [1]}, "kinds is not an object of objects"),
        ({**QUANT, "kinds": {"q_proj": {"read_bytes": -(10**12)}}}, "a kind's read_bytes is not a whole number"),
        ({**QUANT, "bits_per_weight": "x"}, 'bits_per_weight is "x", not a finite number above 0'),
    ],
)
def test_a_damaged_quantisation_record_is_refused(tmp_path, quant, found):
    b = with_meta(TraceBuilder())
    for i in range(4):
        basic_step(b, offset=2000 * i)
    b.meta["quant"] = quant
    assert f"capture metadata quant: {found}" in one_line_error(invoke("attribute", b.write(tmp_path / "t.sqlite")))


def test_a_config_without_kv_heads_takes_its_attention_heads():
    assert models.ModelSpec.from_config("m", _config(num_key_value_heads=None)).kv_heads == 28


@pytest.mark.parametrize("command", ["attribute", "compare", "project", "quant-table"])
def test_a_context_beyond_any_model_is_refused(tmp_path, command):
    b = with_meta(TraceBuilder())
    for i in range(4):
        basic_step(b, offset=2000 * i)
    trace = b.write(tmp_path / "t.sqlite")
    extra = {"attribute": [], "compare": [trace], "project": ["--to", "h200"], "quant-table": []}
    result = invoke(command, trace, *extra[command], "--ctx", 2**63, "--force")
    assert "ctx 9,223,372,036,854,775,808: more than 2,147,483,647 tokens" in one_line_error(result)


def test_step_payloads_that_are_no_step_indices_are_refused(tmp_path):
    b = with_meta(TraceBuilder())
    for i in range(4):
        basic_step(b, offset=2000 * i)
    b.rows["NVTX_EVENTS"][-1]["uint64Value"] = 2**62
    line = one_line_error(invoke("attribute", b.write(tmp_path / "t.sqlite")))
    assert "step contexts from 2,048 to 4,611,686,018,427,389,952 tokens" in line and "no step indices" in line


def test_warm_up_steps_before_a_first_measured_step_at_ctx_0_read_no_negative_context(tmp_path):
    b = with_meta(TraceBuilder())
    for i in range(4):
        basic_step(b, offset=2000 * i)
    trace = b.write(tmp_path / "t.sqlite")
    result = invoke("attribute", trace, "--ctx", 0, "--skip", 2, "--force", "--tables", "steps", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [row["ctx"] for row in json.loads(result.stdout)["steps"]] == [0, 0, 0, 1]


# --- ncu CSVs ----------------------------------------------------------------------------------------------------


def _ncu_rows() -> list[list[str]]:
    return list(csv.reader(io.StringIO(CONSTRUCTED_NCU.read_text())))


def _write_ncu(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


@pytest.mark.parametrize(
    "row, column, value, found",
    [
        (2, "dram__bytes_read.sum", "-0.001", "has -0.001 for dram__bytes_read.sum"),
        (2, "dram__bytes_read.sum", "inf", "has inf for dram__bytes_read.sum"),
        (2, "gpu__time_duration.sum", "nan", "has nan for gpu__time_duration.sum"),
        (2, "gpu__time_duration.sum", "fast", "'fast' for gpu__time_duration.sum, not a number"),
        (1, "dram__bytes_read.sum", "Gbit", "unknown unit 'Gbit'"),
        (1, "gpu__time_duration.sum", "ns", "faster than any GPU's DRAM"),  # 0.01 GB in 4 ns
        (3, "ID", "0", "ID 0 appears 2 times"),
    ],
)
def test_an_impossible_ncu_csv_is_refused(tmp_path, row, column, value, found):
    rows = _ncu_rows()
    rows[row][rows[0].index(column)] = value
    path = _write_ncu(tmp_path / "t-ncu.csv", rows)
    assert found in one_line_error(invoke("ncu-report", path, "--gpu", "h100"))


def test_an_ncu_csv_faster_than_the_gpu_named_is_refused():
    # Its DRAM time at the L4's peak would exceed the kernels' own time: a negative rest.
    line = one_line_error(invoke("ncu-report", CONSTRUCTED_NCU, "--gpu", "l4"))
    assert "2 kernels move their bytes faster than the L4 datasheet peak of 300 GB/s (ID 2: 2,503 GB/s)" in line


@pytest.mark.parametrize("sidecar, found", [("{not json", "is not JSON"), ("[1, 2]", "is not a JSON object")])
def test_an_ncu_sidecar_that_is_no_json_object_is_refused(tmp_path, sidecar, found):
    path = _write_ncu(tmp_path / "t-ncu.csv", _ncu_rows())
    (tmp_path / "t-ncu.json").write_text(sidecar)
    assert found in one_line_error(invoke("ncu-report", path, "--gpu", "h100"))


# --- GPU profiles, what-if values, the Python API --------------------------------------------------------------


def _profile(tmp_path: Path, name: str, **changes) -> Path:
    doc = json.loads((Path(gapprof.__file__).parent / "gpu_profiles" / "h200.json").read_text())
    for section, values in changes.items():
        doc[section] |= values
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_a_gpu_profile_serves_only_its_own_gpu(tmp_path):
    (trace,) = shipped_copy(tmp_path, GRAPHS.name)
    relabelled = _profile(tmp_path, "l4.json", gpu={"key": "l4"})
    line = one_line_error(invoke("project", trace, "--to", "l4", "--reference", trace, "--gpu-profile", relabelled))
    assert "gpu.key is 'l4' but gpu.name 'NVIDIA H200' is the H200" in line


def test_a_measured_bandwidth_above_peak_is_capped_in_project(tmp_path):
    trace, csv_path, _ = shipped_copy(tmp_path, GRAPHS.name, *GRAPHS_NCU)
    fast = _profile(tmp_path, "h200.json", fit={"read_gbps": 9000.0})
    result = invoke("project", trace, "--to", "h200", "--ncu", csv_path, "--gpu-profile", fast, "--format", "json")
    assert result.exit_code == 0, result.output
    model = {row["gpu"]: row for row in json.loads(result.stdout)["kernel model"]}
    assert model["H200"]["achievable_gbps"] == 4800
    assert any("above the peak: capped at it" in note for note in json.loads(result.stdout)["notes"])


@pytest.mark.parametrize(
    "flags",
    [
        ("--launch-cost-scale", "inf"),
        ("--launch-cost-scale", "nan"),
        ("--graphs", "--graph-launch-us", "inf"),
        ("--fixed-kernel-us", "nan"),
        ("--kernel-scale", "attention=inf"),
        ("--launch-cost-scale", "1e300"),  # finite, but its replayed times overflowed 64-bit ns
        ("--graphs", "--graph-launch-us", "1e300"),
        ("--fixed-kernel-us", "1e300"),
        ("--kernel-scale", "attention=1e300"),
    ],
)
def test_a_non_finite_or_overflowing_what_if_value_is_refused(tmp_path, flags):
    trace = steps_trace(tmp_path / "t.sqlite")
    assert "finite number" in one_line_error(invoke("project", trace, "--to", "h200", *flags))


@pytest.mark.parametrize(
    "options, found",
    [
        ({"ctx": -100}, "ctx=-100: a whole number, 0 or more"),
        ({"ctx": "abc"}, "ctx='abc': a whole number, 0 or more"),
        ({"model": "llama-3.1-8b"}, "--model llama-3.1-8b but the trace was captured with qwen2.5-7b; force=True"),
        ({"top": -1}, "top=-1: a whole number, 0 or more"),
        ({"top": 2.5}, "top=2.5: a whole number, 0 or more"),
    ],
)
def test_the_python_api_runs_the_command_checks(options, found):
    with pytest.raises(GapprofError) as error:
        gapprof.attribute(GRAPHS, **options)
    assert found in str(error.value)


@pytest.mark.parametrize("command", ["attribute", "ncu-report"])
def test_a_top_beyond_64_bits_shows_every_row(tmp_path, command):
    given = steps_trace(tmp_path / "t.sqlite") if command == "attribute" else CONSTRUCTED_NCU
    extra = ["--tables", "kernels"] if command == "attribute" else ["--gpu", "h100"]
    every, huge = (invoke(command, given, *extra, "--format", "json", "--top", top) for top in (0, 2**64))
    assert huge.exit_code == 0, huge.output
    assert huge.stdout == every.stdout


# --- property-based: mutated traces and CSVs end as an answer or one line ------------------------------------

VALUES = st.one_of(
    st.sampled_from([None, 0, -1, 1, 2**31, 2**62, 2**63 - 1, -(2**63)]), st.integers(min_value=-5000, max_value=10_000)
)
COLUMNS = {
    KERNEL: ("start", "end", "correlationId", "streamId"),
    RUNTIME: ("start", "end", "correlationId"),
    NVTX: ("start", "end"),
}
MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from(sorted(COLUMNS)), st.integers(1, 24), st.data()),
        st.tuples(st.just("delete"), st.sampled_from(sorted(COLUMNS)), st.integers(1, 24), st.none()),
        st.tuples(st.just("repeat"), st.sampled_from(sorted(COLUMNS)), st.integers(1, 24), st.none()),
    ),
    min_size=1,
    max_size=3,
)


def _mutate(conn, kind: str, table: str, row: int, data) -> None:
    if kind == "set":
        column = data.draw(st.sampled_from(COLUMNS[table]))
        conn.execute(f'UPDATE {table} SET "{column}" = ? WHERE rowid = ?', (data.draw(VALUES), row))
    elif kind == "delete":
        conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (row,))
    else:
        conn.execute(f"INSERT INTO {table} SELECT * FROM {table} WHERE rowid = ?", (row,))


def _answer_or_one_line(result) -> None:
    if result.exit_code == 0:
        assert "Traceback" not in result.output
        summary = json.loads(result.stdout)["summary"]
        assert all(
            math.isfinite(row["median_ms"]) and row["median_ms"] >= 0 for row in summary if row["median_ms"] is not None
        )
    else:
        one_line_error(result)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=MUTATIONS)
def test_a_mutated_trace_gives_an_answer_or_one_line(tmp_path_factory, mutations):
    folder = tmp_path_factory.mktemp("mutated")
    trace = steps_trace(folder / "t.sqlite")
    with sqlite3.connect(trace) as conn:
        for statement in [*nullable(KERNEL).split("; "), *nullable(RUNTIME).split("; "), *nullable(NVTX).split("; ")]:
            conn.execute(statement)
        for mutation in mutations:
            _mutate(conn, *mutation)
    before = files_in(folder)
    _answer_or_one_line(invoke("attribute", trace, "--tables", "summary", "--format", "json"))
    assert files_in(folder) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    row=st.integers(1, 15),
    column=st.sampled_from(["ID", "dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum"]),
    value=st.one_of(st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True).map(str)),
)
def test_a_mutated_ncu_csv_gives_an_answer_or_one_line(tmp_path_factory, row, column, value):
    folder = tmp_path_factory.mktemp("ncu")
    rows = _ncu_rows()
    rows[row][rows[0].index(column)] = value
    path = _write_ncu(folder / "t-ncu.csv", rows)
    before = files_in(folder)
    result = invoke("ncu-report", path, "--gpu", "h100", "--format", "json")
    if result.exit_code != 0:
        one_line_error(result)
    assert files_in(folder) == before
