"""The floor of a weight-only quantised model: the bytes a step reads of each quantised layer, from what the capture
recorded (the tensors as stored) or estimated from the layer shapes (gapprof.quant.linear_tensors), labelled so.

The capture records, under the trace's metadata key `quant` (`record` builds it from the profiler's per-module
tensors): the method, its library and recipe, every module with its tensors (dtype, shape, bytes, whether a step
reads it) and bits per weight, per module kind the instances and the bytes one instance reads, and the quantised
and unquantised floor bytes at the first measured step's context (`floor_record`). gapprof.step_bytes
takes `QuantFloor.stored` in place of parameters x dtype bytes for those kinds.

Free of torch and polars: the capture builds the record, the analysis reads it.
"""

import dataclasses
import json
import math

from gapprof.errors import GapprofError
from gapprof.models import ModelSpec
from gapprof.quant import INFO, linear_shapes, linear_tensors, quantised_kinds, read_bytes
from gapprof.step_bytes import floor_convention, step_bytes

ANALYTIC, RECORDED = "analytic estimate", "recorded at capture"


@dataclasses.dataclass(frozen=True)
class QuantFloor:
    method: str
    lm_head: bool
    stored: dict[str, int]  # kind -> bytes one instance of it reads in a step, for the quantised kinds
    bits_per_weight: float  # over the quantised layers: 8 x bytes read, biases left out, / weights
    source: str  # RECORDED or ANALYTIC

    def describe(self) -> str:
        """What the floor's weight bytes count, for the floor convention."""
        layers = "decoder linears" + (" and lm_head" if self.lm_head else "")
        source = (
            "the tensors a step reads as stored, recorded at capture"
            if self.source == RECORDED
            else f"an analytic estimate (--quant {self.method}), not recorded at capture"
        )
        return (
            f"{layers} quantised {self.method} ({INFO[self.method].recipe}), {self.bits_per_weight:.3f} bits per "
            f"weight: {source}"
        )


def convention(
    spec: ModelSpec, dtype_bytes: int, count_embedding: bool, dtype_label: str, quant: "QuantFloor | None"
) -> str:
    """gapprof.step_bytes.floor_convention, with the quantised layers' bytes and what they count."""
    if quant is None:
        return floor_convention(spec, dtype_bytes, count_embedding, dtype_label)
    return floor_convention(spec, dtype_bytes, count_embedding, dtype_label, quant.stored, quant.describe())


def _bits(spec: ModelSpec, method: str, lm_head: bool, dtype_bytes: int) -> float:
    shapes = linear_shapes(spec)
    read = weights = 0
    for kind in quantised_kinds(lm_head):
        out_features, in_features, bias = shapes[kind]
        count = 1 if kind == "lm_head" else spec.layers
        tensors = linear_tensors(method, out_features, in_features, False, dtype_bytes)
        read += count * read_bytes(method, tensors)
        weights += count * out_features * in_features
    return 8 * read / weights


def analytic(spec: ModelSpec, method: str, dtype_bytes: int, lm_head: bool = False) -> QuantFloor:
    """The quantised floor estimated from the layer shapes: what `method` stores for each, read but its unread
    tensors."""
    if method not in INFO:
        raise GapprofError(f"--quant {method} has no quantised bytes to estimate")
    shapes = linear_shapes(spec)
    stored = {
        kind: read_bytes(method, linear_tensors(method, *shapes[kind], dtype_bytes))
        for kind in quantised_kinds(lm_head)
    }
    return QuantFloor(method, lm_head, stored, _bits(spec, method, lm_head, dtype_bytes), ANALYTIC)


class RecordError(GapprofError):
    """A metadata `quant` without the fields `record` writes, or with values of the wrong type or range."""


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_record(quant: dict) -> None:
    """Raise RecordError where `recorded` could not read `quant`, or would read a negative or non-finite size."""
    if quant.get("method") not in INFO:
        raise RecordError(f"method is {json.dumps(quant.get('method'))[:40]}, none of {', '.join(INFO)}")
    if not isinstance(quant.get("lm_head"), bool):
        raise RecordError("lm_head is not true or false")
    kinds = quant.get("kinds")
    if not isinstance(kinds, dict) or not all(isinstance(kind, dict) for kind in kinds.values()):
        raise RecordError("kinds is not an object of objects")
    if not all(_whole(kinds[kind].get("read_bytes")) for kind in quantised_kinds(quant["lm_head"]) if kind in kinds):
        raise RecordError("a kind's read_bytes is not a whole number, 0 or more")
    bits = quant.get("bits_per_weight")
    if isinstance(bits, bool) or not isinstance(bits, int | float) or not 0 < bits < math.inf:
        raise RecordError(f"bits_per_weight is {json.dumps(bits)[:40]}, not a finite number above 0")


def recorded(meta: dict) -> QuantFloor | None:
    """The quantised floor a capture recorded (its metadata's `quant`), or None for an unquantised capture;
    RecordError where the record is damaged."""
    quant = meta.get("quant")
    if not quant or quant.get("method", "none") == "none":
        return None
    _check_record(quant)
    kinds = quant["kinds"]
    stored = {kind: int(kinds[kind]["read_bytes"]) for kind in quantised_kinds(quant["lm_head"]) if kind in kinds}
    return QuantFloor(quant["method"], bool(quant["lm_head"]), stored, float(quant["bits_per_weight"]), RECORDED)


def record(method: str, lm_head: bool, modules: dict[str, dict], library: str) -> dict:
    """The metadata `quant` of a capture from the tensors of each module (path -> kind, shape [out, in] and tensors:
        name -> dtype, shape, bytes): each tensor marked read or not, each module's read bytes and bits per weight (for
        a linear layer), and per kind the instances and the bytes one instance reads and stores (the same in every
    instance)."""
    unread = INFO[method].unread
    out_modules: dict[str, dict] = {}
    kinds: dict[str, dict] = {}
    for path, module in modules.items():
        tensors = {name: {**t, "read": t["bytes"] > 0 and name not in unread} for name, t in module["tensors"].items()}
        read = sum(t["bytes"] for t in tensors.values() if t["read"])
        entry = {
            **module,
            "tensors": tensors,
            "read_bytes": read,
            "stored_bytes": sum(t["bytes"] for t in tensors.values()),
        }
        if module.get("shape"):
            out_features, in_features = module["shape"]
            bias = tensors.get("bias", {"bytes": 0})["bytes"]
            entry["bits_per_weight"] = 8 * (read - bias) / (out_features * in_features)
        out_modules[path] = entry
        kind = kinds.setdefault(
            module["kind"], {"instances": 0, "read_bytes": read, "stored_bytes": entry["stored_bytes"]}
        )
        if read != kind["read_bytes"]:
            raise GapprofError(
                f"{path} reads {read:,} B a step, another {module['kind']} {kind['read_bytes']:,} B: "
                "the floor takes one size per module kind"
            )
        kind["instances"] += 1
    quantised = [m for m in out_modules.values() if m["kind"] in quantised_kinds(lm_head) and "bits_per_weight" in m]
    weights = sum(m["shape"][0] * m["shape"][1] for m in quantised)
    bits = sum(m["bits_per_weight"] * m["shape"][0] * m["shape"][1] for m in quantised) / weights if weights else None
    return {
        "method": method,
        "lm_head": lm_head,
        "library": library,
        "recipe": INFO[method].recipe,
        "bits_per_weight": bits,
        "kinds": kinds,
        "modules": out_modules,
    }


def estimate_line(meta: dict) -> str | None:
    """What a quantised capture stores, set against the analytic estimate of its layer shapes (one line), or None
    for an unquantised one."""
    captured = recorded(meta)
    if captured is None:
        return None
    spec = ModelSpec.from_config(str(meta.get("model", "model")), meta["config"])
    estimate = analytic(spec, captured.method, int(meta["dtype_bytes"]), captured.lm_head)
    layers = {kind: 1 if kind == "lm_head" else spec.layers for kind in captured.stored}
    stored = sum(captured.stored[k] * n for k, n in layers.items())
    expected = sum(estimate.stored.get(k, 0) * n for k, n in layers.items())
    verdict = "equal to" if stored == expected else f"{stored - expected:+,} B against"
    return (
        f"--quant {captured.method}: the quantised layers read {stored:,} B a step as stored, "
        f"{captured.bits_per_weight:.3f} bits per weight; {verdict} the analytic estimate ({expected:,} B)"
    )


def floor_record(meta: dict, ctx: int) -> dict:
    """The quantised floor of a capture at context ctx, by part (gapprof.step_bytes: the embedding as one row), and
    the unquantised one: what its metadata `quant` records as `floor`."""
    captured = recorded(meta)
    if captured is None:
        raise GapprofError("no quantised floor: the capture's metadata records no --quant method")
    spec = ModelSpec.from_config(str(meta.get("model", "model")), meta["config"])
    dtype_bytes = int(meta["dtype_bytes"])
    return {
        "ctx": ctx,
        "bytes": step_bytes(spec, ctx, dtype_bytes, stored=captured.stored),
        "unquantised_bytes": step_bytes(spec, ctx, dtype_bytes),
    }
