"""The capture metadata gapprof writes into a trace (GAPPROF_META: key -> JSON text), parsed and checked: a value
that is not JSON is left out and counted; a value the analysis reads that is of the wrong type or out of range is
refused in one line."""

import json
import math
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.models import MAX_CONTEXT, ConfigError, ModelSpec
from gapprof.quant_floor import RecordError, recorded


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# What the analysis reads of the capture metadata, each with its type and range, and the words for a value that
# breaks them.
META_TYPES = {
    **{
        key: (_count, "a whole number, 0 or more")
        for key in ("steps", "warmup", "first_profiled_index", "graph_level_first_index")
    },
    "ctx": (lambda v: _count(v) and v <= MAX_CONTEXT, f"a whole number from 0 to {MAX_CONTEXT:,}"),
    "dtype_bytes": (lambda v: _count(v) and v > 0, "a whole number above 0"),
    "copy_bandwidth_gbps": (lambda v: v is None or _positive(v), "a finite number of GB/s above 0"),
    **{
        key: (lambda v: isinstance(v, list) and all(_positive(x) for x in v), "a list of finite times above 0")
        for key in ("unprofiled_step_ms", "profiled_step_ms", "graph_level_step_ms")
    },
    **{key: (lambda v: isinstance(v, str), "text") for key in ("model", "dtype", "runtime", "gpu_name")},
    **{key: (lambda v: isinstance(v, dict), "an object") for key in ("config", "quant")},
}


def check_meta(meta: dict, path: Path) -> None:
    """Refuse metadata whose values the analysis reads are of the wrong type or out of range (a ctx of -5, a copy
    bandwidth of -3000 GB/s), in one line: such a value would make the floor or the warm-up wrong."""
    for key, (fits, what) in META_TYPES.items():
        if key in meta and not fits(meta[key]):
            raise GapprofError(
                f"{path}: capture metadata {key} is {json.dumps(meta[key])[:60]}, not {what}: a "
                "damaged or hand-edited trace"
            )
    try:
        if "config" in meta:
            ModelSpec.from_config(str(meta.get("model", "model")), meta["config"])
        recorded(meta)
    except (ConfigError, RecordError) as error:
        key = "config" if isinstance(error, ConfigError) else "quant"
        raise GapprofError(f"{path}: capture metadata {key}: {error}: a damaged or hand-edited trace") from None


def parse_meta(stored: dict[str, str]) -> tuple[dict, tuple[str, ...]]:
    """The metadata values that are JSON, and the keys of those that are not: a damaged value is left out
    (the analysis goes on as for a trace without that key) rather than guessed at."""
    meta, unparsable = {}, []
    for key, text in stored.items():
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError:
            unparsable.append(key)
    return meta, tuple(unparsable)
