"""Plain asymmetric group-wise int4 quantisation, for gemlite's A16W4 layers (`--quant gemlite-int4`).

Each group of `group` consecutive weights along in_features gets scale = (max - min) / 15 and a zero point
zero = -min / scale, kept as a float in the weight's dtype (the min maps to code 0, the max to 15); each weight
becomes code = round(w / scale + zero), clamped to 0..15, and w ~ (code - zero) x scale, gemlite's (and HQQ's)
convention. Before the scale and zero are rounded to the weight's dtype, every weight is within scale / 2 of its
dequantised value.
"""

import torch

BITS = 4
TOP = 2**BITS - 1


def quantize_groups(weight: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """codes uint8 [out, in], scales and zeros [out, in / group] in weight's dtype, of a 2-D weight [out, in]."""
    out_features, in_features = weight.shape
    if in_features % group:
        raise ValueError(f"in_features {in_features} is not a multiple of the group size {group}")
    grouped = weight.float().reshape(out_features, in_features // group, group)
    low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
    scales = ((high - low) / TOP).clamp(min=torch.finfo(torch.float32).tiny)
    zeros = -low / scales
    codes = (grouped / scales + zeros).round().clamp(0, TOP).to(torch.uint8)
    return (
        codes.reshape(out_features, in_features),
        scales.squeeze(-1).to(weight.dtype),
        zeros.squeeze(-1).to(weight.dtype),
    )


def dequantize_groups(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """The float32 weight [out, in] that codes, scales and zeros stand for: (code - zero) x scale."""
    out_features, in_features = codes.shape
    groups = scales.shape[-1]
    grouped = codes.float().reshape(out_features, groups, in_features // groups)
    return ((grouped - zeros.float().unsqueeze(-1)) * scales.float().unsqueeze(-1)).reshape(out_features, in_features)
