"""Floor, kernel, API and summary tables through analysis.attribution on synthetic traces."""

import pytest
from conftest import H100, basic_step
from gapprof.analysis import kernels
from gapprof.analysis.attribution import (
    Options,
    analyze,
    api_table,
    class_table,
    facts_table,
    kernel_table,
    summary_table,
)
from synthetic import TraceBuilder

from gapprof import models
from gapprof.errors import GapprofError
from gapprof.step_bytes import step_bytes
from gapprof.trace_schema import api_name


def gapprof_trace(tmp_path, steps=3, **meta_overrides):
    """A trace as `gapprof capture` writes it: named domain, payload step index, metadata."""
    b = TraceBuilder()
    b.domain("gapprof", 1)
    for i in range(steps):
        basic_step(b, offset=2000 * i)
    # basic_step writes default-domain ranges; move them into the named domain with the step as payload.
    for i, row in enumerate(r for r in b.rows["NVTX_EVENTS"] if r.get("text") == "decode_step"):
        row.update(text=None, textId=b.string("decode_step"), domainId=1, uint64Value=i)
    b.gpu_info(H100, 3_352_320_000_000)
    b.meta = dict(
        model="tiny-qwen2",
        config=models.load_config("tiny-qwen2"),
        dtype="bfloat16",
        dtype_bytes=2,
        ctx=100,
        steps=steps,
        warmup=1,
        copy_bandwidth_gbps=2000.0,
        gpu_name=H100,
        unprofiled_step_ms=[0.0005, 0.0007, 0.0006],
        range_message="decode_step",
        range_domain="gapprof",
    )
    b.meta.update(meta_overrides)
    return b.write(tmp_path / "g.sqlite")


def test_floor_from_metadata_every_source(tmp_path):
    result = analyze(gapprof_trace(tmp_path), Options())
    spec = models.get_spec("tiny-qwen2")
    measured = result.steps.filter(~result.steps["warmup"])
    assert measured["ctx"].to_list() == [101, 102]  # prefill 100, step i reads 100 + i
    expected = [step_bytes(spec, ctx, 2)["total"] for ctx in (101, 102)]
    assert measured["bytes"].to_list() == expected
    assert measured["floor_datasheet"].to_list() == [round(b / 3350) for b in expected]
    assert measured["floor_device"].to_list() == [round(b / 3352.32) for b in expected]
    assert measured["floor_copy"].to_list() == [round(b / 2000) for b in expected]
    assert measured["floor"].to_list() == measured["floor_datasheet"].to_list()
    assert (measured["floor"] + measured["excess"]).to_list() == measured["busy"].to_list()
    facts = facts_table(result)
    assert facts["floor fraction of wall, copy"] == pytest.approx(sum(round(b / 2000) for b in expected) / 2 / 1000)
    assert facts["floor/excess split against"] == "datasheet"
    assert facts["observer effect (profiled / unprofiled)"] == pytest.approx(0.001 / 0.0006)
    assert "embedding table as one row" in facts["floor convention"]
    assert result.frames.skip == 1 and facts["measured steps"] == 2


def test_count_embedding_adds_the_table(tmp_path):
    path = gapprof_trace(tmp_path)
    plain = analyze(path, Options()).steps["bytes"]
    counted = analyze(path, Options(count_embedding=True))
    spec = models.get_spec("tiny-qwen2")
    assert (counted.steps["bytes"] - plain).unique().to_list() == [(spec.vocab - 1) * spec.hidden * 2]
    assert "--count-embedding" in facts_table(counted)["floor convention"]


def test_ctx_option_is_the_first_measured_context(tmp_path):
    b = TraceBuilder()
    for i in range(3):
        basic_step(b, offset=2000 * i)
    b.gpu_info("NVIDIA L4", None)
    result = analyze(b.write(tmp_path / "t.sqlite"), Options(model="tiny-llama", ctx=50, skip=1))
    assert result.steps["ctx"].to_list() == [49, 50, 51]
    assert facts_table(result)["bandwidth datasheet GB/s (L4 datasheet)"] == 300.0
    assert "device" not in " ".join(facts_table(result))  # no TARGET_INFO_GPU bandwidth in this export
    assert any("--ctx 50" in note for note in result.notes)


def test_floor_needs_ctx_and_a_known_gpu(tmp_path):
    b = TraceBuilder()
    basic_step(b)
    b.gpu_info("Mystery GPU 9000", None)
    path = b.write(tmp_path / "t.sqlite")
    with pytest.raises(GapprofError, match="--ctx is needed"):
        analyze(path, Options(model="tiny-qwen2", skip=0, gpu="a10g"))
    with pytest.raises(
        GapprofError,
        match=r"unknown GPU 'Mystery GPU 9000' for the floor; pass --gpu with one of: "
        r"h100-nvl, .*l4",
    ):
        analyze(path, Options(model="tiny-qwen2", ctx=10, skip=0))
    assert (
        facts_table(analyze(path, Options(model="tiny-qwen2", ctx=10, skip=0, gpu="a10g")))[
            "floor/excess split against"
        ]
        == "datasheet"
    )
    no_floor = analyze(path, Options(skip=0))
    assert "floor" not in no_floor.steps.columns and any("no floor" in n for n in no_floor.notes)


def test_kernel_and_class_tables(tmp_path):
    b = TraceBuilder()
    basic_step(b)
    basic_step(b, offset=2000)
    result = analyze(b.write(tmp_path / "t.sqlite"), Options(skip=0))
    rows = {r["name"]: r for r in kernel_table(result).iter_rows(named=True)}
    assert set(rows) == {"gemv_a", "gemv_b", "flash_attn", "[memcpy DtoH]"}
    assert rows["flash_attn"]["class"] == "attention"
    assert rows["flash_attn"]["starved_before_us_per_step"] == pytest.approx(0.12)
    assert rows["gemv_b"]["latency_before_us_per_step"] == pytest.approx(0.05)
    assert rows["[memcpy DtoH]"]["starved_before_us_per_step"] == pytest.approx(0.03)
    assert rows["gemv_a"]["us_per_step"] == pytest.approx(0.1)
    assert rows["gemv_a"]["busy_share_pct"] == pytest.approx(100 * 100 / 260)
    assert rows["gemv_a"]["calls_per_step"] == 1.0
    classes = {r["class"]: r for r in class_table(result).iter_rows(named=True)}
    assert classes["gemv/gemm"]["us_per_step"] == pytest.approx(0.15)
    assert classes["memcpy/memset"]["calls_per_step"] == 1.0
    assert sum(r["busy_share_pct"] for r in classes.values()) == pytest.approx(100)
    full = analyze(tmp_path / "t.sqlite", Options(skip=0))
    assert "void flash_attn<float>(int)" in kernel_table(full, full_names=True)["name"].to_list()


def test_api_table_names_and_categories(tmp_path):
    b = TraceBuilder()
    basic_step(b)
    graph = b.call(1500, 1510, "cudaGraphLaunch_v10000")
    b.range(1400, 1600)
    b.kernel(1520, 1530, graph)
    result = analyze(b.write(tmp_path / "t.sqlite"), Options(skip=0))
    rows = {r["name"]: r for r in api_table(result).iter_rows(named=True)}
    assert {n: r["category"] for n, r in rows.items()} == {
        "cudaLaunchKernel": "launch",
        "cudaMemcpyAsync": "memcpy",
        "cudaStreamSynchronize": "sync",
        "cudaGraphLaunch": "graph launch",
    }
    assert rows["cudaLaunchKernel"]["calls_per_step"] == 1.5
    assert rows["cudaStreamSynchronize"]["us_per_step"] == pytest.approx(0.38 / 2)
    assert facts_table(result)["CPU us per launch call"] == pytest.approx(0.05 / 5)


def test_summary_terms(tmp_path):
    b = TraceBuilder()
    basic_step(b)
    b.range(2000, 4000)  # an empty step: 2000 ns of head
    result = analyze(b.write(tmp_path / "t.sqlite"), Options(skip=0))
    terms = {r["term"]: r for r in summary_table(result).iter_rows(named=True)}
    assert terms["wall"]["median_ms"] == pytest.approx(0.0015)
    assert terms["head"]["mean_ms"] == pytest.approx((100 + 2000) / 2 / 1e6)
    assert terms["head"]["p90_ms"] == pytest.approx((100 + 0.9 * 1900) / 1e6)
    assert terms["busy"]["share_of_wall_pct"] == pytest.approx(100 * 260 / 3000)
    assert sum(terms[t]["share_of_wall_pct"] for t in ("busy", "starved", "latency", "head", "tail")) == pytest.approx(
        100
    )
    assert facts_table(result)["empty steps (no GPU work)"] == 1


@pytest.mark.parametrize(
    "name, cls",
    [
        ("ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x3_tn", "gemv/gemm"),
        ("nvjet_tst_64x8_64x16_4x1_v_bz_TNT", "gemv/gemm"),
        ("void gemv2T_kernel_val<int, int, __nv_bfloat16, float, 128, 16, 4, 4, false, false>", "gemv/gemm"),
        ("void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4>>", "attention"),
        ("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>", "attention"),
        (
            "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::ArgMaxOps<float>>>",
            "sampling",
        ),
        (
            "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float>>>",
            "reduction",
        ),
        ("void vllm::rms_norm_kernel<c10::BFloat16>", "norm"),
        ("void rotary_embedding_kernel<float>", "rope"),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::direct_copy_kernel_cuda>", "copy/cat"),
        ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float>", "copy/cat"),
        ("void at::native::index_elementwise_kernel<128, 4>", "copy/cat"),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::BinaryFunctor<MulFunctor<float>>>",
            "elementwise",
        ),
        ("triton_poi_fused_add_mul_0", "elementwise"),
        ("triton_red_fused_mean_pow_1", "reduction"),
        # inductor's names list the aten ops fused in: its RMSNorm (mean of squares, rsqrt) and dtype casts (_to_copy)
        ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_11", "norm"),
        ("triton_per_fused__to_copy_add_embedding_mean_mul_pow_rsqrt_0", "norm"),
        ("triton_poi_fused__to_copy_mul_silu_split_6", "elementwise"),
        ("triton_poi_fused_add_copy__17", "copy/cat"),
        ("void gemm_half_q_half_gptq_kernel<true, 1, false, true>(const __half *, ...)", "gemv/gemm"),  # ExLlamaV2
        (
            "cuda_vector_set_int4_kernel(__half *, const __half *, int, int)",
            "copy/cat",
        ),  # its bias written to the output
        ("some_custom_kernel", "other"),
    ],
)
def test_classify(name, cls):
    assert kernels.classify(name) == cls


def test_api_name_drops_the_version_suffix():
    assert api_name("cudaLaunchKernel_v7000") == "cudaLaunchKernel"
    assert api_name("cuLaunchKernelEx") == "cuLaunchKernelEx"
