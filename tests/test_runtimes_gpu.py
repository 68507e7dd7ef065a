"""Runtimes that need a GPU (graphs) checked against eager on one; skipped where torch sees no CUDA device."""
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_all_runtimes_give_the_same_tokens_on_gpu():
    from gapprof.profiler.build import build_model
    from gapprof.profiler.decode import run_steps
    from gapprof.runtime_names import RUNTIMES
    from gapprof.profiler.runtimes import make_runtime

    model, config = build_model("tiny-qwen2", "float32", "sdpa", "cuda", seed=0)
    prompt = torch.randint(0, config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(1)).cuda()
    tokens = {}
    for name in RUNTIMES:
        runtime = make_runtime(name, model, max_len=64)
        first = runtime.prefill(prompt)
        decoded, _ = run_steps(runtime, 12)
        tokens[name] = [first, *decoded]
    assert all(t == tokens["eager"] for t in tokens.values()), tokens
