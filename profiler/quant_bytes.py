"""The bytes a model's modules hold, tensor by tensor, as stored: the capture's record of a quantised model
(gapprof.quant_floor.record) and its parameter bytes.

A tensor subclass (torchao's quantised weights) is followed into the tensors it is made of (__tensor_flatten__),
named `weight.qdata`, `weight.scale`, ...; a bitsandbytes Params4bit adds its quantisation state's tensors,
`weight.quant_state.absmax`, `weight.quant_state.code` (and the nested state's with double quantisation). A
tensor's bytes are its elements x element size.
"""

from collections.abc import Iterator

import torch
from gapprof.profiler.module_ranges import module_kinds
from gapprof.profiler.quantize import library_version

from gapprof.quant_floor import record


def leaves(name: str, tensor: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, plain tensor) for every tensor that `tensor` stores."""
    if hasattr(tensor, "__tensor_flatten__"):
        inner_names, _ = tensor.__tensor_flatten__()
        for inner in inner_names:
            if getattr(tensor, inner, None) is not None:
                yield from leaves(f"{name}.{inner}", getattr(tensor, inner))
    else:
        yield name, tensor
    state = getattr(tensor, "quant_state", None)
    if state is not None:
        yield f"{name}.quant_state.absmax", state.absmax
        yield f"{name}.quant_state.code", state.code
        if getattr(state, "nested", False):
            yield f"{name}.quant_state.state2.absmax", state.state2.absmax
            yield f"{name}.quant_state.state2.code", state.state2.code
            yield f"{name}.quant_state.offset", state.offset


def tensor_entry(tensor: torch.Tensor) -> dict:
    return {
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "shape": list(tensor.shape),
        "bytes": tensor.numel() * tensor.element_size(),
    }


def module_tensors(module: torch.nn.Module) -> dict[str, dict]:
    """name -> dtype, shape, bytes of every tensor the module itself holds (not its children's)."""
    own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    return {name: tensor_entry(leaf) for top, tensor in own for name, leaf in leaves(top, tensor)}


def modules_record(model) -> dict[str, dict]:
    """Every module of a decoder kind (gapprof.nvtx_names) that holds tensors: path -> kind, shape [out, in] for a
    linear layer, and its tensors."""
    found = {}
    for path, kind, _ in module_kinds(model):
        module = model.get_submodule(path)
        tensors = module_tensors(module)
        if tensors:
            linear = hasattr(module, "in_features") and hasattr(module, "out_features")
            found[path] = {
                "kind": kind,
                "shape": [module.out_features, module.in_features] if linear else None,
                "tensors": tensors,
            }
    return found


def quant_record(model, method: str, lm_head: bool) -> dict:
    """The trace metadata `quant` of a model quantised with `method`."""
    return record(method, lm_head, modules_record(model), library_version(method))


def param_bytes(model) -> int:
    """Bytes of the model's parameters as stored (a quantised weight counted by the tensors it is made of)."""
    return sum(leaf.numel() * leaf.element_size() for _, p in model.named_parameters() for _, leaf in leaves("", p))
