"""The Python API: `import gapprof` stays light, `gapprof.attribute` gives the command's tables as polars frames,
and `gapprof.mark_steps` marks prefill and decode forwards of a tiny model on CPU and removes itself cleanly."""
import json
import subprocess
import sys

import polars as pl
import pytest

import gapprof
from gapprof.analysis import attribution
from gapprof.errors import GapprofError
from conftest import H100, basic_step
from synthetic import TraceBuilder


@pytest.fixture
def trace(tmp_path):
    b = TraceBuilder()
    b.gpu_info(H100, None)
    for i in range(4):
        basic_step(b, 2000 * i)
    return b.write(tmp_path / "t.sqlite"), b.write_kineto(tmp_path / "t.json")


def test_import_gapprof_loads_neither_polars_nor_torch():
    code = ("import sys, gapprof; assert {'attribute', 'mark_steps'} <= set(dir(gapprof)); "
            "print(sorted({'polars', 'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gapprof.nothing


@pytest.mark.parametrize("which", [0, 1], ids=["nsys", "torch.profiler"])
def test_attribute_gives_the_command_tables_as_polars_frames(trace, which):
    report = gapprof.attribute(trace[which], model="qwen2.5-7b", ctx=2048, skip=1)
    expected = attribution.analyze(trace[which], attribution.Options(model="qwen2.5-7b", ctx=2048, skip=1))
    assert report.summary.equals(attribution.summary_table(expected))
    assert report.steps.equals(expected.steps) and report.steps.height == 4
    assert report.kernels.equals(attribution.kernel_table(expected))
    assert report.classes.equals(attribution.class_table(expected))
    assert report.api.equals(attribution.api_table(expected))
    facts = dict(report.facts.iter_rows())
    assert facts["measured steps"] == "3" and facts["context (first measured step)"] == "2048"
    assert all(isinstance(getattr(report, t), pl.DataFrame) for t in ("summary", "steps", "kernels", "classes",
                                                                      "api", "facts"))
    assert report.notes == expected.notes


def test_attribute_refuses_an_unknown_option(trace):
    with pytest.raises(GapprofError, match="unknown option contxt; choose from range_pattern, skip, model, ctx"):
        gapprof.attribute(trace[0], contxt=10)


class Recorder:
    """A stand-in for the NVTX ranges: records pushes and pops."""

    def __init__(self):
        self.events = []

    def push(self, message, payload):
        self.events.append(("push", message, payload))

    def pop(self):
        self.events.append(("pop",))


def _tiny_model():
    pytest.importorskip("torch")
    from gapprof.profiler.build import build_model

    return build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)[0]


def test_mark_steps_marks_prefill_then_decode_steps_of_generate():
    torch = pytest.importorskip("torch")

    model, recorder = _tiny_model(), Recorder()
    with gapprof.mark_steps(model, ranges=recorder):
        model.generate(torch.tensor([[1, 2, 3, 4, 5]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
        model.generate(torch.tensor([[1, 2]]), max_new_tokens=2, min_new_tokens=2, do_sample=False)
    pushes = [event[1:] for event in recorder.events if event[0] == "push"]
    assert pushes == [("prefill", None), ("decode_step", 0), ("decode_step", 1), ("decode_step", 2),
                      ("prefill", None), ("decode_step", 0)]
    assert recorder.events[1::2] == [("pop",)] * 6  # each range closed before the next opens
    model(torch.tensor([[1]]))
    assert len(recorder.events) == 12 and not model._forward_pre_hooks and not model._forward_hooks


def test_a_forward_that_raises_still_pops_and_unknown_inputs_are_marked_forward():
    torch = pytest.importorskip("torch")

    model, recorder = _tiny_model(), Recorder()
    marks = gapprof.mark_steps(model, ranges=recorder)
    with pytest.raises(Exception):
        model(input_ids=torch.tensor([[10 ** 9]]))  # beyond the vocabulary
    model(inputs_embeds=torch.zeros(1, 3, model.config.hidden_size))
    model(torch.tensor([[1]]))  # input_ids as the first positional argument
    with pytest.raises(Exception):
        model()
    marks.remove()
    assert recorder.events == [("push", "decode_step", 0), ("pop",), ("push", "prefill", None), ("pop",),
                               ("push", "decode_step", 0), ("pop",), ("push", "forward", None), ("pop",)]


def test_mark_steps_with_nvtx_ranges():
    torch = pytest.importorskip("torch")

    pytest.importorskip("nvtx")
    model = _tiny_model()
    with gapprof.mark_steps(model):  # no profiler attached: the ranges go nowhere, the forward runs as usual
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape[:2] == (1, 3)


def test_record_function_marks_make_a_torch_profiler_trace_that_attribute_reads(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile

    model, path = _tiny_model(), tmp_path / "generate.json"
    with profile(activities=[ProfilerActivity.CPU]) as prof, gapprof.mark_steps(model, ranges="record_function"):
        model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    prof.export_chrome_trace(str(path))
    with pytest.raises(GapprofError, match="no GPU kernels"):  # CPU only: the ranges are there, the kernels not
        gapprof.attribute(path)
    data = json.loads(path.read_text())
    marks = [e for e in data["traceEvents"] if e.get("cat") == "user_annotation"]
    assert [e["name"] for e in marks] == ["prefill", "decode_step", "decode_step", "decode_step"]
    for i, mark in enumerate(marks):  # a launch and its kernel inside each mark, as a GPU trace would have
        launch = dict(ph="X", pid=mark["pid"], tid=mark["tid"], ts=mark["ts"] + 1, dur=1, args={"correlation": i})
        data["traceEvents"] += [dict(launch, cat="cuda_runtime", name="cudaLaunchKernel"),
                                dict(launch, cat="kernel", name="gemv", pid=0, tid=7, ts=mark["ts"] + 2)]
    path.write_text(json.dumps(data))
    assert gapprof.attribute(path, skip=0).steps["kernels"].to_list() == [1, 1, 1]


def test_mark_steps_refuses_unknown_ranges():
    with pytest.raises(GapprofError, match="unknown ranges 'perfetto'; choose from nvtx, record_function"):
        gapprof.mark_steps(object(), ranges="perfetto")
