"""`attribute --by module` on synthetic traces: labels by time (module ranges) and by position (graphs)."""

import pytest
from click.testing import CliRunner
from conftest import SEQUENCE, annotated_trace, module_meta
from gapprof.analysis import module_alignment, module_labels, modules
from gapprof.analysis.attribution import Options, analyze
from synthetic import TraceBuilder

from gapprof import models
from gapprof.cli import main
from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name


def graphs_trace(tmp_path, sequence=SEQUENCE, steps=3):
    """Steps with one graph launch each: every kernel carries the same correlationId."""
    b = TraceBuilder()
    b.domain("gapprof", 1)
    for i in range(steps):
        t = 1000 * i
        b.range(t, t + 1000, "decode_step", domain_id=1, payload=i)
        correlation = b.call(t + 10, t + 50, "cudaGraphLaunch_v10000")
        for k, name in enumerate(sequence):
            b.kernel(t + 100 + 50 * k, t + 140 + 50 * k, correlation, name)
    module_meta(b, runtime="graphs")
    return b.write(tmp_path / "graphs.sqlite")


def _rows(table, key):
    return {row[key]: row for row in table.iter_rows(named=True)}


def test_kernels_take_the_innermost_module_range_around_their_launch(tmp_path):
    sections, _ = modules.by_module(analyze(annotated_trace(tmp_path), Options()))
    by_kind = _rows(dict(sections)["modules"], "kind")
    assert {k: r["kernels_per_step"] for k, r in by_kind.items()} == {
        "embed": 1,
        "layer": 1,
        "input_norm": 1,
        "attention": 1,
        "q_proj": 1,
        module_labels.OUTSIDE: 1,
    }
    assert by_kind["q_proj"]["busy_us"] == pytest.approx(0.040)
    assert by_kind["attention"]["busy_us"] == pytest.approx(0.010)
    # CPU time: the whole range, and the range less its children's ranges.
    assert by_kind["layer"]["cpu_us"] == pytest.approx(0.400)
    assert by_kind["layer"]["self_cpu_us"] == pytest.approx(0.400 - 0.050 - 0.200)
    assert by_kind["attention"]["self_cpu_us"] == pytest.approx(0.150)
    assert by_kind["q_proj"]["ranges_per_step"] == 1


def test_module_bytes_bandwidth_and_excess_share(tmp_path):
    result = analyze(annotated_trace(tmp_path), Options())
    sections, _ = modules.by_module(result)
    by_kind = _rows(dict(sections)["modules"], "kind")
    spec = models.get_spec("tiny-qwen2")
    q_bytes = (spec.hidden + 1) * spec.heads * spec.head_dim * 2  # qwen2 has a q bias
    assert by_kind["q_proj"]["mbytes"] == pytest.approx(q_bytes / 1e6)
    assert by_kind["q_proj"]["achieved_gbps"] == pytest.approx(q_bytes / 40)
    assert by_kind["q_proj"]["peak_pct"] == pytest.approx(100 * q_bytes / 40 / 3350)
    kv = 2 * spec.kv_heads * spec.head_dim * 2
    # Measured steps read ctx 101 and 102 and write one token each.
    assert by_kind["attention"]["mbytes"] == pytest.approx(kv * (102 + 103) / 2 / 1e6)
    measured = result.steps.filter(~result.steps["warmup"])
    # One stream, no overlap: the modules' busy time adds up to the steps' busy time.
    assert sum(r["busy_us"] for r in by_kind.values()) * 1000 * 2 == pytest.approx(measured["busy"].sum())
    q_excess_us = 0.040 - q_bytes / 3350 / 1000
    assert by_kind["q_proj"]["excess_us"] == pytest.approx(q_excess_us)
    share = 100 * q_excess_us * 1000 * 2 / measured["excess"].sum()
    assert by_kind["q_proj"]["excess_share_pct"] == pytest.approx(share)
    layers = _rows(dict(sections)["layers"], "layer")
    assert set(layers) == {"0", "model", module_labels.OUTSIDE}
    assert layers["0"]["kernels_per_step"] == 4
    assert dict(sections)["module facts"]["module range cost, ms/step (unprofiled, with - without hooks)"] == 0.25


def test_graphs_steps_map_by_position_onto_the_reference(tmp_path):
    reference = analyze(annotated_trace(tmp_path), Options())
    sections, notes = modules.by_module(analyze(graphs_trace(tmp_path), Options()), reference)
    by_kind = _rows(dict(sections)["modules"], "kind")
    assert {k: r["kernels_per_step"] for k, r in by_kind.items()} == {
        "embed": 1,
        "layer": 1,
        "input_norm": 1,
        "attention": 1,
        "q_proj": 1,
        module_labels.OUTSIDE: 1,
    }
    assert by_kind["q_proj"]["cpu_us"] is None  # no ranges in a graphs trace
    assert "sequence differences" not in dict(sections) and not notes


def test_differing_sequences_are_reported_and_left_unmatched(tmp_path):
    changed = ["embedding_kernel", "rms_norm", "copy_kernel", "gemv", "flash_kernel", "add_kernel", "argmax_kernel"]
    reference = analyze(annotated_trace(tmp_path), Options())
    sections, notes = modules.by_module(analyze(graphs_trace(tmp_path, changed), Options()), reference)
    by_kind = _rows(dict(sections)["modules"], "kind")
    assert by_kind[module_alignment.UNMATCHED]["kernels_per_step"] == 2
    assert by_kind["q_proj"]["kernels_per_step"] == 1 and "attention" not in by_kind
    diffs = dict(sections)["sequence differences"]
    assert diffs.select("tag", "reference_ops", "ops", "steps").rows() == [
        ("insert", "", "copy_kernel", 2),
        ("replace", "sdpa_kernel", "flash_kernel", 2),
    ]
    assert "differs from the reference" in notes[0]


def test_align_matches_runs_and_lists_what_differs():
    matched, diffs = module_alignment.align(list("abcab"), list("abxab"))
    assert matched == [0, 1, None, 3, 4]
    assert diffs == [("replace", 2, ["c"], 2, ["x"])]
    assert module_alignment.align(["a"] * 300, ["a"] * 300) == (list(range(300)), [])


@pytest.mark.parametrize(
    "name, short",
    [
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::AUnaryFunctor<float>>(int, T1)",
            "vectorized_elementwise_kernel",
        ),
        ("nvjet_hsh_64x32_64x12_2x1_v_bz_splitK_TNT", "nvjet_hsh_64x32_64x12_2x1_v_bz_splitK_TNT"),
        ("pytorch_flash::flash_fwd_splitkv_kernel", "flash_fwd_splitkv_kernel"),
        # ncu writes the anonymous namespace as <unnamed>, inside and outside template arguments.
        (
            "void at::<unnamed>::CatArrayBatchedCopy<at::<unnamed>::OpaqueType<2>, unsigned int, 4, 64, 64>(T1 *, "
            "at::<unnamed>::CatArrInputTensorMetadata<T1, T2, T4, T5>, int, T2)",
            "CatArrayBatchedCopy",
        ),
        # The C++ runtime's demangler (CUPTI backend, Kineto) writes it as (anonymous namespace).
        (
            "void at::native::(anonymous namespace)::CatArrayBatchedCopy<"
            "at::native::(anonymous namespace)::OpaqueType<2u>, unsigned int, 4, 64, 64>"
            "(at::native::(anonymous namespace)::OpaqueType<2u>*, int)",
            "CatArrayBatchedCopy",
        ),
        (
            "void (anonymous namespace)::elementwise_kernel_with_index<int, "
            "at::native::arange_cuda_out(c10::Scalar const&)::{lambda()#1}::operator()() const"
            "::{lambda()#1}::operator()() const::{lambda(long)#1}>(int, long)",
            "elementwise_kernel_with_index",
        ),
    ],
)
def test_short_name(name, short):
    assert short_name(name) == short


def test_without_module_ranges_or_reference_is_a_clear_error(tmp_path):
    path = graphs_trace(tmp_path)
    with pytest.raises(modules.NoModuleRanges) as missing:
        modules.by_module(analyze(path, Options()))
    assert (missing.value.path, missing.value.role) == (path, "trace")
    result = CliRunner().invoke(main, ["attribute", str(path), "--by", "module"])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if not line.startswith("[gapprof]")]  # progress lines
    assert len(error) == 1 and error[0].startswith(f"Error: {path}: no `module:` ranges")
    assert "gapprof capture --modules" in error[0]


def test_reference_of_another_model_is_refused(tmp_path):
    reference = analyze(annotated_trace(tmp_path), Options())
    other = analyze(graphs_trace(tmp_path), Options())
    other.frames.meta["model"] = "tiny-llama"
    with pytest.raises(GapprofError, match="only map within one model"):
        modules.by_module(other, reference)


def test_reference_with_other_quantisation_is_refused(tmp_path):
    """Quantised layers run other kernels than bf16 ones: positions map only within one method (and lm_head choice);
    a record of no quantisation is the same as none."""
    reference = analyze(annotated_trace(tmp_path), Options())
    other = analyze(graphs_trace(tmp_path), Options())
    other.frames.meta["quant"] = {"method": "none"}
    modules.by_module(other, reference)
    other.frames.meta["quant"] = {"method": "int8", "lm_head": False}
    with pytest.raises(GapprofError, match=r"quantise their weights differently \(int8 and none\)"):
        modules.by_module(other, reference)
    reference.frames.meta["quant"] = {"method": "int8", "lm_head": True}
    with pytest.raises(GapprofError, match=r"differently \(int8 and int8 with lm_head\)"):
        modules.by_module(other, reference)


def test_attribute_by_module_cli(tmp_path):
    path = annotated_trace(tmp_path)
    out = CliRunner().invoke(
        main, ["attribute", str(path), "--by", "module", "--format", "csv", "-o", str(tmp_path / "t")]
    )
    assert out.exit_code == 0, out.output
    assert {"modules.csv", "layers.csv"} <= {p.name for p in (tmp_path / "t").iterdir()}
    assert "q_proj" in (tmp_path / "t" / "modules.csv").read_text()
    graphs = graphs_trace(tmp_path)
    out = CliRunner().invoke(main, ["attribute", str(graphs), "--by", "module", "--reference", str(path)])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["attribute", str(graphs), "--by", "module"])
    assert out.exit_code == 1 and "capture --modules" in out.output
