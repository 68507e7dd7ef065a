"""The Python API: `import gapprof` stays light, `gapprof.attribute` gives the command's tables as polars frames,
and `gapprof.mark_steps` marks prefill and decode forwards of a tiny model on CPU and removes itself cleanly."""

import json
import lzma
import subprocess
import sys
from dataclasses import fields

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import H100, SHIPPED_TRACES, annotated_trace, basic_step
from gapprof.analysis import attribution, findings, kernel_cost, modules, tables, two_pass
from gapprof.analysis import python_api as api
from synthetic import TraceBuilder

import gapprof
from gapprof.cli import main
from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.gpu_profile import profiles

GRAPHS = SHIPPED_TRACES / "h100-graphs.sqlite.xz"


@pytest.fixture
def trace(tmp_path):
    b = TraceBuilder()
    b.gpu_info(H100, None)
    for i in range(4):
        basic_step(b, 2000 * i)
    return b.write(tmp_path / "t.sqlite"), b.write_kineto(tmp_path / "t.json")


def test_import_gapprof_loads_neither_polars_nor_torch():
    code = (
        "import sys, gapprof; assert {'attribute', 'mark_steps'} <= set(dir(gapprof)); "
        "print(sorted({'polars', 'torch', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gapprof.nothing


def test_the_namespace_holds_the_api_only_even_after_use():
    code = "import gapprof; gapprof.attribute; gapprof.mark_steps; print(dir(gapprof))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['__version__', 'attribute', 'mark_steps']"


def test_the_report_names_the_file_the_caller_gave_not_its_unpacked_copy(trace, tmp_path):
    packed = tmp_path / "t.sqlite.xz"
    packed.write_bytes(lzma.compress(trace[0].read_bytes()))
    report = gapprof.attribute(packed, model="qwen2.5-7b", ctx=2048, skip=1, force=True)  # steps below its floor
    assert repr(report) == f"<gapprof Report of {packed}: 3 measured steps>"


def test_the_user_guide_documents_every_option_and_table():
    guide = (SHIPPED_TRACES.parent / "docs" / "user-guide.md").read_text()
    section = " ".join(guide[guide.index("## Python API") :].split("\n## ")[0].split())
    documented = {name for name in (*api.OPTIONS, *map(tables.api_name, tables.TABLES)) if f"`{name}`" in section}
    assert documented == {*api.OPTIONS, *map(tables.api_name, tables.TABLES)}


def test_to_pandas_works_with_the_pandas_extra(trace):
    pytest.importorskip("pandas", reason="the pandas extra: pip install -e '.[pandas]'")
    pytest.importorskip("pyarrow", reason="the pandas extra: pip install -e '.[pandas]'")
    report = gapprof.attribute(trace[0], model="qwen2.5-7b", ctx=2048, skip=1)
    frame = report.summary.to_pandas()
    assert list(frame.columns) == report.summary.columns and len(frame) == report.summary.height


@pytest.mark.parametrize("which", [0, 1], ids=["nsys", "torch.profiler"])
def test_attribute_gives_the_command_tables_as_polars_frames(trace, which):
    # The synthetic steps are far shorter than a 7B model's floor: forced, as `attribute --force` would be.
    report = gapprof.attribute(trace[which], model="qwen2.5-7b", ctx=2048, skip=1, force=True)
    expected = attribution.analyze(trace[which], attribution.Options(model="qwen2.5-7b", ctx=2048, skip=1))
    assert report.summary.equals(attribution.summary_table(expected))
    assert report.steps.equals(expected.steps) and report.steps.height == 4
    assert report.kernels.equals(attribution.kernel_table(expected))
    assert report.classes.equals(attribution.class_table(expected))
    assert report.api.equals(attribution.api_table(expected))
    assert all(
        isinstance(getattr(report, t), pl.DataFrame)
        for t in ("summary", "steps", "kernels", "classes", "api", "facts", "findings")
    )
    assert report.notes == expected.notes


def test_numbers_are_typed_as_numbers(trace):
    report = gapprof.attribute(trace[0], model="qwen2.5-7b", ctx=2048, skip=1, force=True)
    counts = ("kernels", "memcpys", "launch_calls", "api_calls", "starved_gaps", "ctx")
    assert all(report.steps.schema[c] == pl.Int64 for c in ("wall", "busy", "floor", *counts))
    assert dict(report.facts.schema) == {"key": pl.String, "value": pl.Float64, "text": pl.String}
    facts = {key: (value, text) for key, value, text in report.facts.iter_rows()}
    assert facts["measured steps"] == (3, None) and facts["context (first measured step)"] == (2048, None)
    assert facts["floor/excess split against"] == (None, "datasheet")
    assert report.findings.schema["rank"] == pl.Int64 and report.findings.schema["ms_per_step"] == pl.Float64


def test_findings_are_the_ranked_findings_of_the_command():
    report = gapprof.attribute(GRAPHS)
    found = findings.findings(report.attribution)
    assert found and report.findings["rank"].to_list() == list(range(1, len(found) + 1))
    assert report.findings["title"].to_list() == [f.title for f in found]
    assert report.findings["ms_per_step"].to_list() == sorted((f.ms for f in found), reverse=True)
    assert report.table("findings").sections == [("findings", findings.findings_table(found))]


def test_cost_with_the_shipped_ncu_csv_and_findings_that_read_it():
    ncu = SHIPPED_TRACES / "h100-graphs-ncu.csv.gz"
    report = gapprof.attribute(GRAPHS, ncu=str(ncu))
    sections, _ = kernel_cost.cost_sections(report.attribution, ncu, profiles=profiles(()))  # the shipped ones
    assert report.cost.equals(dict(sections)["cost"]) and report.cost["class"][0] == kernel_cost.TOTAL
    with_cost = findings.findings(report.attribution, report.cost)
    assert report.findings["title"].to_list() == [f.title for f in with_cost]
    assert len(with_cost) > len(findings.findings(report.attribution))  # the cost split adds findings
    with pytest.raises(GapprofError, match="the cost table needs bytes per kernel"):
        gapprof.attribute(GRAPHS).cost


def test_two_pass_of_a_shipped_two_pass_trace_and_its_absence_from_a_one_pass_trace():
    report = gapprof.attribute(SHIPPED_TRACES / "h100-lean-two-pass.sqlite.xz")
    graph_level = two_pass.graph_level_pass(report.attribution, attribution.Options())
    assert report.two_pass.equals(two_pass.joined(report.attribution, graph_level)[0])
    assert report.two_pass["term"][0] == "wall ms"
    with pytest.raises(GapprofError, match="two_pass needs a two-pass capture"):
        gapprof.attribute(GRAPHS).two_pass


def test_modules_from_module_ranges(tmp_path, trace):
    report = gapprof.attribute(annotated_trace(tmp_path))
    sections, notes = modules.by_module(report.attribution)
    assert report.modules.equals(dict(sections)["modules"]) and report.table("modules").notes == notes
    assert [title for title, _ in report.table("modules").sections] == [title for title, _ in sections]
    with pytest.raises(GapprofError, match="no `module:` ranges in its steps"):
        gapprof.attribute(trace[0]).modules


def test_options_are_the_dataclasses_fields_each_documented(trace, tmp_path):
    accepted = [f.name for f in (*fields(attribution.Options), *fields(tables.TableOptions))]
    assert list(api.OPTIONS) == accepted
    assert all(f"{name}" in gapprof.attribute.__doc__ for name in accepted)
    with pytest.raises(GapprofError, match="unknown option contxt; choose from range_pattern, skip, model, ctx"):
        gapprof.attribute(trace[0], contxt=10)
    with pytest.raises(GapprofError, match=f"ncu={tmp_path / 'none.csv'}: no such file"):
        gapprof.attribute(trace[0], ncu=tmp_path / "none.csv")
    assert gapprof.attribute(trace[0], skip=1, top=1).kernels.height == 1


def test_the_command_and_the_api_read_the_registry(trace, monkeypatch):
    """A name added to the registry alone is a --tables choice, shown by the command, and an API attribute; the
    default and the help are the registry's."""
    assert options.DEFAULT_TABLES == ",".join(name for name, table in tables.TABLES.items() if table.default)
    help_text = CliRunner(env={"COLUMNS": "1000"}).invoke(main, ["attribute", "--help"]).output
    assert f"from: {', '.join(tables.TABLES)}." in " ".join(help_text.split())
    assert tables.shown_order(["findings", "kernels", "cost", "summary"]) == ["kernels", "summary", "cost", "findings"]
    frame = pl.DataFrame({"x": [1]})
    monkeypatch.setitem(
        tables.TABLES,
        "new-table",
        tables.Table(lambda inputs: tables.Built([("new table", frame)], ["new note"], frame)),
    )
    shown = CliRunner().invoke(main, ["attribute", str(trace[0]), "--tables", "new-table,summary", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert list(json.loads(shown.stdout)) == ["new table", "summary", "notes"]
    assert "new note" in json.loads(shown.stdout)["notes"]
    report = gapprof.attribute(trace[0])
    assert report.new_table.equals(frame) and "new_table" in dir(report)
    with pytest.raises(AttributeError, match="no attribute 'newtable'"):
        report.newtable


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
    assert pushes == [
        ("prefill", None),
        ("decode_step", 0),
        ("decode_step", 1),
        ("decode_step", 2),
        ("prefill", None),
        ("decode_step", 0),
    ]
    assert recorder.events[1::2] == [("pop",)] * 6  # each range closed before the next opens
    model(torch.tensor([[1]]))
    assert len(recorder.events) == 12 and not model._forward_pre_hooks and not model._forward_hooks


def test_a_forward_that_raises_still_pops_and_unknown_inputs_are_marked_forward():
    torch = pytest.importorskip("torch")

    model, recorder = _tiny_model(), Recorder()
    marks = gapprof.mark_steps(model, ranges=recorder)
    with pytest.raises(Exception):
        model(input_ids=torch.tensor([[10**9]]))  # beyond the vocabulary
    model(inputs_embeds=torch.zeros(1, 3, model.config.hidden_size))
    model(torch.tensor([[1]]))  # input_ids as the first positional argument
    with pytest.raises(Exception):
        model()
    marks.remove()
    assert recorder.events == [
        ("push", "decode_step", 0),
        ("pop",),
        ("push", "prefill", None),
        ("pop",),
        ("push", "decode_step", 0),
        ("pop",),
        ("push", "forward", None),
        ("pop",),
    ]


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
        data["traceEvents"] += [
            dict(launch, cat="cuda_runtime", name="cudaLaunchKernel"),
            dict(launch, cat="kernel", name="gemv", pid=0, tid=7, ts=mark["ts"] + 2),
        ]
    path.write_text(json.dumps(data))
    assert gapprof.attribute(path, skip=0).steps["kernels"].to_list() == [1, 1, 1]


def test_mark_steps_refuses_unknown_ranges():
    with pytest.raises(GapprofError, match="unknown ranges 'perfetto'; choose from nvtx, record_function"):
        gapprof.mark_steps(object(), ranges="perfetto")
