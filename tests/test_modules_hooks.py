"""`capture --modules` on CPU: a range per module per layer per step, nested inside the step range, only in the
profiled pass and the pass that times them; hooks gone afterwards."""

import pytest

torch = pytest.importorskip("torch")

from gapprof.profiler import module_ranges  # noqa: E402
from gapprof.profiler.build import build_model  # noqa: E402
from gapprof.profiler.request import CaptureRequest, validate  # noqa: E402
from gapprof.profiler.session import run_session  # noqa: E402

from gapprof.errors import GapprofError  # noqa: E402

LAYER_KINDS = [
    "layer",
    "input_norm",
    "attention",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "post_attention_norm",
    "mlp",
    "gate_proj",
    "up_proj",
    "act",
    "down_proj",
]
PARENT = {
    "input_norm": "layer",
    "attention": "layer",
    "q_proj": "attention",
    "k_proj": "attention",
    "v_proj": "attention",
    "o_proj": "attention",
    "post_attention_norm": "layer",
    "mlp": "layer",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "act": "mlp",
    "down_proj": "mlp",
    "layer": None,
    "embed": None,
    "rotary": None,
    "final_norm": None,
    "lm_head": None,
}


class Log:
    """One event log for step and module ranges, with the open-range stack."""

    def __init__(self):
        self.events, self.stack = [], []

    def push(self, name, layer=None):
        self.events.append(("push", name, layer, tuple(self.stack)))
        self.stack.append((name, layer))

    def pop(self):
        self.events.append(("pop",) + self.stack.pop())


class StepRanges:
    def __init__(self, log):
        self.log = log

    def push(self, index):
        self.log.push("decode_step", index)

    def pop(self):
        self.log.pop()


def _steps(events):
    """The module pushes of each decode_step, in order."""
    steps, current = [], None
    for event in events:
        if event[0] == "push" and event[1] == "decode_step":
            current = []
            steps.append(current)
        elif event[0] == "push" and current is not None:
            current.append(event)
        elif event[0] == "pop" and event[1] == "decode_step":
            current = None
    return steps


def test_module_kinds_of_a_tiny_model():
    model, _ = build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)
    found = module_ranges.module_kinds(model)
    assert len(found) == 2 * len(LAYER_KINDS) + 4
    assert sorted(kind for _, kind, layer in found if layer == 1) == sorted(LAYER_KINDS)
    assert sorted(kind for _, kind, layer in found if layer is None) == ["embed", "final_norm", "lm_head", "rotary"]


@pytest.mark.parametrize("runtime", ["eager", "static"])
def test_every_module_range_once_per_layer_per_step_nested_in_the_step(runtime):
    log = Log()
    request = CaptureRequest(
        model="tiny-qwen2", ctx=16, steps=3, warmup=1, device="cpu", dtype="float32", runtime=runtime, modules=True
    )
    meta, _ = run_session(request, ranges=StepRanges(log), modules=log)
    assert not log.stack
    steps = _steps(log.events)
    assert len(steps) == 4
    expected = sorted(
        [(k, layer) for layer in (0, 1) for k in LAYER_KINDS]
        + [(k, None) for k in ("embed", "rotary", "final_norm", "lm_head")],
        key=str,
    )
    for pushes in steps:
        assert sorted(((name, layer) for _, name, layer, _ in pushes), key=str) == expected
        for _, name, layer, stack in pushes:
            assert stack[0][0] == "decode_step"
            enclosing = stack[-1] if len(stack) > 1 else None
            parent = PARENT[name]
            assert enclosing == (None if parent is None else (parent, layer)), (name, layer, stack)
    # The timing pass runs the hooks outside step ranges: 3 more steps' worth of module ranges, nothing else.
    module_pushes = [e for e in log.events if e[0] == "push" and e[1] != "decode_step"]
    assert len(module_pushes) == (4 + 3) * len(expected)
    assert meta["module_ranges"]["ranges_per_step"] == len(expected)
    assert meta["module_ranges"]["kinds"][:3] == ["embed", "rotary", "layer"]
    assert len(meta["hooked_step_ms"]) == 3 and isinstance(meta["module_range_cost_ms"], float)


def test_hooks_are_removed_after_the_pass():
    model, _ = build_model("tiny-llama", "float32", "sdpa", "cpu", seed=0)
    log = Log()
    with module_ranges.annotated(model, log) as found:
        assert len(found) == 2 * len(LAYER_KINDS) + 4
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert not log.stack and len(log.events) == 2 * len(found)
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    model(input_ids=torch.tensor([[1, 2, 3]]))
    assert len(log.events) == 2 * len(found)


def test_a_forward_that_raises_still_pops():
    model, _ = build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)
    log = Log()
    with module_ranges.annotated(model, log), pytest.raises(IndexError):
        model(input_ids=torch.tensor([[10_000]]))  # past the vocabulary: the embedding raises
    assert not log.stack


@pytest.mark.parametrize("runtime", ["graphs", "compile"])
def test_modules_with_replayed_runtimes_is_refused(runtime):
    with pytest.raises(GapprofError, match="--modules needs runtime eager or static"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime=runtime, modules=True, device="cpu"))


def test_modules_with_cupti_is_refused():
    with pytest.raises(GapprofError, match="--modules needs --backend nsys"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, backend="cupti", modules=True, device="cpu"))
