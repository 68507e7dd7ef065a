"""The DRAM floor: bytes one decode step must move / peak bandwidth, and busy = floor + excess.

Bytes come from the model config at each step's context (gapprof.step_bytes defines what they count); a model
whose decoder linear layers were quantised counts them by the bytes the capture recorded, or by an analytic
estimate with --quant (gapprof.quant_floor), and the unquantised floor is kept beside it.
Bandwidth comes from up to three sources, each reported when known: the datasheet table (by --gpu or device
name), the export's TARGET_INFO_GPU.memoryBandwidth, and the copy bandwidth that gapprof measured at capture.
1 GB/s = 1e9 bytes/s = 1 byte/ns.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from gapprof import gpus, models
from gapprof.errors import GapprofError
from gapprof.quant_floor import QuantFloor, analytic, convention, recorded
from gapprof.step_bytes import step_bytes

SOURCES = ("datasheet", "device", "copy")
DEFAULT_DTYPE = "bfloat16"


@dataclass(frozen=True)
class Floor:
    spec: models.ModelSpec
    dtype_bytes: int
    count_embedding: bool
    bandwidths: dict  # source -> (GB/s, what it is), in SOURCES order, known ones only
    convention: str
    gpu: gpus.GpuSpec | None = None  # the datasheet entry of the captured GPU (or --gpu), where the table has one
    quant: QuantFloor | None = None  # the quantised layers' bytes, recorded or estimated; None: unquantised

    @property
    def stored(self) -> dict | None:
        """The bytes one instance of each quantised kind reads (gapprof.step_bytes' `stored`), or None."""
        return self.quant.stored if self.quant else None

    @property
    def primary(self) -> str:
        """The source busy = floor + excess is split against: the first known in SOURCES order."""
        return next(iter(self.bandwidths))


def load_spec(model: str) -> models.ModelSpec:
    """A known model name, a config.json file, or a checkpoint folder holding one."""
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            return models.ModelSpec.from_config(path.parent.name or path.stem, json.loads(path.read_text()))
        except (ValueError, KeyError) as error:
            raise GapprofError(f"{path}: not a usable model config.json ({error})") from None
    return models.get_spec(model)


def resolve_spec(meta: dict, model: str | None) -> models.ModelSpec | None:
    """--model if given, else the capture's config or model name; None when neither says."""
    if model is not None:
        return load_spec(model)
    if "config" in meta:
        return models.ModelSpec.from_config(meta.get("model", "model"), meta["config"])
    if "model" in meta:
        return models.get_spec(meta["model"])
    return None


def _dtype_bytes(meta: dict, dtype: str | None) -> tuple[int, str]:
    if dtype is not None:
        return models.DTYPE_BYTES[dtype], dtype
    if "dtype_bytes" in meta:
        return int(meta["dtype_bytes"]), meta.get("dtype", f"{meta['dtype_bytes']} bytes")
    return models.DTYPE_BYTES[DEFAULT_DTYPE], f"{DEFAULT_DTYPE} (assumed)"


def datasheet_gpu(meta: dict, gpu: str | None, device_name: str | None) -> gpus.GpuSpec | None:
    """The datasheet entry of --gpu, else of the trace's device name, else of the capture's GPU name."""
    name = device_name or meta.get("gpu_name")
    return gpus.resolve_gpu(gpu) if gpu else (gpus.gpu_for_device_name(name) if name else None)


def bandwidths(meta: dict, gpu: str | None, device_name: str | None, device_bytes_per_s: int | None) -> dict:
    """Known peak bandwidths, source -> (GB/s, label); one outside gpus.DRAM_GBPS (a damaged trace) is refused."""
    found = {}
    spec = datasheet_gpu(meta, gpu, device_name)
    if spec is not None:
        found["datasheet"] = (float(spec.peak_gbps), f"{spec.label} datasheet")
    if device_bytes_per_s:
        found["device"] = (device_bytes_per_s / 1e9, "TARGET_INFO_GPU.memoryBandwidth")
    if meta.get("copy_bandwidth_gbps"):
        found["copy"] = (float(meta["copy_bandwidth_gbps"]), "copy benchmark at capture")
    low, high = gpus.DRAM_GBPS
    for gbps, label in found.values():
        if not gpus.dram_gbps(gbps):
            raise GapprofError(
                f"{label}: {gbps:,.3g} GB/s, no DRAM's bandwidth ({low:,.0f} to {high:,.0f} GB/s): a damaged trace"
            )
    return found


def quant_floor(
    meta: dict, spec: models.ModelSpec, dtype_bytes: int, quant: str | None, quant_lm_head: bool
) -> QuantFloor | None:
    """The capture's record where it has one and --quant does not name another method, else --quant's analytic
    estimate; None for an unquantised model."""
    captured = recorded(meta)
    if captured is not None and (quant is None or (quant, quant_lm_head) == (captured.method, captured.lm_head)):
        return captured
    if quant in (None, "none"):
        return None
    return analytic(spec, quant, dtype_bytes, quant_lm_head)


def floor_model(
    meta: dict,
    *,
    model: str | None,
    dtype: str | None,
    count_embedding: bool,
    gpu: str | None,
    device_name: str | None,
    device_bytes_per_s: int | None,
    quant: str | None = None,
    quant_lm_head: bool = False,
) -> Floor | None:
    """The floor inputs, or None when the trace has no model (no metadata and no --model)."""
    spec = resolve_spec(meta, model)
    if spec is None:
        return None
    found = bandwidths(meta, gpu, device_name, device_bytes_per_s)
    if not found:
        raise gpus.UnknownGpuError(
            f"unknown GPU {device_name or meta.get('gpu_name') or '(no device name in the trace)'!r} for the "
            f"floor; pass --gpu with one of: {', '.join(gpus.known_gpus())}"
        )
    dtype_bytes, dtype_label = _dtype_bytes(meta, dtype)
    quantised = quant_floor(meta, spec, dtype_bytes, quant, quant_lm_head)
    return Floor(
        spec,
        dtype_bytes,
        count_embedding,
        found,
        convention(spec, dtype_bytes, count_embedding, dtype_label, quantised),
        datasheet_gpu(meta, gpu, device_name),
        quantised,
    )


def check_context(ctx: int) -> None:
    """Refuse a --ctx beyond MAX_CONTEXT."""
    if ctx > models.MAX_CONTEXT:
        raise GapprofError(f"ctx {ctx:,}: more than {models.MAX_CONTEXT:,} tokens, beyond any model's context")


def check_step_bytes(spec: models.ModelSpec, total: int) -> None:
    """Refuse a step whose bytes pass 64 bits (the frames' integers): a config.json of sizes no model has."""
    if total >= 2**63:
        raise GapprofError(
            f"a step of {spec.name} moves {total:.3g} bytes, beyond 64-bit counts: its config's sizes are no model's"
        )


def step_context(steps: pl.DataFrame, meta: dict, ctx: int | None, skip: int) -> pl.Expr | None:
    """Context length per step: --ctx is the context at the first measured step, +1 a step after it (a warm-up step
    before it reads no fewer than 0 tokens); the capture's ctx is the prefill, and step i (its payload, else its
    index) reads ctx + i. Contexts beyond MAX_CONTEXT (a huge --ctx, a damaged payload) are refused."""
    if ctx is not None:
        check_context(ctx)
        return pl.max_horizontal(pl.lit(ctx) + pl.col("index") - skip, 0)
    if "ctx" in meta:
        offsets = steps.select(pl.coalesce("payload", "index")).to_series()
        lowest, highest = meta["ctx"] + (offsets.min() or 0), meta["ctx"] + (offsets.max() or 0)  # 0: no steps
        if not 0 <= lowest <= highest <= models.MAX_CONTEXT:
            raise GapprofError(
                f"step contexts from {lowest:,} to {highest:,} tokens (the capture's ctx plus each step range's "
                f"payload), outside 0 to {models.MAX_CONTEXT:,}: the payloads are no step indices (a damaged trace)"
            )
        return pl.lit(int(meta["ctx"])) + pl.coalesce("payload", "index")
    return None


def apply_floor(table: pl.DataFrame, floor: Floor, context: pl.Expr) -> pl.DataFrame:
    """Adds ctx, bytes, floor_<source> (ns) for every known source, floor and excess against the primary; with a
    quantised model also bytes_unquantised, the step's bytes had its layers stayed in the model's dtype."""
    table = table.with_columns(ctx=context.cast(pl.Int64))
    contexts = table["ctx"].unique()
    totals = {
        ctx: step_bytes(floor.spec, ctx, floor.dtype_bytes, floor.count_embedding, floor.stored)["total"]
        for ctx in contexts
    }
    check_step_bytes(floor.spec, max(totals.values(), default=0))
    table = table.with_columns(bytes=pl.col("ctx").replace_strict(totals, return_dtype=pl.Int64))
    if floor.quant is not None:
        unquantised = {
            ctx: step_bytes(floor.spec, ctx, floor.dtype_bytes, floor.count_embedding)["total"] for ctx in contexts
        }
        table = table.with_columns(bytes_unquantised=pl.col("ctx").replace_strict(unquantised, return_dtype=pl.Int64))
    # bytes / (GB/s) is ns; rounded so the split busy = floor + excess stays in integer ns.
    table = table.with_columns(
        (pl.col("bytes") / gbps).round().cast(pl.Int64).alias(f"floor_{source}")
        for source, (gbps, _) in floor.bandwidths.items()
    )
    return table.with_columns(floor=pl.col(f"floor_{floor.primary}")).with_columns(
        excess=pl.col("busy") - pl.col("floor")
    )
