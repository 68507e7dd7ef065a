"""Whether the floor's inputs fit the trace: overrides (--model, --ctx, --dtype) against the capture's own
metadata, and the floor against physics. A step cannot move its bytes faster than peak bandwidth, so a floor
above the GPU busy time means the model, the context or the dtype does not describe the trace, or the step
ranges are not whole decode steps (a --range that matches module ranges, say)."""

import polars as pl
from gapprof.analysis.floor import step_context

from gapprof.errors import GapprofError
from gapprof.models import DTYPE_BYTES


def override_conflicts(
    meta: dict,
    model: str | None,
    dtype: str | None,
    ctx: int | None,
    captured_ctx: int | None,
    quant: str | None = None,
    quant_lm_head: bool = False,
) -> list[str]:
    """Each override that differs from what the capture recorded (captured_ctx: the recorded context of the
    first measured step)."""
    conflicts = []
    captured = (meta.get("quant") or {}).get("method")
    if quant is not None and captured and (quant, quant_lm_head) != (captured, meta["quant"]["lm_head"]):
        lm_head = " with lm_head" if meta["quant"]["lm_head"] else ""
        conflicts.append(
            f"--quant {quant}{' --quant-lm-head' if quant_lm_head else ''} but the trace was captured "
            f"with --quant {captured}{lm_head}, whose bytes it records"
        )
    if model is not None and meta.get("model") and model != meta["model"]:
        conflicts.append(f"--model {model} but the trace was captured with {meta['model']}")
    if dtype is not None and meta.get("dtype") and dtype != meta["dtype"]:
        conflicts.append(f"--dtype {dtype} but the trace was captured in {meta['dtype']}")
    if ctx is not None and captured_ctx is not None and ctx != captured_ctx:
        conflicts.append(f"--ctx {ctx} but the first measured step was captured at context {captured_ctx}")
    return conflicts


def floor_above_busy(measured: pl.DataFrame) -> str | None:
    """How many measured steps (with GPU work) have a floor above their busy time, or None."""
    worked = measured.filter(pl.col("busy") > 0)
    above = worked.filter(pl.col("floor") > pl.col("busy"))
    if above.is_empty():
        return None
    return (
        f"the floor is above the GPU busy time in {above.height} of {worked.height} measured steps "
        f"(median floor {above['floor'].median() / 1e6:.3f} ms, busy {above['busy'].median() / 1e6:.3f} ms): "
        "no step moves its bytes faster than peak bandwidth, so the model, context or dtype does not fit "
        "the trace, or the step ranges are not whole decode steps"
    )


def problems(
    result, model: str | None, dtype: str | None, ctx: int | None, quant: str | None = None, quant_lm_head: bool = False
) -> list[str]:
    """What does not fit in an attribution.Attribution made with these overrides: the conflicts with the
    capture's metadata, and a floor above busy. Empty when it all fits (or there is no floor)."""
    if result.floor is None:
        return []
    measured, meta = result.measured, result.frames.meta
    recorded = step_context(measured, meta, None, result.frames.skip)
    captured_ctx = int(measured.select(recorded.min()).item()) if recorded is not None and measured.height else None
    physics = floor_above_busy(measured)
    return override_conflicts(meta, model, dtype, ctx, captured_ctx, quant, quant_lm_head) + (
        [physics] if physics else []
    )


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_options(options) -> None:
    """Refuse the attribution.Options values that `gapprof attribute`'s option types refuse, for every caller:
    the command line and the Python API both call this before reading the trace."""
    for name in ("ctx", "skip"):
        value = getattr(options, name)
        if value is not None and not _whole(value):
            raise GapprofError(f"{name}={value!r}: a whole number, 0 or more")
    if options.dtype is not None and options.dtype not in DTYPE_BYTES:
        raise GapprofError(f"dtype={options.dtype!r}: one of {', '.join(DTYPE_BYTES)}")
    if options.quant_lm_head and options.quant is None:
        raise GapprofError("quant_lm_head goes with quant (the method lm_head was quantised with)")


def refuse_misfit(result, options, force: bool, force_with: str) -> None:
    """Raise on `problems` of an attribution made with `options`, unless forced; force_with: how the caller
    forces (the command's flag, the API's argument)."""
    wrong = (
        []
        if force
        else problems(result, options.model, options.dtype, options.ctx, options.quant, options.quant_lm_head)
    )
    if wrong:
        raise GapprofError("; ".join(wrong) + f"; {force_with} shows the split anyway")
