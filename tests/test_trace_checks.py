"""Damaged or inconsistent traces: refused in one line where the anatomy would be wrong, otherwise counted in
the facts table (analysis/trace_checks.py), never an IdentityError or a silently wrong number."""

import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import basic_step
from gapprof.analysis.attribution import Options, analyze, facts_table
from gapprof.analysis.readers.compressed import unpacked
from synthetic import PID, TraceBuilder

from gapprof import trace_schema
from gapprof.cli import main

GRAPHS = Path(__file__).resolve().parents[1] / "traces" / "h200-graphs.sqlite.xz"


def steps(count: int = 4) -> TraceBuilder:
    """`count` basic steps 2000 ns apart; without metadata the first is warm-up."""
    b = TraceBuilder()
    for i in range(count):
        basic_step(b, offset=2000 * i)
    return b


def refusal(path) -> str:
    """The one line `gapprof attribute` fails with."""
    result = CliRunner().invoke(main, ["attribute", str(path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    (line,) = result.stderr.strip().splitlines()[-1:]
    return line


def facts(path) -> dict:
    return facts_table(analyze(path, Options()))


def altered_copy(tmp_path, *statements: str) -> Path:
    """traces/h200-graphs.sqlite.xz unpacked and changed by SQL."""
    path = Path(shutil.copy(unpacked(GRAPHS), tmp_path / "altered.sqlite"))
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
    return path


@pytest.mark.parametrize(
    "table, where, found",
    [
        ("CUPTI_ACTIVITY_KIND_KERNEL", "rowid = 5", "1 GPU ops end before they start"),
        ("NVTX_EVENTS", "start = 4000", "1 NVTX ranges end before they start"),
        ("CUPTI_ACTIVITY_KIND_RUNTIME", "start = 2010", "1 API calls end before they start"),
    ],
)
def test_an_interval_that_ends_before_it_starts_is_refused(tmp_path, table, where, found):
    path = steps().write(tmp_path / "t.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute(f'UPDATE {table} SET "end" = start - 1 WHERE {where}')
    assert found in refusal(path)


def test_negative_timestamps_are_refused_not_dropped(tmp_path):
    b = steps()
    b.kernel(-300, -200, b.call(2050, 2060))  # launched in step 1, timed before the session began
    assert "1 GPU ops have negative timestamps" in refusal(b.write(tmp_path / "t.sqlite"))


def test_kernels_that_end_before_they_start_in_a_real_trace_are_refused(tmp_path):
    path = altered_copy(tmp_path, 'UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET "end" = start - 1000 WHERE rowid % 500 = 0')
    assert (
        refusal(path) == f"Error: {path}: damaged timestamps (73 GPU ops end before they start): the steps "
        "cannot be attributed"
    )


def test_lost_launch_calls_in_measured_steps_are_refused(tmp_path):
    path = altered_copy(tmp_path, "DELETE FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE rowid % 3 = 0")
    line = refusal(path)
    assert "9,265 GPU ops inside 13 measured steps (the first: step 5) have no launch call" in line
    assert "busy time would be wrong" in line


def test_a_kernel_without_its_launch_call_in_a_measured_step_is_refused(tmp_path):
    b = steps()
    b.kernel(2600, 2700, correlation=999)  # inside step 1; no API call has correlationId 999
    assert "1 GPU ops inside 1 measured steps (the first: step 1) have no launch call" in refusal(
        b.write(tmp_path / "t.sqlite")
    )


def test_unlaunched_work_outside_the_measured_steps_is_counted_only(tmp_path):
    b = steps()
    b.kernel(600, 700, correlation=997)  # in the warm-up step
    b.kernel(1500, 1600, correlation=998)  # between steps
    b.kernel(2600, 2700, correlation=999, pid=PID + 1)  # in step 1's time, another process
    found = facts(b.write(tmp_path / "t.sqlite"))
    assert found["GPU ops without a launch call"] == 3
    assert found["GPU ops not launched inside any step"] == 3
    assert found["kernels per step"] == 3.0


def test_correlation_ids_beyond_32_bits_are_refused(tmp_path):
    path = altered_copy(
        tmp_path, "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET correlationId = correlationId + (1 << 32) WHERE rowid <= 3"
    )
    assert refusal(path) == (
        f"Error: {path}: 3 GPU ops have correlation ids outside 0 .. 2^32 - 1, which CUPTI never gives: a damaged "
        "trace, whose launches cannot be matched to their GPU work"
    )


def test_ops_that_share_only_their_start_are_not_recorded_twice(tmp_path):
    b = steps()
    c = b.call(2050, 2060)
    b.kernel(2600, 2700, c)
    b.kernel(2600, 2650, c, stream=8)  # one launch, two ops starting together (a graph's nodes on two streams)
    assert facts(b.write(tmp_path / "t.sqlite"))["kernels per step"] == 11 / 3  # 3 measured steps, one with 5


def test_a_gpu_op_and_a_call_without_a_process_are_not_each_others_launch(tmp_path):
    path = steps().write(tmp_path / "t.sqlite")
    with sqlite3.connect(path) as conn:  # the warm-up step's first launch and its kernel
        conn.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET globalPid = NULL WHERE correlationId = 1")
        conn.execute("UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET globalTid = NULL WHERE correlationId = 1")
    assert facts(path)["GPU ops without a launch call"] == 1


def test_a_trace_without_kernels_is_refused(tmp_path):
    path = altered_copy(tmp_path, "DELETE FROM CUPTI_ACTIVITY_KIND_KERNEL")
    assert "none of the 20 measured steps ran a kernel (the trace holds 0 kernels)" in refusal(path)


def test_steps_without_kernels_are_counted_when_others_have_them(tmp_path):
    b = steps()
    b.range(9000, 9500)
    b.memcpy(9100, 9200, b.call(9010, 9020, "cudaMemcpyAsync_v3020"))
    found = facts(b.write(tmp_path / "t.sqlite"))
    assert (found["measured steps"], found["steps without kernels"], found["empty steps (no GPU work)"]) == (4, 1, 0)


def test_open_ranges_are_counted_and_left_out(tmp_path):
    b = steps()
    b.range(9000, None)  # a step cut off by the end of the capture
    found = facts(b.write(tmp_path / "t.sqlite"))
    assert found["open NVTX ranges (never ended, left out)"] == 1 and found["steps found"] == 4


def test_metadata_that_is_not_json_is_left_out_counted_and_noted(tmp_path):
    b = steps()
    b.meta = {"warmup": 2, "ctx": 64}
    path = b.write(tmp_path / "t.sqlite")
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE {trace_schema.META_TABLE} SET value = 'not json' WHERE key = 'ctx'")
    result = analyze(path, Options())
    assert result.frames.meta == {"warmup": 2}
    assert facts_table(result)["metadata values not JSON (left out)"] == 1
    assert "capture metadata left out, not JSON: ctx" in result.notes
    assert facts_table(result)["warm-up steps skipped"] == 2  # the parsable keys still count
