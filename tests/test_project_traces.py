"""Replaying each real trace under traces/ on its own GPU reproduces every measured step, to the ns."""

from pathlib import Path

import polars as pl
import pytest
from gapprof.analysis import anatomy, cross_gpu_columns, projection, replay
from gapprof.analysis.attribution import Options

from gapprof import gpus

TRACES = sorted((Path(__file__).parent.parent / "traces").glob("*.sqlite.xz"))
TERMS = ("wall", "busy", "starved", "latency", "head", "tail", "kernels", "launch_calls")
# Traces of programs gapprof did not write carry no metadata: their model and context, as traces/README.md gives.
UNMARKED_MODELS = {
    "h100-gpt-fast-compile.sqlite.xz": "llama-3.1-8b",
    "h100-gpt-fast-eager.sqlite.xz": "llama-3.1-8b",
    "h100-hf-generate.sqlite.xz": "qwen2.5-7b",
}


@pytest.mark.parametrize(
    "path",
    TRACES or [pytest.param(None, marks=pytest.mark.skip("no traces/*.sqlite.xz yet"))],
    ids=lambda p: p.name if p else "none",
)
def test_self_replay_reproduces_every_step(path):
    model = UNMARKED_MODELS.get(path.name)
    loaded = cross_gpu_columns.load([path], Options(model=model, ctx=2048 if model else None))[0]
    tl = loaded.timeline
    on_gpu = loaded.analysis.frames.on_gpu
    table = anatomy.step_anatomy(*(replay.replay_on_gpu if on_gpu else replay.replay)(tl, tl.ops["dur"]), on_gpu)[0]
    measured = loaded.analysis.steps.filter(~pl.col("warmup"))
    assert table.select("step", *TERMS).equals(measured.select("step", *TERMS))
    # Through the projection path too: the trace's own GPU has bandwidth ratio 1.
    own = gpus.gpu_for_device_name(loaded.analysis.device_name or "")
    if own is not None:
        projected = projection.project(loaded.analysis, tl, own, projection.Knobs())
        assert projected["wall"].to_list() == measured["wall"].to_list()
        assert projected["floor"].to_list() == measured["floor_datasheet"].to_list()
        # The unprofiled estimate: the projected wall less the source's observer effect, so on its own GPU the
        # capture's own unprofiled mean.
        column, _ = cross_gpu_columns.projected(loaded, own, projection.Knobs())
        plain = loaded.analysis.frames.meta.get("unprofiled_step_ms")
        assert column.values["unprofiled wall ms"] == (
            pytest.approx(sum(plain) / len(plain), rel=1e-12) if plain else None
        )
        measured_plain = cross_gpu_columns.measured_column(loaded).values["unprofiled wall ms"]
        assert measured_plain == (sum(plain) / len(plain) if plain else None)


def test_the_unprofiled_estimate_never_goes_below_busy():
    # As CUDA graphs, the eager H100 step loses more launch time than its 2.5 ms observer effect can fill.
    loaded = cross_gpu_columns.load([Path(__file__).parent.parent / "traces" / "h100.sqlite.xz"], Options())[0]
    knobs = projection.Knobs(graph_launch_ns=20_000)
    column, table = cross_gpu_columns.projected(loaded, gpus.resolve_gpu("h200"), knobs)
    wall, busy = table["wall"].mean() / 1e6, table["busy"].mean() / 1e6
    assert wall - busy < cross_gpu_columns.observer_effect_ms(loaded)
    assert column.values["unprofiled wall ms"] == pytest.approx(busy, rel=1e-12)
