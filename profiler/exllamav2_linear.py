"""A linear layer whose weight is 4-bit GPTQ, multiplied by ExLlamaV2's kernel (`--quant exllamav2-int4`).

exllamav2 compiles its CUDA extension at first import (nvcc and ninja, about two minutes on 16 cores); its
kernels take float16 activations only. The matrix handle is made with no dequantisation buffer (max_dq_rows 0),
so every product, prefill included, runs the quantised kernel and never a dequantised copy of the weight.
"""

import torch
from gapprof.profiler import gptq_pack

from gapprof.errors import GapprofError


def exllamav2_ext():
    """exllamav2's compiled extension and its make_q_matrix, building the extension on first use."""
    try:
        from exllamav2.ext import exllamav2_ext as ext
        from exllamav2.ext import make_q_matrix
    except Exception as error:  # the JIT build fails with whatever the compiler or loader raised
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GapprofError(
            f"--quant exllamav2-int4: exllamav2's CUDA extension did not build or load "
            f"({type(error).__name__}: {first}); it needs nvcc and ninja on the PATH"
        ) from None
    return ext, make_q_matrix


class ExLlamaV2Linear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, group: int):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        codes, scales = gptq_pack.quantize_symmetric(linear.weight.data, group)
        for name, tensor in gptq_pack.pack(codes, scales).items():
            self.register_buffer(name, tensor)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.data.half())
        self.ext, make_q_matrix = exllamav2_ext()
        parts = {"qweight": self.qweight, "qzeros": self.qzeros, "scales": self.scales}
        if self.bias is not None:
            parts["bias"] = self.bias  # added by the kernel's launcher
        no_buffer = torch.empty(1, dtype=torch.float16, device=self.qweight.device)
        self.handle = make_q_matrix(parts, no_buffer, max_dq_rows=0)
        self._keep = no_buffer  # the handle holds its pointer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).contiguous()  # the kernel reads rows back to back
        out = torch.empty(rows.shape[0], self.out_features, dtype=x.dtype, device=x.device)
        self.ext.gemm_half_q_half(rows, self.handle, out, False)
        return out.view(*x.shape[:-1], self.out_features)
