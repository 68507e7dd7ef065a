"""--attn: every backend that runs on CPU decodes the same tokens; the CUDA-only ones are refused before a build."""

import pytest
from gapprof.profiler.request import CaptureRequest, validate

from gapprof.errors import GapprofError
from gapprof.runtime_table import ATTENTION_BACKENDS, CUDA_ONLY_ATTENTION

# The Hugging Face backends; "lean" is the lean runtime's own (tests/test_lean_runtime.py).
CPU_BACKENDS = [a for a in ATTENTION_BACKENDS if a not in CUDA_ONLY_ATTENTION and a != "lean"]


@pytest.mark.parametrize("attn", CUDA_ONLY_ATTENTION)
def test_cuda_only_backends_are_refused_on_cpu_before_any_build(attn):
    with pytest.raises(GapprofError, match=f"--attn {attn} runs on CUDA only"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, attn=attn, device="cpu"))


def _tokens(attn: str, runtime: str) -> list[int]:
    torch = pytest.importorskip("torch")
    from gapprof.profiler.build import build_model
    from gapprof.profiler.decode import run_steps
    from gapprof.profiler.runtimes import make_runtime

    model, config = build_model("tiny-qwen2", "float32", attn, "cpu", seed=3)
    prompt = torch.randint(0, config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(3))
    runtime = make_runtime(runtime, model, max_len=24 + 8 + 1)
    first = runtime.prefill(prompt)
    return [first, *run_steps(runtime, 8)[0]]


@pytest.mark.parametrize("runtime", ["eager", "static"])
def test_pinned_backends_decode_the_same_tokens_as_the_default(runtime):
    reference = _tokens("sdpa", runtime)
    for attn in CPU_BACKENDS:
        assert _tokens(attn, runtime) == reference, attn


def test_a_pinned_backend_is_the_one_that_runs():
    """A pin must really pin: with only cuDNN allowed, a CPU call fails instead of falling back to math as plain
    sdpa does."""
    torch = pytest.importorskip("torch")
    from gapprof.profiler.attention import implementation
    from transformers import AttentionInterface

    attention = AttentionInterface()[implementation("sdpa-cudnn")]
    module = torch.nn.Module()
    q = k = v = torch.zeros(1, 2, 4, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="No viable backend"):
        attention(module, q, k, v, None, is_causal=False)
    out, _ = AttentionInterface()[implementation("sdpa-math")](module, q, k, v, None, is_causal=False)
    assert out.shape == (1, 4, 2, 8)


def test_unknown_backend_names_the_known_ones():
    pytest.importorskip("torch")
    from gapprof.profiler.attention import implementation

    with pytest.raises(GapprofError, match="known: sdpa-math, sdpa-flash"):
        implementation("flash3")


def test_auto_names_the_backend_each_runtime_runs():
    assert CaptureRequest(runtime="eager").attn == "sdpa-flash"
    assert {CaptureRequest(runtime=r).attn for r in ("static", "graphs", "compile")} == {"sdpa"}
    assert CaptureRequest(runtime="eager", attn="sdpa-math").attn == "sdpa-math"


@pytest.mark.parametrize(
    "attn, runtime, reason",
    [("sdpa-flash", "graphs", "takes no attention mask"), ("eager", "graphs", "host tensor during CUDA graph capture")],
)
def test_backends_a_runtime_cannot_run_are_refused_with_the_reason(attn, runtime, reason):
    with pytest.raises(GapprofError, match=f"--attn {attn} does not run under runtime {runtime}: .*{reason}"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, attn=attn, runtime=runtime, warmup=4))


def test_one_session_process_switches_the_backend_between_requests(tmp_path):
    """ab and sweep time several runtimes on one model build; with auto they run different backends."""
    pytest.importorskip("torch")
    import json

    from gapprof.profiler.timing_child import time_requests

    requests = [
        CaptureRequest(
            model="tiny-qwen2",
            ctx=24,
            steps=6,
            warmup=1,
            runtime=r,
            backend="none",
            dtype="float32",
            seed=3,
            device="cpu",
        )
        for r in ("eager", "static")
    ]
    assert time_requests(requests, str(tmp_path / "out.jsonl")) == 0
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["request"]["attn"] for r in records] == ["sdpa-flash", "sdpa"]
    assert records[0]["tokens"] == records[1]["tokens"]
