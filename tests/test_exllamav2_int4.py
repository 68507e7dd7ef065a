"""`--quant exllamav2-int4` on a CPU: GPTQ's packing round-trips, the quantiser stays within half a step, a model's
layers are replaced and record what they store (the kernel's matrix handle stood in for: ExLlamaV2's kernels are
CUDA only), and a failed extension build is one line. The kernel itself runs in test_quant_capture's GPU test."""
import sys
import types

import pytest

torch = pytest.importorskip("torch")

from gapprof import models, quant  # noqa: E402
from gapprof.errors import GapprofError  # noqa: E402
from gapprof.profiler import exllamav2_linear, gptq_pack  # noqa: E402
from gapprof.profiler.build import build_model  # noqa: E402
from gapprof.profiler.quantize import quantize_model  # noqa: E402
from test_quant_capture import check_record  # noqa: E402


def test_packing_round_trips_codes_and_stores_zero_point_eight_as_seven():
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(0))
    codes, scales = gptq_pack.quantize_symmetric(weight, 128)
    packed = gptq_pack.pack(codes, scales)
    assert {name: (t.dtype, tuple(t.shape)) for name, t in packed.items()} == {
        "qweight": (torch.int32, (32, 48)), "qzeros": (torch.int32, (2, 6)), "scales": (torch.float16, (2, 48))}
    assert torch.equal(gptq_pack.unpack_rows(packed["qweight"]).t(), codes)
    assert bool((packed["qzeros"] == 0x77777777).all())  # eight 4-bit zero points of 8, stored minus one
    assert int(packed["qweight"][0, 0]) == sum(int(codes[0, j]) << (4 * j) for j in range(8)) - (
        2**32 if codes[0, 7] >= 8 else 0)


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
    assert str(raised.value) == ("--quant exllamav2-int4: exllamav2's CUDA extension did not build or load "
                                 "(RuntimeError: Error building extension 'exllamav2_ext'); it needs nvcc and ninja "
                                 "on the PATH")


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
