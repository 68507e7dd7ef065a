"""Weight-only quantisation of a built model (`--quant`): every linear layer of every decoder layer, and lm_head with
`--quant-lm-head`, on the device the model is on; what each method does and stores is in gapprof.quant.

- int8, int4: torchao's quantize_ with Int8WeightOnlyConfig() or Int4WeightOnlyConfig(group_size=128,
  int4_packing_format="tile_packed_to_4d") (the default int4 packing needs the mslk package), filtered to those
  layers;
- nf4: bitsandbytes Linear4bit modules replace the layers (from_config does not quantise): the weight becomes a
  Params4bit that quantises on the layer's own device when moved there;
- gemlite-int4: gemlite's A16W4 modules replace the layers, from the weights quantised by
  profiler.int4_groups (plain asymmetric group-wise int4);
- exllamav2-int4: profiler.exllamav2_linear's layers (GPTQ's format, ExLlamaV2's kernel) replace them.
"""

import importlib
import importlib.metadata
import time

import torch
from gapprof.profiler.int4_groups import quantize_groups
from gapprof.profiler.module_ranges import module_kinds

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.quant import INFO, LINEAR_KINDS, NF4_BLOCK, check_library, int4_group


def target_paths(model, lm_head: bool) -> list[str]:
    """The module paths of the linear layers `--quant` quantises, in model order."""
    kinds = (*LINEAR_KINDS, "lm_head") if lm_head else LINEAR_KINDS
    return [path for path, kind, _ in module_kinds(model) if kind in kinds]


def library_version(method: str) -> str:
    name = INFO[method].library  # read from the install: importing exllamav2 builds its extension
    return f"{name} {importlib.metadata.version(INFO[method].package.partition('==')[0])}"


def _import(method: str):
    check_library(method)
    return importlib.import_module(INFO[method].library)


def _replace(model, path: str, module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, module)


INT4_GROUP = 128


def _check_int4_groups(model, paths: list[str]) -> None:
    # torchao leaves a weight whose in_features is not a multiple of the group size as it is, with a log line only.
    odd = [path for path in paths if model.get_submodule(path).in_features % INT4_GROUP]
    if odd:
        raise GapprofError(
            f"--quant int4 quantises groups of {INT4_GROUP} weights along in_features: {odd[0]} has "
            f"{model.get_submodule(odd[0]).in_features} ({len(odd)} of {len(paths)} layers do not "
            "divide), and torchao would leave them unquantised"
        )


def _torchao(model, paths: list[str], method: str) -> None:
    if method == "int4":
        _check_int4_groups(model, paths)
    _import(method)
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    # set_inductor_config=False: torchao's default turns on inductor's coordinate-descent autotuning for the whole
    # process, which made int8's first compiled step autotune for minutes and would compile quantised and bf16
    # compile cells differently.
    config = (
        Int8WeightOnlyConfig(set_inductor_config=False)
        if method == "int8"
        else Int4WeightOnlyConfig(
            group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d", set_inductor_config=False
        )
    )
    wanted = set(paths)
    quantize_(model, config, filter_fn=lambda module, fqn: fqn in wanted)


def _nf4(model, paths: list[str]) -> None:
    bnb = _import("nf4")
    for path in paths:
        linear = model.get_submodule(path)
        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=linear.weight.dtype,
            compress_statistics=False,
            quant_type="nf4",
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            linear.weight.data,
            requires_grad=False,
            compress_statistics=False,
            quant_type="nf4",
            blocksize=NF4_BLOCK,
            module=layer,
        )
        if linear.bias is not None:
            layer.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
        _replace(model, path, layer.to(linear.weight.device))  # quantises the weight, there


def _gemlite(model, paths: list[str]) -> None:
    _import("gemlite-int4")
    from gemlite.helper import A16Wn

    for path in paths:
        linear = model.get_submodule(path)
        weight = linear.weight.data
        group = int4_group("gemlite-int4", linear.in_features)
        codes, scales, zeros = quantize_groups(weight, group)
        bias = None if linear.bias is None else linear.bias.data
        layer = A16Wn(device=weight.device, dtype=weight.dtype).from_weights(
            codes, scales, zeros, W_nbits=4, group_size=group, bias=bias
        )
        _replace(model, path, layer)


def _exllamav2(model, paths: list[str]) -> None:
    check_library("exllamav2-int4")  # not imported here: ExLlamaV2Linear imports it and words a failed build
    from gapprof.profiler.exllamav2_linear import ExLlamaV2Linear

    for path in paths:
        linear = model.get_submodule(path)
        _replace(model, path, ExLlamaV2Linear(linear, int4_group("exllamav2-int4", linear.in_features)))


def quantize_model(model, method: str, lm_head: bool = False) -> None:
    """Quantise `model`'s decoder linear layers (and lm_head) in place with `method` (gapprof.quant.METHODS)."""
    if method == "none":
        return
    paths = target_paths(model, lm_head)
    if not paths:
        raise GapprofError(f"--quant {method}: no decoder linear layers found in {type(model).__name__}")
    started = time.perf_counter()
    if method in ("int8", "int4"):
        _torchao(model, paths, method)
    elif method == "nf4":
        _nf4(model, paths)
    elif method == "gemlite-int4":
        _gemlite(model, paths)
    else:
        _exllamav2(model, paths)
    progress(
        f"quantised {len(paths)} linear layers to {method} ({library_version(method)}) in "
        f"{time.perf_counter() - started:.1f} s"
    )
