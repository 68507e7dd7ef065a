"""The identity on every step of every real trace committed under traces/: nsys and CUPTI exports (.sqlite) and
torch.profiler traces (.json.gz)."""

from pathlib import Path

import polars as pl
import pytest
from gapprof.analysis import anatomy, frames
from gapprof.analysis import steps as steps_mod

TRACE_DIR = Path(__file__).parent.parent / "traces"
TRACES = sorted([*TRACE_DIR.glob("*.sqlite.xz"), *TRACE_DIR.glob("*.json.gz")])


@pytest.mark.parametrize(
    "path",
    TRACES or [pytest.param(None, marks=pytest.mark.skip("no traces/*.sqlite.xz yet"))],
    ids=lambda p: p.name if p else "none",
)
def test_identity_on_every_step(path):
    read = frames.read_trace(path)  # the same frames from either kind
    trace = read.trace
    # A trace without step ranges (a program gapprof did not write) has its steps found from its GPU work.
    chosen = frames.select_steps(read, trace.meta.get("range_message", steps_mod.DEFAULT_RANGE), skip=0)
    table, ops, _ = anatomy.step_anatomy(chosen.steps, chosen.calls, trace.gpu, chosen.on_gpu)
    total = table["busy"] + table["starved"] + table["latency"] + table["head"] + table["tail"]
    assert (total == table["wall"]).all()
    assert (table["wall"] == table["t1"] - table["t0"]).all()
    for term in anatomy.TERMS + ("spill", "overlap"):
        assert (table[term] >= 0).all(), term
    spanned = table.filter(~pl.col("empty"))
    assert (spanned["busy"] + spanned["starved"] + spanned["latency"] == spanned["g1"] - spanned["g0"]).all()
    if "steps" in trace.meta:  # measured steps, with or without the warm-up ones
        assert table.height in (trace.meta["steps"], trace.meta["steps"] + trace.meta.get("warmup", 0))
    assert not table["empty"].all()
