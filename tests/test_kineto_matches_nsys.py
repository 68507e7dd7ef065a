"""The shipped torch.profiler trace of the graphs runtime (H100) against the shipped nsys trace of the same runtime
and attention backend on an H100: different runs, so their medians are compared, within 2% per term."""

import json
from pathlib import Path

import gapprof

TRACES = Path(__file__).parent.parent / "traces"
TORCH_TRACE = TRACES / "h100-graphs-torch.json.gz"
NSYS_TRACE = TRACES / "h100-graphs.sqlite.xz"
TOLERANCE = 0.02


def medians(report) -> dict[str, float]:
    return dict(zip(report.summary["term"], report.summary["median_ms"]))


def test_the_torch_profiler_trace_gives_the_nsys_anatomy_within_two_percent():
    meta = json.loads((TRACES / "h100-graphs-torch.meta.json").read_text())
    # A torch.profiler trace carries no capture metadata: the context of its first measured step and the
    # profiled warm-up come from the session's record written beside it.
    first_measured = meta["ctx"] + meta["first_profiled_index"] + meta["warmup"]
    torch_report = gapprof.attribute(TORCH_TRACE, model="qwen2.5-7b", ctx=first_measured, skip=meta["warmup"])
    nsys_report = gapprof.attribute(NSYS_TRACE)
    assert (meta["runtime"], meta["attn"]) == ("graphs", "sdpa")
    assert torch_report.steps.filter(~torch_report.steps["warmup"]).height == meta["steps"]
    torch_terms, nsys_terms = medians(torch_report), medians(nsys_report)
    for term in ("busy", "starved", "latency"):
        assert abs(torch_terms[term] - nsys_terms[term]) <= TOLERANCE * nsys_terms[term], term
    assert torch_terms["busy"] > 0.8 * torch_terms["wall"]  # the kernels inside the graph replays were read
