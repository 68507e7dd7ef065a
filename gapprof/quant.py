"""Weight-only quantisation of the decoder's linear layers: the methods, the library each needs, where each runs,
and the bytes each stores for a linear layer.

`capture --quant METHOD` (and ab, sweep, ncu) quantises every linear layer of every decoder layer (q/k/v/o, gate,
up, down); the embedding and lm_head stay in the model's dtype unless `--quant-lm-head`. Biases stay in the
model's dtype. What each method stores for nn.Linear(in, out), named as the capture records it (a tensor
subclass's parts after a dot, bitsandbytes' quantisation state under weight.quant_state):

- int8 (torchao Int8WeightOnlyConfig): weight.qdata int8 [out, in], weight.scale float32 [out, 1] and
  weight.zero_point int8 [out, 1] (symmetric: the weight-only matmul reads qdata and scale only);
- int4 (torchao Int4WeightOnlyConfig, group 128, tile_packed_to_4d, aten's tinygemm kernel): the weight padded
  to in a multiple of 1024 and out a multiple of 8, weight.qdata int32 [out/8, in/128, 32, 4] (two values a
  byte) and weight.scale_and_zero bf16 [in/128, out, 2];
- nf4 (bitsandbytes Linear4bit, blocksize 64, no double quantisation): weight uint8 [out * in / 2, 1],
  weight.quant_state.absmax float32 (one per 64 values) and weight.quant_state.code float32 [16];
- gemlite-int4 (gemlite A16W4, Triton GEMV kernels): asymmetric int4 in groups of 128 along in (64 or 32 where
  in is not a multiple of 128), W_q int32 [in/8, out], scales and zeros [in/group, out] in the model's dtype,
  meta_scale float32, and metadata int32 [12] and orig_shape int32 [2], which no step reads;
- exllamav2-int4 (GPTQ's 4-bit format, ExLlamaV2's kernels, float16 only): symmetric int4 in groups of 128 along in
  (64 or 32 as for gemlite-int4) from round-to-nearest, qweight int32 [in/8, out], qzeros int32 [in/group,
  out/8] and scales float16 [in/group, out].

Free of torch: requests are checked, and the analytic bytes computed, on machines without it.
"""

import dataclasses
import importlib.util
import sys

from gapprof.errors import GapprofError
from gapprof.models import ModelSpec

METHODS = ("none", "int8", "int4", "nf4", "gemlite-int4", "exllamav2-int4")
INSTALL = 'pip install -e ".[quant]"'
INT4_GROUP = 128
NF4_BLOCK = 64
GEMLITE_META_BYTES = {"meta_scale": 4, "metadata": 12 * 4, "orig_shape": 2 * 4}
LINEAR_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class Method:
    library: str  # the module it imports
    package: str  # the version it was built against, as pip names it
    recipe: str  # what it does, in words
    cuda_only: str | None = None  # why it cannot run on a CPU
    dtypes: tuple[str, ...] = ("bfloat16", "float16", "float32")
    unread: tuple[str, ...] = ()  # tensors it stores that a decode step does not read
    needs: tuple[str, ...] = ()  # further modules that must import


INFO = {
    "int8": Method(
        "torchao",
        "torchao==0.18.0",
        "torchao Int8WeightOnlyConfig(): int8 weights, a float32 scale per output row",
        unread=("weight.zero_point",),
    ),
    "int4": Method(
        "torchao",
        "torchao==0.18.0",
        "torchao Int4WeightOnlyConfig(group_size=128, "
        "int4_packing_format='tile_packed_to_4d'): int4 in groups of 128, bf16 scale and zero per group, "
        "aten's tinygemm kernel",
        cuda_only="its packing and its kernel (aten _convert_weight_to_int4pack, _weight_int4pack_mm) "
        "exist for CUDA only (compute capability 8.0 or newer)",
        dtypes=("bfloat16",),
    ),
    "nf4": Method(
        "bitsandbytes",
        "bitsandbytes==0.50.2",
        "bitsandbytes Linear4bit nf4: 4-bit NormalFloat, blocksize "
        "64, a float32 absmax per block (no double quantisation)",
    ),
    "gemlite-int4": Method(
        "gemlite",
        "gemlite==0.6.0.post2",
        "gemlite A16W4: asymmetric int4 in groups of 128, scales and zeros in the model's dtype, Triton GEMV kernels",
        cuda_only="its kernels are Triton GPU kernels, and gemlite does not import without CUDA",
        dtypes=("bfloat16", "float16"),
        unread=("metadata", "orig_shape"),
        needs=("triton",),
    ),
    "exllamav2-int4": Method(
        "exllamav2",
        "exllamav2==0.3.2",
        "GPTQ's 4-bit format (symmetric groups of 128, from "
        "round-to-nearest, not GPTQ's calibrated rounding), ExLlamaV2's GEMV kernels",
        cuda_only="its kernels are CUDA kernels that exllamav2 compiles at first import",
        dtypes=("float16",),
        needs=("ninja",),
    ),
}


def check_request(method: str, lm_head: bool, device: str, dtype: str) -> None:
    """Refuse, in one line, a method that is unknown or cannot run on `device` in `dtype`."""
    if method not in METHODS:
        raise GapprofError(f"unknown --quant {method!r}; known: {', '.join(METHODS)}")
    if method == "none":
        if lm_head:
            raise GapprofError("--quant-lm-head quantises lm_head with the --quant method: pass --quant too")
        return
    info = INFO[method]
    if info.cuda_only and not device.startswith("cuda"):
        raise GapprofError(
            f"--quant {method} runs on CUDA only ({info.cuda_only}); on {device} use --quant int8 or nf4"
        )
    if dtype not in info.dtypes:
        raise GapprofError(
            f"--quant {method} quantises {' or '.join(info.dtypes)} weights, not {dtype} (--dtype {info.dtypes[0]})"
        )


def _importable(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None  # None: blocked, as an install without it
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_library(method: str) -> str | None:
    """The first module `method` needs that cannot be imported here, or None."""
    if method == "none":
        return None
    info = INFO[method]
    return next((name for name in (info.library, *info.needs) if not _importable(name)), None)


def install_error(method: str, missing: str) -> GapprofError:
    return GapprofError(
        f"--quant {method} needs {missing} ({INFO[method].package}): `{INSTALL}` in the gapprof checkout"
    )


def check_library(method: str) -> None:
    """A one-line error naming the install command when the method's library is missing."""
    missing = missing_library(method)
    if missing:
        raise install_error(method, missing)


def int4_group(method: str, in_features: int) -> int:
    """gemlite-int4's and exllamav2-int4's group size for a layer: 128, or the largest of 64 and 32 that divides
    in_features."""
    group = next((g for g in (INT4_GROUP, 64, 32) if in_features % g == 0), None)
    if group is None:
        raise GapprofError(f"--quant {method} needs in_features a multiple of 32, not {in_features}")
    return group


def _ceil(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def linear_tensors(method: str, out_features: int, in_features: int, bias: bool, dtype_bytes: int) -> dict[str, int]:
    """Bytes of each tensor `method` stores for nn.Linear(in_features, out_features), by the names the capture
    records (see the module docstring); a step reads all but INFO[method].unread."""
    n, k = out_features, in_features
    bias_bytes = {"bias": n * dtype_bytes} if bias else {}
    if method == "none":
        return {"weight": n * k * dtype_bytes, **bias_bytes}
    if method == "int8":
        return {"weight.qdata": n * k, "weight.scale": 4 * n, "weight.zero_point": n, **bias_bytes}
    if method == "int4":
        n, k = _ceil(n, 8), _ceil(k, 1024)
        return {"weight.qdata": n * k // 2, "weight.scale_and_zero": (k // INT4_GROUP) * n * 2 * 2, **bias_bytes}
    if method == "nf4":
        values = n * k
        return {
            "weight": -(-values // 2),
            "weight.quant_state.absmax": 4 * -(-values // NF4_BLOCK),
            "weight.quant_state.code": 16 * 4,
            **bias_bytes,
        }
    if method == "gemlite-int4":
        groups = k // int4_group(method, k)
        return {
            "W_q": n * k // 2,
            "scales": groups * n * dtype_bytes,
            "zeros": groups * n * dtype_bytes,
            **bias_bytes,
            **GEMLITE_META_BYTES,
        }
    if method == "exllamav2-int4":
        groups = k // int4_group(method, k)
        return {"qweight": k // 8 * n * 4, "qzeros": groups * (n // 8) * 4, "scales": groups * n * 2, **bias_bytes}
    raise GapprofError(f"unknown --quant {method!r}; known: {', '.join(METHODS)}")


def read_bytes(method: str, tensors: dict[str, int]) -> int:
    """The bytes a step reads of a layer's tensors: all that it stores but INFO[method].unread."""
    unread = INFO[method].unread if method in INFO else ()
    return sum(b for name, b in tensors.items() if name not in unread)


def linear_shapes(spec: ModelSpec) -> dict[str, tuple[int, int, bool]]:
    """(out_features, in_features, bias) of each linear kind of a decoder layer, and of lm_head."""
    q_out, kv_out = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    return {
        "q_proj": (q_out, spec.hidden, spec.qkv_bias),
        "k_proj": (kv_out, spec.hidden, spec.qkv_bias),
        "v_proj": (kv_out, spec.hidden, spec.qkv_bias),
        "o_proj": (spec.hidden, q_out, False),
        "gate_proj": (spec.intermediate, spec.hidden, False),
        "up_proj": (spec.intermediate, spec.hidden, False),
        "down_proj": (spec.hidden, spec.intermediate, False),
        "lm_head": (spec.vocab, spec.hidden, False),
    }


def quantised_kinds(lm_head: bool) -> tuple[str, ...]:
    return (*LINEAR_KINDS, "lm_head") if lm_head else LINEAR_KINDS
