"""The floor of a weight-only quantised model, torch-free: the bytes each method stores for a linear layer (by
hand for Qwen2.5-7B), the capture's record, the refusals, and attribute's quantised floor from a trace's record or
from --quant's analytic estimate."""

import re

import pytest
from click.testing import CliRunner
from conftest import H100, basic_step
from gapprof.analysis.attribution import Options, analyze, facts_table
from synthetic import TraceBuilder

from gapprof import models, quant, quant_floor
from gapprof.cli import main
from gapprof.errors import GapprofError
from gapprof.step_bytes import kind_bytes, step_bytes

QWEN = models.get_spec("qwen2.5-7b")
PADDED = 4096  # int4 tile packing pads in_features 3584 to a multiple of 1024


@pytest.mark.parametrize(
    "method, expected",
    [
        ("none", {"weight": 512 * 3584 * 2, "bias": 512 * 2}),
        ("int8", {"weight.qdata": 512 * 3584, "weight.scale": 512 * 4, "weight.zero_point": 512, "bias": 512 * 2}),
        (
            "int4",
            {"weight.qdata": 512 * PADDED // 2, "weight.scale_and_zero": PADDED // 128 * 512 * 2 * 2, "bias": 512 * 2},
        ),
        (
            "nf4",
            {
                "weight": 512 * 3584 // 2,
                "weight.quant_state.absmax": 512 * 3584 // 64 * 4,
                "weight.quant_state.code": 64,
                "bias": 512 * 2,
            },
        ),
        (
            "gemlite-int4",
            {
                "W_q": 512 * 3584 // 2,
                "scales": 3584 // 128 * 512 * 2,
                "zeros": 3584 // 128 * 512 * 2,
                "bias": 512 * 2,
                "meta_scale": 4,
                "metadata": 48,
                "orig_shape": 8,
            },
        ),
        (
            "exllamav2-int4",
            {
                "qweight": 3584 // 8 * 512 * 4,
                "qzeros": 3584 // 128 * 512 // 8 * 4,
                "scales": 3584 // 128 * 512 * 2,
                "bias": 512 * 2,
            },
        ),
    ],
)
def test_what_each_method_stores_for_qwen_k_proj(method, expected):
    # k_proj of Qwen2.5-7B: 3584 -> 4 KV heads x 128 = 512, with a bias; bfloat16.
    assert quant.linear_tensors(method, 512, 3584, True, 2) == expected


def test_unread_tensors_are_left_out_of_the_floor():
    int8 = quant.linear_tensors("int8", 512, 3584, True, 2)
    assert quant.read_bytes("int8", int8) == sum(int8.values()) - 512  # the zero points
    gemlite = quant.linear_tensors("gemlite-int4", 512, 3584, True, 2)
    assert quant.read_bytes("gemlite-int4", gemlite) == sum(gemlite.values()) - 48 - 8


def test_analytic_floor_of_qwen_int4_by_hand():
    estimate = quant_floor.analytic(QWEN, "int4", 2)
    # down_proj: out 3584, in 18944 padded to 19456; gate/up: out 18944, in 3584 padded to 4096.
    assert estimate.stored["down_proj"] == 3584 * 19456 // 2 + 19456 // 128 * 3584 * 4
    assert estimate.stored["gate_proj"] == 18944 * PADDED // 2 + PADDED // 128 * 18944 * 4
    assert "lm_head" not in estimate.stored and estimate.source == quant_floor.ANALYTIC
    weights = 28 * (3584 * 3584 * 2 + 512 * 3584 * 2 + 18944 * 3584 * 3)
    assert 4.5 < estimate.bits_per_weight < 5.2  # 4 bits, 4/128 of scale and zero, and the padding
    parts = step_bytes(QWEN, 2048, 2, stored=estimate.stored)
    bf16 = step_bytes(QWEN, 2048, 2)
    assert bf16["total"] - parts["total"] == sum(
        kind_bytes(QWEN, 2048, 2)[k] - 28 * estimate.stored[k] for k in quant.LINEAR_KINDS
    )
    assert parts["kv_read"] == bf16["kv_read"] and parts["embedding"] == bf16["embedding"]
    assert weights * 2 < bf16["weights"]


def test_quantised_lm_head_counts_in_the_floor():
    estimate = quant_floor.analytic(QWEN, "nf4", 2, lm_head=True)
    assert estimate.stored["lm_head"] == 152064 * 3584 // 2 + 152064 * 3584 // 64 * 4 + 64


@pytest.mark.parametrize(
    "method, lm_head, device, dtype, message",
    [
        ("int4", False, "cpu", "bfloat16", "--quant int4 runs on CUDA only (its packing and its kernel"),
        ("gemlite-int4", False, "cpu", "bfloat16", "--quant gemlite-int4 runs on CUDA only (its kernels are Triton"),
        ("exllamav2-int4", False, "cpu", "float16", "--quant exllamav2-int4 runs on CUDA only (its kernels are CUDA"),
        ("int4", False, "cuda", "float32", "--quant int4 quantises bfloat16 weights, not float32 (--dtype bfloat16)"),
        (
            "exllamav2-int4",
            False,
            "cuda",
            "bfloat16",
            "--quant exllamav2-int4 quantises float16 weights, not bfloat16 (--dtype float16)",
        ),
        ("none", True, "cuda", "bfloat16", "--quant-lm-head quantises lm_head with the --quant method"),
        ("int3", False, "cuda", "bfloat16", "unknown --quant 'int3'"),
    ],
)
def test_requests_a_method_cannot_serve_are_refused_in_one_line(method, lm_head, device, dtype, message):
    with pytest.raises(GapprofError, match="^" + re.escape(message)):
        quant.check_request(method, lm_head, device, dtype)


def test_int8_and_nf4_run_on_the_cpu():
    for method in ("int8", "nf4"):
        quant.check_request(method, True, "cpu", "float32")


def test_a_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)
    assert quant.missing_library("nf4") == "bitsandbytes"
    with pytest.raises(GapprofError) as raised:
        quant.check_library("nf4")
    assert str(raised.value) == (
        '--quant nf4 needs bitsandbytes (bitsandbytes==0.50.2): `pip install -e ".[quant]"` in the gapprof checkout'
    )
    assert quant.missing_library("none") is None


def _tensors(**sizes):
    return {name: {"dtype": "uint8", "shape": [size], "bytes": size} for name, size in sizes.items()}


def test_the_record_marks_what_a_step_reads_and_sums_it_per_kind():
    modules = {
        f"model.layers.{i}.self_attn.k_proj": {
            "kind": "k_proj",
            "shape": [8, 16],
            "tensors": _tensors(**{"weight.qdata": 128, "weight.scale": 32, "weight.zero_point": 8}),
        }
        for i in range(2)
    }
    modules["model.norm"] = {"kind": "final_norm", "shape": None, "tensors": _tensors(weight=32)}
    record = quant_floor.record("int8", False, modules, "torchao 0.18.0")
    k_proj = record["modules"]["model.layers.0.self_attn.k_proj"]
    assert [t["read"] for t in k_proj["tensors"].values()] == [True, True, False]
    assert k_proj["read_bytes"] == 160 and k_proj["stored_bytes"] == 168
    assert k_proj["bits_per_weight"] == 8 * 160 / 128 == record["bits_per_weight"]
    assert record["kinds"]["k_proj"] == {"instances": 2, "read_bytes": 160, "stored_bytes": 168}
    floor = quant_floor.recorded({"quant": record})
    assert floor.stored == {"k_proj": 160} and floor.source == quant_floor.RECORDED
    modules["model.layers.1.self_attn.k_proj"]["tensors"]["weight.qdata"]["bytes"] = 64
    with pytest.raises(GapprofError, match="one size per module kind"):
        quant_floor.record("int8", False, modules, "torchao 0.18.0")


def tiny_record(method: str) -> dict:
    """The `quant` metadata of tiny-qwen2 as a capture with `method` records it, from the analytic tensors."""
    spec = models.get_spec("tiny-qwen2")
    shapes = quant.linear_shapes(spec)
    modules = {}
    for layer in range(spec.layers):
        for kind in quant.LINEAR_KINDS:
            out_features, in_features, bias = shapes[kind]
            parent = "self_attn" if kind[0] in "qkvo" else "mlp"
            tensors = quant.linear_tensors(method, out_features, in_features, bias, 2)
            modules[f"model.layers.{layer}.{parent}.{kind}"] = {
                "kind": kind,
                "shape": [out_features, in_features],
                "tensors": {name: {"dtype": "uint8", "shape": [b], "bytes": b} for name, b in tensors.items()},
            }
    return quant_floor.record(method, False, modules, "test")


def quant_trace(tmp_path, name="q.sqlite", **meta):
    b = TraceBuilder()
    for i in range(3):
        basic_step(b, offset=2000 * i)
    b.gpu_info(H100, None)
    b.meta = dict(
        model="tiny-qwen2",
        config=models.load_config("tiny-qwen2"),
        dtype="bfloat16",
        dtype_bytes=2,
        ctx=100,
        steps=3,
        warmup=1,
        gpu_name=H100,
        unprofiled_step_ms=[0.0008],
        **meta,
    )
    return b.write(tmp_path / name)


def test_attribute_takes_the_recorded_bytes_and_reports_both_floors(tmp_path):
    path = quant_trace(tmp_path, quant=tiny_record("nf4"))
    result = analyze(path, Options(range_pattern="decode_step"))
    spec = models.get_spec("tiny-qwen2")
    stored = quant_floor.recorded({"quant": tiny_record("nf4")}).stored
    measured = result.measured
    assert measured["bytes"].to_list() == [step_bytes(spec, c, 2, stored=stored)["total"] for c in (101, 102)]
    assert measured["bytes_unquantised"].to_list() == [step_bytes(spec, c, 2)["total"] for c in (101, 102)]
    facts = facts_table(result)
    assert facts["quantisation"] == "nf4, recorded at capture"
    assert "the tensors a step reads as stored, recorded at capture" in facts["floor convention"]
    assert facts["unquantised floor fraction of wall, datasheet"] == pytest.approx(
        measured["bytes_unquantised"].mean() / 3350 / measured["wall"].mean()
    )
    assert facts["unquantised floor bytes per step (mean)"] > facts["floor bytes per step (mean)"]
    assert (
        facts["unquantised floor fraction of unprofiled step, datasheet"]
        > facts["floor fraction of unprofiled step, datasheet"]
    )


@pytest.mark.parametrize("method", ["int8", "int4", "nf4", "gemlite-int4", "exllamav2-int4"])
def test_the_analytic_estimate_of_a_trace_without_a_record_equals_the_record(tmp_path, method):
    recorded = analyze(quant_trace(tmp_path, "r.sqlite", quant=tiny_record(method)), Options())
    estimated = analyze(quant_trace(tmp_path, "e.sqlite"), Options(quant=method))
    assert estimated.measured["bytes"].to_list() == recorded.measured["bytes"].to_list()
    assert facts_table(estimated)["quantisation"] == f"{method}, analytic estimate"
    assert "not recorded at capture" in facts_table(estimated)["floor convention"]


def test_attribute_prints_the_convention_and_refuses_a_contradicting_quant(tmp_path):
    path = str(quant_trace(tmp_path, quant=tiny_record("int8")))
    runner = CliRunner(env={"COLUMNS": "300"})
    shown = runner.invoke(main, ["attribute", path, "--tables", "facts", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert "decoder linears quantised int8 (torchao Int8WeightOnlyConfig()" in shown.stdout
    refused = runner.invoke(main, ["attribute", path, "--quant", "nf4"])
    assert refused.exit_code == 1
    assert "--quant nf4 but the trace was captured with --quant int8, whose bytes it records" in refused.output
    forced = runner.invoke(main, ["attribute", path, "--quant", "nf4", "--force", "--tables", "facts"])
    assert forced.exit_code == 0 and "analytic estimate" in forced.stdout
    lone = runner.invoke(main, ["attribute", path, "--quant-lm-head"])
    assert lone.exit_code == 2 and "--quant-lm-head goes with --quant" in lone.output


def test_the_capture_sets_what_it_stored_against_the_estimate():
    meta = {
        "model": "tiny-qwen2",
        "config": models.load_config("tiny-qwen2"),
        "dtype_bytes": 2,
        "quant": tiny_record("int8"),
    }
    line = quant_floor.estimate_line(meta)
    assert line.startswith("--quant int8: the quantised layers read ") and "; equal to the analytic estimate" in line
    meta["quant"]["kinds"]["down_proj"]["read_bytes"] += 10
    assert "+20 B against the analytic estimate" in quant_floor.estimate_line(meta)  # 2 layers
    assert quant_floor.estimate_line({"model": "tiny-qwen2"}) is None


def test_module_tables_and_the_python_api_count_the_quantised_layers(tmp_path):
    from conftest import annotated_trace
    from gapprof.analysis import modules

    import gapprof

    path = annotated_trace(tmp_path)
    sections, _ = modules.by_module(analyze(path, Options(quant="nf4")))
    q_proj = dict(sections)["modules"].filter(kind="q_proj")
    assert q_proj["mbytes"][0] == pytest.approx(
        quant_floor.analytic(models.get_spec("tiny-qwen2"), "nf4", 2).stored["q_proj"] / 1e6
    )
    facts = gapprof.attribute(path, quant="nf4").facts
    assert facts.filter(key="quantisation")["text"][0] == "nf4, analytic estimate"
