"""The lean runtime on CPU with tiny configs: the same greedy tokens as eager in float32 (uncompiled and compiled),
Llama-3.1's rotary scaling, weights not stored twice, its requests, and ab and sweep taking it."""

import json
import sys

import pytest
from click.testing import CliRunner
from gapprof.profiler.request import CaptureRequest, validate

from gapprof.errors import GapprofError

torch = pytest.importorskip("torch")

from gapprof.profiler.build import build_model  # noqa: E402
from gapprof.profiler.decode import run_steps  # noqa: E402
from gapprof.profiler.lean_runtime import PREFILL_CHUNK, LeanRuntime  # noqa: E402
from gapprof.profiler.runtimes import make_runtime  # noqa: E402

from gapprof.cli import main  # noqa: E402
from gapprof.models import load_config  # noqa: E402

PROMPT = PREFILL_CHUNK + 44  # a prefill of two chunks
STEPS = 10


def _prompt(config):
    return torch.randint(0, config.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(3))


def _decode(runtime, prompt) -> list[int]:
    first = runtime.prefill(prompt)
    return [first, *run_steps(runtime, STEPS)[0]]


@pytest.mark.parametrize("name", ["tiny-qwen2", "tiny-llama", "tiny-mistral"])
def test_lean_decodes_the_same_tokens_as_eager(name):
    model, config = build_model(name, "float32", "sdpa", "cpu", seed=0)
    prompt, max_len = _prompt(config), PROMPT + STEPS + 1
    eager = _decode(make_runtime("eager", model, max_len), prompt)
    assert _decode(make_runtime("lean", model, max_len), prompt) == eager
    assert _decode(LeanRuntime(model, max_len, compiled=True), prompt) == eager  # the step as the GPU compiles it
    assert _decode(make_runtime("eager", model, max_len), prompt) == eager  # Hugging Face's on the fused weights


def test_llama3_rotary_scaling_is_the_models_own():
    from transformers import AutoConfig, AutoModelForCausalLM

    values = load_config("tiny-llama")  # the tiny config drops the scaling; put it back with a short original length
    values["rope_scaling"] = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**values), dtype=torch.float32)
    model.eval().requires_grad_(False)
    assert model.model.rotary_emb.rope_type == "llama3"
    prompt, max_len = _prompt(model.config), PROMPT + STEPS + 1
    assert _decode(make_runtime("lean", model, max_len), prompt) == _decode(
        make_runtime("eager", model, max_len), prompt
    )


def test_fused_weights_are_not_stored_twice():
    model, _ = build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)
    lean = LeanRuntime(model, 32).model
    attn, mlp = model.model.layers[1].self_attn, model.model.layers[1].mlp
    layer = lean.layers[1]
    assert attn.q_proj.weight.data_ptr() == layer.qkv.data_ptr()
    assert attn.v_proj.bias.data_ptr() == layer.qkv_bias[-attn.v_proj.bias.numel() :].data_ptr()
    assert mlp.up_proj.weight.data_ptr() == layer.gate_up[mlp.gate_proj.weight.shape[0] :].data_ptr()
    assert lean.lm_head.data_ptr() == model.lm_head.weight.data_ptr()
    assert LeanRuntime(model, 32).model.layers[1].gate_up.data_ptr() == layer.gate_up.data_ptr()  # fused once
    assert tuple(layer.k_cache.shape) == tuple(layer.v_cache.shape) == (2, 64, 16)  # kv_heads, 64 slots, head_dim


def test_lean_requests():
    assert CaptureRequest(runtime="lean").attn == "lean"
    validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime="lean", warmup=3, device="cpu"))
    with pytest.raises(GapprofError, match="runtime lean needs --warmup >= 3"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime="lean", warmup=2))
    with pytest.raises(GapprofError, match="--modules needs runtime eager or static"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime="lean", warmup=3, modules=True))
    with pytest.raises(GapprofError, match="--attn sdpa does not run under runtime lean: .*its own attention"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime="lean", warmup=3, attn="sdpa"))
    with pytest.raises(GapprofError, match="--attn lean does not run under runtime graphs"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime="graphs", warmup=3, attn="lean"))


def test_a_sliding_window_shorter_than_the_cache_is_refused():
    model, _ = build_model("tiny-mistral", "float32", "sdpa", "cpu", seed=0)
    model.config.sliding_window = 16
    with pytest.raises(GapprofError, match="no sliding-window attention"):
        make_runtime("lean", model, 32)


def _run(*args):
    argv = [*map(str, args)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["gapprof", *argv])
        return CliRunner().invoke(main, argv)


TINY = [
    "--model",
    "tiny-qwen2",
    "--ctx",
    "16",
    "--steps",
    "3",
    "--warmup",
    "3",
    "--dtype",
    "float32",
    "--device",
    "cpu",
]


def test_ab_and_sweep_take_lean(tmp_path):
    result = _run("ab", *TINY, "--a", "static", "--b", "lean", "--sessions", 2, "-o", tmp_path / "ab")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert (data["arms"]["a"]["attn"], data["arms"]["b"]["attn"]) == ("sdpa", "lean")
    assert data["distinct_token_sequences"] == {"a": 1, "b": 1, "all": 1}

    # One --attn for every runtime of a sweep: auto gives each its own; another one leaves lean's cells out.
    for attn, lean_status in (("auto", "ok"), ("sdpa", "not run")):
        out = tmp_path / f"sweep-{attn}"
        result = _run(
            "sweep", *TINY[2:], "--models", "tiny-qwen2", "--runtime", "static,lean", "--attn", attn, "-o", out
        )
        assert result.exit_code == 0, result.output
        rows = {r["runtime"]: r for r in json.loads((out / "sweep.json").read_text())["rows"]}
        assert rows["static"]["status"] == "ok" and rows["lean"]["status"] == lean_status
    assert rows["lean"]["reason"].endswith("the lean runtime runs its own attention (--attn auto or lean)")


def test_the_compiled_step_writes_the_cache_in_place():
    """No copy of a layer's cache in the compiled step: updating a view of one tensor for all layers made inductor
    copy the whole cache per layer."""
    from gapprof.profiler.lean_runtime import _next_token
    from torch._inductor.utils import run_and_get_code

    model, config = build_model("tiny-llama", "float32", "sdpa", "cpu", seed=0)
    runtime = LeanRuntime(model, 32, compiled=True)
    runtime.prefill(_prompt(config)[:, :8])
    torch._dynamo.reset()  # compile afresh, so that inductor writes the code
    with torch.no_grad():
        _, code = run_and_get_code(
            torch.compile(_next_token, fullgraph=True), runtime.model, runtime.token, runtime.position
        )
    cache = str(tuple(runtime.model.layers[0].k_cache.shape))
    allocations = [line for line in "\n".join(code).splitlines() if "empty_strided" in line]
    assert allocations and not [line for line in allocations if cache in line]


def test_a_capture_session_records_lean_and_its_attention():
    from gapprof.profiler.session import run_session

    request = CaptureRequest(
        model="tiny-mistral", ctx=16, steps=3, warmup=3, runtime="lean", device="cpu", dtype="float32"
    )
    meta, spans = run_session(request)
    assert (meta["runtime"], meta["attn"]) == ("lean", "lean")
    assert len(spans) == 6 and len(meta["unprofiled_step_ms"]) == 3
    eager, _ = run_session(
        CaptureRequest(model="tiny-mistral", ctx=16, steps=3, warmup=3, device="cpu", dtype="float32")
    )
    assert meta["tokens"] == eager["tokens"] and meta["first_token"] == eager["first_token"]
