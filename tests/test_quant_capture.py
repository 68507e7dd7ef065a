"""`--quant` on the capture side with tiny configs: the bytes recorded for each method equal the tensors' storage
and the analytic estimate, sessions record them, the int4 quantiser behind gemlite-int4, and the errors for a
missing library or a device the method cannot run on. int8 and nf4 run here on the CPU; int4, gemlite-int4 and
exllamav2-int4 are checked on CPU stand-ins of their layouts, and for real on a GPU (skipped without CUDA)."""

import sys
import types

import pytest

torch = pytest.importorskip("torch")

from gapprof.profiler import exllamav2_linear, gptq_pack, quant_bytes  # noqa: E402
from gapprof.profiler.build import build_model  # noqa: E402
from gapprof.profiler.int4_groups import dequantize_groups, quantize_groups  # noqa: E402
from gapprof.profiler.quantize import quantize_model  # noqa: E402
from gapprof.profiler.request import CaptureRequest, validate  # noqa: E402

from gapprof import models, quant, quant_floor  # noqa: E402
from gapprof.errors import GapprofError  # noqa: E402

CUDA = torch.cuda.is_available()
LIBRARY = {
    "int8": "torchao",
    "int4": "torchao",
    "nf4": "bitsandbytes",
    "gemlite-int4": "gemlite",
    "exllamav2-int4": "exllamav2",
}


def needs(method: str):
    pytest.importorskip(LIBRARY[method], reason=f"--quant {method} needs {LIBRARY[method]} (the quant extra)")


def check_record(model, method: str, dtype_bytes: int) -> dict:
    """Every recorded tensor's bytes equal its storage, and each kind's bytes the analytic estimate."""
    for path, entry in quant_bytes.modules_record(model).items():
        module = model.get_submodule(path)
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        leaves = dict(leaf for top, tensor in own for leaf in quant_bytes.leaves(top, tensor))
        assert leaves.keys() == entry["tensors"].keys(), path
        for name, leaf in leaves.items():
            assert entry["tensors"][name]["bytes"] == leaf.untyped_storage().nbytes(), (path, name)
    record = quant_bytes.quant_record(model, method, False)
    spec = models.get_spec("tiny-qwen2")
    assert quant_floor.recorded({"quant": record}).stored == quant_floor.analytic(spec, method, dtype_bytes).stored
    shapes = quant.linear_shapes(spec)
    for entry in record["modules"].values():
        if entry["kind"] in quant.LINEAR_KINDS:
            expected = quant.linear_tensors(method, *shapes[entry["kind"]], dtype_bytes)
            assert {n: t["bytes"] for n, t in entry["tensors"].items()} == expected
    return record


@pytest.mark.parametrize("method", ["int8", "nf4"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_bytes_recorded_on_the_cpu_equal_storage_and_the_estimate(method, dtype):
    needs(method)
    model, _ = build_model("tiny-qwen2", dtype, "sdpa", "cpu", seed=0, quant=method)
    record = check_record(model, method, models.DTYPE_BYTES[dtype])
    assert record["method"] == method and record["library"].startswith(LIBRARY[method])
    assert record["kinds"]["q_proj"]["instances"] == 2
    assert model.model.embed_tokens.weight.dtype == model.lm_head.weight.dtype == getattr(torch, dtype)


def test_int8_leaves_inductor_settings_as_they_were(monkeypatch):
    """torchao's default turns on coordinate-descent autotuning for the whole process; quantising must not, or
    compile cells of quantised and bf16 weights would be compiled differently (int8 autotuned for minutes)."""
    needs("int8")
    inductor = pytest.importorskip("torch._inductor.config")
    monkeypatch.setattr(inductor, "coordinate_descent_tuning", False)
    monkeypatch.setattr(inductor, "force_fuse_int_mm_with_mul", False)
    build_model("tiny-qwen2", "bfloat16", "sdpa", "cpu", seed=0, quant="int8")
    assert not inductor.coordinate_descent_tuning and not inductor.force_fuse_int_mm_with_mul


def test_int4_tile_packing_is_recorded_as_its_parts():
    # A CPU stand-in: torchao's Int4TilePackedTo4dTensor with the shapes its packing gives (it packs on CUDA only).
    needs("int4")
    from torchao.quantization import Int4TilePackedTo4dTensor

    out_features, in_features = 512, 3584
    n, k = 512, 4096  # padded to multiples of 8 and 1024
    weight = Int4TilePackedTo4dTensor(
        torch.zeros(n // 8, k // 128, 32, 4, dtype=torch.int32),
        torch.zeros(k // 128, n, 2, dtype=torch.bfloat16),
        [1, 128],
        torch.Size([out_features, in_features]),
    )
    linear = torch.nn.Linear(in_features, out_features, dtype=torch.bfloat16)
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    tensors = quant_bytes.module_tensors(linear)
    assert {name: t["bytes"] for name, t in tensors.items()} == quant.linear_tensors("int4", 512, 3584, True, 2)


def test_the_int4_quantiser_keeps_every_weight_within_half_a_step():
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(0))
    codes, scales, zeros = quantize_groups(weight, 64)
    assert codes.dtype == torch.uint8 and codes.shape == (48, 256) and int(codes.max()) <= 15
    assert scales.shape == zeros.shape == (48, 4) and scales.dtype == torch.float32
    error = (dequantize_groups(codes, scales, zeros) - weight).abs().reshape(48, 4, 64)
    assert bool((error <= scales.unsqueeze(-1) / 2 + 1e-6).all())
    grouped = weight.reshape(48, 4, 64)
    assert torch.equal(codes.reshape(48, 4, 64).amin(-1), torch.zeros(48, 4, dtype=torch.uint8))  # min -> 0
    assert torch.equal(codes.reshape(48, 4, 64).amax(-1), torch.full((48, 4), 15, dtype=torch.uint8))  # max -> 15
    assert torch.allclose(
        dequantize_groups(codes, scales, zeros).reshape(48, 4, 64).amin(-1), grouped.amin(-1), atol=1e-5
    )
    with pytest.raises(ValueError, match="not a multiple of the group size"):
        quantize_groups(weight, 96)


def test_a_quantised_session_records_its_bytes():
    needs("nf4")
    from gapprof.profiler.session import run_session

    request = CaptureRequest(model="tiny-qwen2", ctx=16, steps=2, warmup=1, device="cpu", dtype="bfloat16", quant="nf4")
    meta, _ = run_session(request)
    assert meta["quant"]["method"] == "nf4" and meta["quant"]["lm_head"] is False
    layer = meta["quant"]["modules"]["model.layers.0.mlp.down_proj"]
    # 4 bits, a float32 absmax per 64 weights, and the 16-entry float32 code table of a 128 x 64 layer
    assert layer["tensors"]["weight"]["dtype"] == "uint8"
    assert layer["bits_per_weight"] == pytest.approx(4 + 32 / 64 + 8 * 64 / (64 * 128))
    stored = sum(
        t["bytes"] for m in meta["quant"]["modules"].values() for t in m["tensors"].values() if m["kind"] != "rotary"
    )  # inv_freq is a buffer, not a parameter
    assert meta["param_bytes"] == stored
    floor = meta["quant"]["floor"]
    assert floor["ctx"] == 16 + meta["first_profiled_index"] + 1  # the first measured step
    assert floor["bytes"]["total"] < floor["unquantised_bytes"]["total"]
    assert floor["bytes"]["kv_read"] == floor["unquantised_bytes"]["kv_read"]


def test_a_method_the_device_cannot_run_is_refused_before_any_model_is_built(monkeypatch):
    import gapprof.profiler.session as session

    monkeypatch.setattr(session, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    request = CaptureRequest(model="tiny-qwen2", ctx=16, steps=2, warmup=1, device="cpu", quant="int4")
    with pytest.raises(GapprofError, match=r"^--quant int4 runs on CUDA only"):
        session.run_session(request)
    with pytest.raises(GapprofError, match=r"^--quant gemlite-int4 runs on CUDA only"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, device="cpu", quant="gemlite-int4"))


def test_the_lean_runtime_refuses_quantised_weights():
    with pytest.raises(GapprofError, match=r"^--quant does not run under runtime lean"):
        validate(CaptureRequest(model="tiny-qwen2", ctx=16, device="cpu", runtime="lean", warmup=4, quant="int8"))


def test_a_missing_library_fails_the_build_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)
    expected = r'^--quant int8 needs torchao \(torchao==0.18.0\): `pip install -e "\.\[quant\]"`'
    with pytest.raises(GapprofError, match=expected):
        build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0, quant="int8")


def test_ab_with_a_missing_library_stops_before_any_session(monkeypatch):
    from click.testing import CliRunner
    from gapprof.profiler import fresh_sessions

    from gapprof.cli import main

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setattr(fresh_sessions, "run_fresh", lambda requests: pytest.fail("a session was started"))
    result = CliRunner().invoke(
        main,
        [
            "ab",
            "--model",
            "tiny-qwen2",
            "--ctx",
            "16",
            "--device",
            "cpu",
            "--a",
            "eager",
            "--b",
            "static",
            "--quant-b",
            "nf4",
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'Error: --quant nf4 needs bitsandbytes (bitsandbytes==0.50.2): `pip install -e ".[quant]"` in the gapprof '
        "checkout"
    )


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["int8", "int4", "nf4", "gemlite-int4", "exllamav2-int4"])
def test_every_runtime_decodes_and_records_the_estimated_bytes_on_gpu(method, monkeypatch):
    needs(method)
    from gapprof.profiler.decode import run_steps
    from gapprof.profiler.runtimes import make_runtime

    from gapprof.runtime_table import RUNTIMES

    if method in ("int4", "exllamav2-int4"):  # groups of 128 weights along in_features: the tiny config widened
        monkeypatch.setitem(models._TINY, "hidden_size", 128)
        monkeypatch.setitem(models._TINY, "intermediate_size", 256)
    dtype = "float16" if method == "exllamav2-int4" else "bfloat16"  # ExLlamaV2's kernels take float16 only
    model, config = build_model("tiny-qwen2", dtype, "sdpa", "cuda", seed=0, quant=method)
    check_record(model, method, 2)
    prompt = torch.randint(0, config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(1)).cuda()
    for name in (r for r in RUNTIMES if r != "lean"):  # lean is refused with --quant (test below)
        runtime = make_runtime(name, model, max_len=64)
        runtime.prefill(prompt)
        decoded, _ = run_steps(runtime, 6)
        assert len(decoded) == 6, name


def test_int4_refuses_layers_whose_in_features_torchao_would_leave_unquantised():
    model, _ = build_model("tiny-qwen2", "bfloat16", "sdpa", "cpu", seed=0)  # hidden 64: not a multiple of 128
    with pytest.raises(
        GapprofError,
        match=r"^--quant int4 quantises groups of 128 weights along in_features: "
        r"model\.layers\.0\.self_attn\.q_proj has 64 \(12 of 14 layers",
    ):
        quantize_model(model, "int4")


@pytest.mark.parametrize(
    "method, library, dtype",
    [
        ("int4", "torchao", "bfloat16"),
        ("gemlite-int4", "gemlite", "bfloat16"),
        ("exllamav2-int4", "exllamav2", "float16"),
    ],
)
def test_capture_without_the_library_says_how_to_install_it(method, library, dtype, monkeypatch):
    from click.testing import CliRunner
    from gapprof.profiler import nsys_capture

    from gapprof.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine without the quant extra
    monkeypatch.setitem(sys.modules, library, None)
    monkeypatch.setattr(nsys_capture, "capture_with_nsys", lambda *a: pytest.fail("a capture was started"))
    result = CliRunner().invoke(
        main, ["capture", "--model", "tiny-qwen2", "--ctx", "16", "--quant", method, "--dtype", dtype]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: --quant {method} needs {library} (")
    assert 'pip install -e ".[quant]"' in result.stderr


# exllamav2-int4 on a CPU: GPTQ's packing, the quantiser, the record (the kernel's matrix handle stood in for:
# ExLlamaV2's kernels are CUDA only) and a failed extension build; on a GPU, the kernel's product.


def unpack_rows(words: torch.Tensor) -> torch.Tensor:
    """The 4-bit values [rows * 8, cols] of GPTQ words [rows, cols], lowest bits first."""
    shifts = torch.arange(0, 32, 4).view(1, 8, 1)
    return ((words.to(torch.int64).unsqueeze(1) >> shifts) & 0xF).reshape(-1, words.shape[1]).to(torch.uint8)


def test_packing_round_trips_codes_and_stores_zero_point_eight_as_seven():
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(0))
    codes, scales = gptq_pack.quantize_symmetric(weight, 128)
    packed = gptq_pack.pack(codes, scales)
    assert {name: (t.dtype, tuple(t.shape)) for name, t in packed.items()} == {
        "qweight": (torch.int32, (32, 48)),
        "qzeros": (torch.int32, (2, 6)),
        "scales": (torch.float16, (2, 48)),
    }
    assert torch.equal(unpack_rows(packed["qweight"]).t(), codes)
    assert bool((packed["qzeros"] == 0x77777777).all())  # eight 4-bit zero points of 8, stored minus one
    assert int(packed["qweight"][0, 0]) == sum(int(codes[0, j]) << (4 * j) for j in range(8)) - (
        2**32 if codes[0, 7] >= 8 else 0
    )


def test_the_symmetric_quantiser_keeps_every_weight_within_half_a_step():
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(1))
    codes, scales = gptq_pack.quantize_symmetric(weight, 64)
    dequantised = (codes.float().reshape(48, 4, 64) - 8) * scales.float().unsqueeze(-1)
    error = (dequantised - weight.reshape(48, 4, 64)).abs()
    assert bool((error <= scales.float().unsqueeze(-1) / 2 + 1e-6).all())
    with pytest.raises(ValueError, match="not a multiple of the group size"):
        gptq_pack.quantize_symmetric(weight, 96)


def test_layers_are_replaced_and_record_what_they_store(monkeypatch):
    if quant.missing_library("exllamav2-int4"):  # not imported here: importing exllamav2 builds its extension
        pytest.skip("--quant exllamav2-int4 needs exllamav2 (the quant extra)")
    handles = []

    def make_q_matrix(parts, temp_dq, max_dq_rows):
        assert set(parts) <= {"qweight", "qzeros", "scales", "bias"} and max_dq_rows == 0
        handles.append(parts)
        return len(handles)

    monkeypatch.setattr(exllamav2_linear, "exllamav2_ext", lambda: (None, make_q_matrix))
    model, _ = build_model("tiny-qwen2", "float16", "sdpa", "cpu", seed=0)
    quantize_model(model, "exllamav2-int4")
    layers = [m for m in model.modules() if isinstance(m, exllamav2_linear.ExLlamaV2Linear)]
    assert len(layers) == len(handles) == 2 * len(quant.LINEAR_KINDS)
    assert sum("bias" in parts for parts in handles) == 2 * 3  # q, k and v of Qwen2 have one
    record = check_record(model, "exllamav2-int4", 2)
    down = record["modules"]["model.layers.0.mlp.down_proj"]  # 128 -> 64: groups of 128
    assert down["bits_per_weight"] == pytest.approx(4 + 4 / 128 + 16 / 128)
    assert models.get_spec("tiny-qwen2").hidden == 64  # q_proj etc.: in 64, groups of 64


def test_a_failed_extension_build_is_one_line(monkeypatch):
    class Unbuilt(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError("Error building extension 'exllamav2_ext'\nninja: build stopped")

    monkeypatch.setitem(sys.modules, "exllamav2", types.ModuleType("exllamav2"))
    monkeypatch.setitem(sys.modules, "exllamav2.ext", Unbuilt("exllamav2.ext"))
    with pytest.raises(GapprofError) as raised:
        exllamav2_linear.exllamav2_ext()
    assert str(raised.value) == (
        "--quant exllamav2-int4: exllamav2's CUDA extension did not build or load "
        "(RuntimeError: Error building extension 'exllamav2_ext'); it needs nvcc and ninja "
        "on the PATH"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("rows", [1, 40])
def test_the_kernel_multiplies_by_the_weight_the_packing_stands_for_on_gpu(rows):
    """ExLlamaV2's product equals F.linear with the dequantised weight: GPTQ's layout is read as packed."""
    generator = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(512, 384, dtype=torch.float16)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(384, 512, generator=generator) * 0.02)
        linear.bias.copy_(torch.randn(384, generator=generator))
    layer = exllamav2_linear.ExLlamaV2Linear(linear.cuda(), 128)  # its qweight is then shuffled for the kernel
    codes, scales = gptq_pack.quantize_symmetric(linear.weight.data, 128)  # what the layer packed
    weight = ((codes.float().reshape(384, 4, 128) - 8) * scales.float().unsqueeze(-1)).reshape(384, 512).cpu()
    x = torch.randn(1, rows, 512, generator=generator).half()
    expected = torch.nn.functional.linear(x.float(), weight, linear.bias.float().cpu())
    got = layer(x.cuda()).float().cpu()
    assert got.shape == (1, rows, 384)
    assert torch.allclose(got, expected, atol=2e-2, rtol=1e-2), (got - expected).abs().max()
