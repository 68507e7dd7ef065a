"""GPTQ's storage format for 4-bit weights, as ExLlamaV2's kernels read it (`--quant exllamav2-int4`).

The codes come from round-to-nearest in symmetric groups of `group` weights along in_features (GPTQ's `sym=True`
layout: scale = 2 max|w| / 15, zero point 8, code = clamp(round(w / scale) + 8, 0, 15), w ~ (code - 8) x scale),
not from GPTQ's calibrated rounding: the weights are random, and the kernel reads the same bytes either way.
Packed as GPTQ (v1) stores them: qweight int32 [in/8, out], eight codes along in per word, lowest bits first;
qzeros int32 [in/group, out/8], the zero point minus one, eight along out per word; scales float16 [in/group, out].
"""

import torch

ZERO = 8


def quantize_symmetric(weight: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """codes uint8 [out, in] and float16 scales [out, in / group] of a 2-D weight [out, in]."""
    out_features, in_features = weight.shape
    if in_features % group:
        raise ValueError(f"in_features {in_features} is not a multiple of the group size {group}")
    grouped = weight.float().reshape(out_features, in_features // group, group)
    exact = (2 * grouped.abs().amax(-1, keepdim=True) / 15).clamp(min=torch.finfo(torch.float16).tiny)
    scales = exact.half()
    # rounded up where float16 rounded it down, so that every weight stays within half a step of the kept scale
    scales = torch.where(scales.float() < exact, torch.nextafter(scales, torch.full_like(scales, torch.inf)), scales)
    codes = ((grouped / scales.float()).round() + ZERO).clamp(0, 15).to(torch.uint8)
    return codes.reshape(out_features, in_features), scales.squeeze(-1)


def _pack_rows(values: torch.Tensor) -> torch.Tensor:
    """int32 [rows / 8, cols] of 4-bit values [rows, cols]: rows 8i..8i+7 in word i, lowest bits first."""
    rows, cols = values.shape
    shifts = torch.arange(0, 32, 4, device=values.device).view(1, 8, 1)
    words = (values.to(torch.int64).view(rows // 8, 8, cols) << shifts).sum(1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack(codes: torch.Tensor, scales: torch.Tensor) -> dict[str, torch.Tensor]:
    """qweight, qzeros and scales (GPTQ v1) of codes [out, in] and scales [out, in / group]."""
    groups, out_features = scales.shape[1], codes.shape[0]
    zeros = torch.full((out_features, groups), ZERO - 1, dtype=torch.uint8, device=codes.device)
    return {
        "qweight": _pack_rows(codes.t()),
        "qzeros": _pack_rows(zeros).t().contiguous(),
        "scales": scales.t().contiguous(),
    }
