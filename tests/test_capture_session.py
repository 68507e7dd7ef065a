"""The decode loop, NVTX ranges, runtimes and capture metadata on CPU with tiny configs."""

import pytest

torch = pytest.importorskip("torch")

from gapprof.profiler.build import build_model  # noqa: E402
from gapprof.profiler.decode import run_steps  # noqa: E402
from gapprof.profiler.request import CaptureRequest, validate  # noqa: E402
from gapprof.profiler.runtimes import CLASSES, make_runtime  # noqa: E402
from gapprof.profiler.session import run_session  # noqa: E402

from gapprof.errors import GapprofError  # noqa: E402
from gapprof.models import get_spec  # noqa: E402
from gapprof.runtime_table import RUNTIMES, names  # noqa: E402


class RecordingRanges:
    """Stands in for NvtxStepRanges: records pushes and pops, and whether a range is open."""

    def __init__(self):
        self.events, self.open = [], False

    def push(self, index):
        assert not self.open, "ranges must not nest"
        self.events.append(("push", index))
        self.open = True

    def pop(self):
        self.events.append(("pop",))
        self.open = False


class FakeRuntime:
    def __init__(self, ranges):
        self.ranges, self.count = ranges, 0

    def step(self):
        assert self.ranges.open, "a decode step must run inside its range"
        self.count += 1
        return self.count


def test_each_step_is_one_range_with_its_index_as_payload():
    ranges = RecordingRanges()
    ticks = iter(range(100))
    tokens, spans = run_steps(FakeRuntime(ranges), 3, first_index=5, ranges=ranges, clock=lambda: next(ticks))
    assert tokens == [1, 2, 3]
    assert ranges.events == [("push", 5), ("pop",), ("push", 6), ("pop",), ("push", 7), ("pop",)]
    assert spans == [(0, 1), (2, 3), (4, 5)]


@pytest.mark.parametrize("name", ["tiny-qwen2", "tiny-llama", "tiny-mistral"])
def test_random_model_has_the_analytic_parameter_count(name):
    model, _ = build_model(name, "float32", "sdpa", "cpu", seed=0)
    assert sum(p.numel() for p in model.parameters()) == get_spec(name).total_params()


def _decode(runtime_name, model, prompt, steps=10):
    runtime = make_runtime(runtime_name, model, max_len=prompt.shape[1] + steps + 1)
    first = runtime.prefill(prompt)
    tokens, _ = run_steps(runtime, steps)
    return [first, *tokens]


def test_every_runtime_of_the_table_has_its_class():
    assert list(CLASSES) == list(RUNTIMES)


def test_the_runtimes_that_run_on_cpu_give_the_same_tokens():
    # graphs needs CUDA: tests/test_runtimes_gpu.py covers it on a GPU.
    model, config = build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)
    prompt = torch.randint(0, config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(3))
    eager = _decode("eager", model, prompt)
    on_cpu = names(lambda runtime: runtime.runs_on_cpu)
    assert on_cpu == ("eager", "static", "compile", "lean")
    for name in on_cpu[1:]:
        assert _decode(name, model, prompt) == eager, name


def test_session_metadata_and_ranges():
    ranges = RecordingRanges()
    request = CaptureRequest(model="tiny-llama", ctx=16, steps=3, warmup=2, device="cpu", dtype="float32")
    meta, spans = run_session(request, ranges=ranges)
    # Warm-up 2 and unprofiled 3 come first, unmarked; the profiled ranges carry the index since prefill.
    assert [e[1] for e in ranges.events if e[0] == "push"] == [5, 6, 7, 8, 9]
    assert meta["first_profiled_index"] == 5
    assert len(spans) == 5 and all(end >= start for start, end in spans)
    assert len(meta["unprofiled_step_ms"]) == len(meta["profiled_step_ms"]) == 3
    assert len(meta["tokens"]) == 5
    assert meta["param_bytes"] == get_spec("tiny-llama").total_params() * 4
    for key in (
        "model",
        "config",
        "dtype",
        "ctx",
        "steps",
        "warmup",
        "runtime",
        "backend",
        "gpu_name",
        "driver",
        "cuda",
        "torch",
        "transformers",
        "copy_bandwidth_gbps",
        "captured_at",
        "cpu",
    ):
        assert key in meta, key
    assert meta["config"]["num_hidden_layers"] == 2


def test_session_tokens_continue_one_greedy_decode():
    request = CaptureRequest(model="tiny-qwen2", ctx=16, steps=3, warmup=2, device="cpu", dtype="float32")
    meta, _ = run_session(request)
    model, config = build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)
    prompt = torch.randint(0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    reference = _decode("eager", model, prompt, steps=10)
    assert meta["first_token"] == reference[0]
    assert meta["tokens"] == reference[6:]  # steps 5..9 after prefill


def test_ctx_beyond_the_model_positions_is_refused_before_building():
    # 483 + 2 x 4 warm-up + 2 x 10 steps + 1 = 512 positions fit; one more token of prompt does not.
    validate(CaptureRequest(model="tiny-qwen2", ctx=483, steps=10, warmup=4, device="cpu"))
    with pytest.raises(GapprofError, match="needs 513 positions; tiny-qwen2 has 512"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=484, steps=10, warmup=4, device="cpu"))


def test_graphs_runtime_needs_warmup_for_capture():
    with pytest.raises(GapprofError, match="needs --warmup >= 3"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, runtime="graphs", warmup=1, device="cpu"))


def test_a_local_checkpoint_loads_through_weights(tmp_path):
    model, _ = build_model("tiny-mistral", "float32", "sdpa", "cpu", seed=5)
    model.save_pretrained(tmp_path / "ckpt")
    loaded, config = build_model("ignored", "float32", "sdpa", "cpu", seed=0, weights=str(tmp_path / "ckpt"))
    assert config.model_type == "mistral"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_weights_folder_without_config_is_refused(tmp_path):
    with pytest.raises(GapprofError, match="no config.json"):
        build_model("ignored", "float32", "sdpa", "cpu", seed=0, weights=str(tmp_path))


class RecordingCollector:
    """Stands in for the CUPTI collector: records which pass it was asked for, in order."""

    def __init__(self):
        self.calls = []

    def start(self):
        self.calls.append("start")

    def arm_graph_level(self):
        self.calls.append("arm_graph_level")

    def disarm(self):
        self.calls.append("disarm")

    def start_graph_level(self):
        self.calls.append("start_graph_level")

    def stop(self):
        self.calls.append("stop")


def test_two_pass_session_profiles_a_graph_level_pass_then_the_node_level_one():
    collector = RecordingCollector()
    request = CaptureRequest(
        model="tiny-qwen2",
        ctx=16,
        steps=3,
        warmup=3,
        device="cpu",
        dtype="float32",
        runtime="compile",
        backend="cupti",
        graph_trace="both",
    )
    meta, spans = run_session(request, collector=collector)
    # Graph tracing is on while warm-up builds the graphs (CUPTI traces no graph instantiated without it).
    assert collector.calls == ["arm_graph_level", "disarm", "start_graph_level", "stop", "start", "stop"]
    # Warm-up 3 and unprofiled 3, then graph level 3 + 3 from index 6, then node level 3 + 3 from index 12.
    assert (meta["graph_level_first_index"], meta["first_profiled_index"]) == (6, 12)
    assert len(meta["graph_level_spans"]) == len(spans) == 6
    assert meta["graph_level_spans"][-1][1] <= spans[0][0]
    assert len(meta["graph_level_step_ms"]) == len(meta["profiled_step_ms"]) == 3
    assert meta["cuda_graph_trace"] == "both"
