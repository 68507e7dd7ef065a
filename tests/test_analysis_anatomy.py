"""Step anatomy on synthetic traces where every term is known by construction."""

import polars as pl
import pytest
from conftest import basic_step
from gapprof.analysis import anatomy
from gapprof.analysis import steps as steps_mod
from gapprof.analysis.readers import nsys
from synthetic import PID, TID, TraceBuilder

from gapprof import trace_schema as ts


def anatomy_of(builder: TraceBuilder, path, pattern="decode_step", skip=0):
    trace = nsys.read(builder.write(path))
    found = steps_mod.mark_warmup(steps_mod.find_steps(trace.ranges, pattern), skip)
    calls = trace.calls.filter(pl.col("globalTid").is_in(found["globalTid"].unique().implode()))
    return anatomy.step_anatomy(found, calls, trace.gpu)


def terms(row: dict) -> dict:
    return {k: row[k] for k in ("wall", "busy", "starved", "latency", "head", "tail")}


def test_basic_gaps_starved_versus_latency(tmp_path):
    b = TraceBuilder()
    basic_step(b)
    table, ops, calls = anatomy_of(b, tmp_path / "t.sqlite")
    row = table.row(0, named=True)
    assert terms(row) == dict(wall=1000, busy=260, starved=150, latency=50, head=100, tail=440)
    assert (row["kernels"], row["memcpys"], row["memsets"]) == (3, 1, 0)
    assert (row["starved_gaps"], row["latency_gaps"], row["launch_calls"], row["api_calls"]) == (2, 1, 4, 5)
    assert row["launch_cpu"] == 40
    assert (row["spill"], row["overlap"], row["empty"], row["streams"]) == (0, 0, False, 1)
    gaps = dict(zip(ops.sort("start")["start"], zip(ops.sort("start")["gap"], ops.sort("start")["starved"])))
    assert gaps == {100: (0, False), 250: (50, False), 420: (120, True), 530: (30, True)}
    assert calls.height == 5


def test_overlapping_streams_busy_is_a_union(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    b.launch(10, 20, 100, 300, stream=1)
    b.launch(30, 40, 200, 400, stream=2)
    b.launch(50, 60, 250, 260, stream=3)  # inside both others: adds nothing to the union
    row = anatomy_of(b, tmp_path / "t.sqlite")[0].row(0, named=True)
    assert terms(row) == dict(wall=1000, busy=300, starved=0, latency=0, head=100, tail=600)
    assert (row["overlap"], row["streams"]) == (100 + 10, 3)


def test_graph_nodes_share_the_graph_launch_correlation(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    graph = b.call(50, 60, "cudaGraphLaunch_v10000")
    for start, end in ((100, 150), (170, 200), (200, 260)):
        b.kernel(start, end, graph, "node")
    # The graph's internal gap (150-170) is latency: its launch began at 50, before the gap.
    row = anatomy_of(b, tmp_path / "t.sqlite")[0].row(0, named=True)
    assert terms(row) == dict(wall=1000, busy=140, starved=0, latency=20, head=100, tail=740)
    assert (row["kernels"], row["launch_calls"]) == (3, 1)


def test_spill_past_the_range_end_is_clipped_and_reported(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    b.launch(900, 910, 950, 1200)  # 50 ns inside, 200 past t1
    b.launch(980, 990, 1300, 1400)  # wholly past t1
    b.range(2000, 3000)
    b.launch(2010, 2020, 2100, 2200)
    table = anatomy_of(b, tmp_path / "t.sqlite")[0]
    first, second = table.rows(named=True)
    assert terms(first) == dict(wall=1000, busy=50, starved=0, latency=0, head=950, tail=0)
    assert (first["spill"], first["spill_ops"], first["kernels"]) == (300, 2, 2)
    assert (second["spill"], second["spill_ops"], second["busy"]) == (0, 0, 100)


def test_spilled_work_overlapping_itself_counts_once(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    b.launch(900, 910, 950, 1200, stream=1)
    b.launch(920, 930, 1100, 1300, stream=2)
    row = anatomy_of(b, tmp_path / "t.sqlite")[0].row(0, named=True)
    assert (row["busy"], row["spill"], row["spill_ops"]) == (50, 300, 2)


def test_empty_step_is_all_head(tmp_path):
    b = TraceBuilder()
    b.range(0, 500)
    b.call(100, 200, "cudaStreamSynchronize_v3020")
    b.range(1000, 2000)
    b.launch(1010, 1020, 1100, 1200)
    table = anatomy_of(b, tmp_path / "t.sqlite")[0]
    empty = table.row(0, named=True)
    assert terms(empty) == dict(wall=500, busy=0, starved=0, latency=0, head=500, tail=0)
    assert empty["empty"] and empty["api_calls"] == 1 and empty["g0"] is None
    assert not table.row(1, named=True)["empty"]


def test_named_domain_text_id_and_default_domain_text(tmp_path):
    b = TraceBuilder()
    b.domain("gapprof", 5)
    b.range(0, 100, "decode_step", domain_id=5, payload=0)
    b.range(200, 300, "decode_step", payload=1)
    b.range(400, 500, "decode_step_inner", domain_id=5)
    ranges = nsys.read(b.write(tmp_path / "t.sqlite")).ranges.sort("start")
    assert ranges.select("message", "domain", "payload").rows() == [
        ("decode_step", "gapprof", 0),
        ("decode_step", "", 1),
        ("decode_step_inner", "gapprof", None),
    ]
    found = steps_mod.find_steps(ranges, "decode_step")
    assert found["t0"].to_list() == [0, 200]
    assert steps_mod.find_steps(ranges, "decode_.*")["t0"].to_list() == [0, 200, 400]


def test_two_threads_keep_their_own_work(tmp_path):
    other = ts.global_tid(PID, 200)
    b = TraceBuilder()
    basic_step(b)
    basic_step(b, offset=500, tid=other)  # overlaps the first thread's step in time
    table, ops, _ = anatomy_of(b, tmp_path / "t.sqlite")
    assert table["globalTid"].to_list() == [TID, other]
    for row in table.rows(named=True):
        assert terms(row) == dict(wall=1000, busy=260, starved=150, latency=50, head=100, tail=440)
        assert row["index"] == 0
    assert ops.height == 8


def test_correlation_ids_join_within_one_process(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    c = b.launch(10, 20, 100, 200)
    b.kernel(300, 400, c, pid=PID + 1)  # same correlationId, another process: not this step's work
    row = anatomy_of(b, tmp_path / "t.sqlite")[0].row(0, named=True)
    assert (row["kernels"], row["busy"]) == (1, 100)


def test_each_process_joins_its_own_launches_under_one_correlation_id(tmp_path):
    b, other = TraceBuilder(), ts.global_tid(PID + 1, 100)
    b.range(0, 1000)
    b.range(0, 1000, tid=other)
    c = b.call(10, 20)
    b.call(30, 40, tid=other)
    b.rows["CUPTI_ACTIVITY_KIND_RUNTIME"][-1]["correlationId"] = c  # each process numbers its own launches
    b.kernel(100, 200, c)
    b.kernel(300, 600, c, pid=PID + 1)
    table, ops, _ = anatomy_of(b, tmp_path / "t.sqlite")
    assert table.select("globalTid", "kernels", "busy", "head").rows() == [(TID, 1, 100, 100), (other, 1, 300, 300)]
    assert ops.sort("start")["step"].to_list() == [0, 1]


def test_nested_ranges_are_counted_not_attributed_twice(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    b.range(100, 200)  # nested in the first
    b.range(150, 180)  # nested twice
    b.range(2000, 2500)
    b.launch(110, 120, 130, 170)
    table = anatomy_of(b, tmp_path / "t.sqlite")[0]
    assert table.select("t0", "nested", "index").rows() == [(0, 2, 0), (2000, 0, 1)]
    assert terms(table.row(0, named=True)) == dict(wall=1000, busy=40, starved=0, latency=0, head=130, tail=830)


def test_driver_api_launches(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    c = b.call(10, 20, "cuLaunchKernelEx", driver=True)
    b.kernel(100, 200, c)
    c = b.call(300, 310, "cuLaunchKernel", driver=True)
    b.kernel(320, 400, c)
    row = anatomy_of(b, tmp_path / "t.sqlite")[0].row(0, named=True)
    assert terms(row) == dict(wall=1000, busy=180, starved=120, latency=0, head=100, tail=600)


def test_memset_is_busy_and_counted(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    b.memset(100, 120, b.call(10, 20, "cudaMemsetAsync_v3020"))
    b.launch(30, 40, 120, 200)
    row = anatomy_of(b, tmp_path / "t.sqlite")[0].row(0, named=True)
    assert (row["memsets"], row["kernels"], row["busy"], row["latency"]) == (1, 1, 100, 0)


def test_a_call_on_the_range_end_belongs_to_the_step(tmp_path):
    b = TraceBuilder()
    b.range(0, 1000)
    b.launch(1000, 1001, 1005, 1010)  # launched at t1: in the step, its work all spill
    b.launch(1001, 1002, 1020, 1030)  # launched after t1: in no step
    table, ops, _ = anatomy_of(b, tmp_path / "t.sqlite")
    row = table.row(0, named=True)
    assert (row["kernels"], row["spill"], row["empty"], row["head"]) == (1, 5, True, 1000)
    assert ops.height == 1


def test_skip_marks_the_first_steps_of_each_thread(tmp_path):
    b = TraceBuilder()
    for i in range(3):
        basic_step(b, offset=2000 * i)
        basic_step(b, offset=2000 * i + 500, tid=ts.global_tid(PID, 200))
    table = anatomy_of(b, tmp_path / "t.sqlite", skip=2)[0]
    assert table.filter(~pl.col("warmup"))["index"].to_list() == [2, 2]


def test_identity_check_rejects_a_broken_row():
    bad = pl.DataFrame(dict(step=[0], wall=[10], busy=[5], starved=[0], latency=[0], head=[2], tail=[2]))
    with pytest.raises(anatomy.IdentityError):
        anatomy.check_identity(bad)
    negative = bad.with_columns(head=pl.lit(-1), tail=pl.lit(6))
    with pytest.raises(anatomy.IdentityError):
        anatomy.check_identity(negative)
