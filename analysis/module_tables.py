"""Per module kind and per layer, over the measured steps: CPU time in the module ranges, kernels, GPU busy
time, the bytes the module instances must move (gapprof.step_bytes.module_bytes at each step's context),
achieved bandwidth, share of peak and share of the step's excess.

Busy time here is the sum of op durations (one stream in these runtimes).
"""

import polars as pl
from gapprof.analysis.floor import Floor
from gapprof.analysis.module_alignment import UNMATCHED
from gapprof.analysis.module_labels import OUTSIDE

from gapprof.nvtx_names import KINDS
from gapprof.step_bytes import module_bytes

MODEL_KINDS = ("embed", "rotary", "final_norm", "lm_head")


def _cpu_times(modules: pl.DataFrame) -> pl.DataFrame:
    """Per module range: its length (cpu) and its length less its children's (self_cpu)."""
    length = pl.col("end") - pl.col("start")
    children = modules.group_by("parent").agg(child=length.sum())
    return modules.join(children, left_on="range", right_on="parent", how="left").select(
        "step", "kind", "layer", cpu=length, self_cpu=length - pl.col("child").fill_null(0)
    )


def instance_bytes(labelled: pl.DataFrame, steps: pl.DataFrame, floor: Floor | None) -> pl.DataFrame:
    """Per (step, kind, layer) that has ops: the analytic bytes of that module instance at the step's ctx (0 for
    ops outside modules or unmatched)."""
    instances = labelled.select("step", "kind", "layer").unique()
    if floor is None:
        return instances.with_columns(bytes=pl.lit(None, pl.Int64))
    per_instance = pl.DataFrame(
        [
            (ctx, kind, b)
            for ctx in steps["ctx"].unique()
            for kind, b in module_bytes(floor.spec, ctx, floor.dtype_bytes, floor.count_embedding, floor.stored).items()
        ],
        schema={"ctx": pl.Int64, "kind": pl.String, "bytes": pl.Int64},
        orient="row",
    )
    return (
        instances.join(steps.select("step", "ctx"), on="step", how="left")
        .join(per_instance, on=["ctx", "kind"], how="left")
        .with_columns(pl.col("bytes").fill_null(0))
        .drop("ctx")
    )


def module_tables(
    labelled: pl.DataFrame, modules: pl.DataFrame | None, steps: pl.DataFrame, floor: Floor | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-kind table summed over layers, per-layer table), per measured step.

    labelled: the measured steps' ops with kind and layer; modules: their module ranges (None when labelled by
    position: no CPU times); steps: the measured steps with busy and, with a floor, ctx and excess.
    """
    n_steps = steps.height
    duration = pl.col("end") - pl.col("start")
    gpu = labelled.group_by("step", "kind", "layer").agg(
        kernels=(pl.col("kind_op") == "kernel").sum(), busy=duration.sum()
    )
    gpu = gpu.join(instance_bytes(labelled, steps, floor), on=["step", "kind", "layer"], how="left", nulls_equal=True)
    if modules is not None:
        cpu = (
            _cpu_times(modules)
            .group_by("step", "kind", "layer")
            .agg(ranges=pl.len(), cpu=pl.col("cpu").sum(), self_cpu=pl.col("self_cpu").sum())
        )
        rows = cpu.join(gpu, on=["step", "kind", "layer"], how="full", coalesce=True, nulls_equal=True)
    else:
        rows = gpu.with_columns(
            ranges=pl.lit(None, pl.Int64), cpu=pl.lit(None, pl.Int64), self_cpu=pl.lit(None, pl.Int64)
        )
    rows = rows.with_columns(pl.col("kernels", "busy").fill_null(0), pl.col("bytes").fill_null(0))
    excess_total = int(steps["excess"].sum()) if "excess" in steps.columns else None
    peak = floor.bandwidths[floor.primary][0] if floor is not None else None
    return (
        _summarise(rows, ["kind"], n_steps, peak, excess_total, floor is not None),
        _summarise(rows.with_columns(layer=_layer_label()), ["layer"], n_steps, peak, excess_total, floor is not None),
    )


def _layer_label() -> pl.Expr:
    return (
        pl.when(pl.col("layer").is_not_null())
        .then(pl.col("layer").cast(pl.String))
        .when(pl.col("kind").is_in(MODEL_KINDS))
        .then(pl.lit("model"))
        .otherwise(pl.col("kind"))
    )


def _summarise(
    rows: pl.DataFrame, by: list[str], n_steps: int, peak: float | None, excess_total: int | None, has_bytes: bool
) -> pl.DataFrame:
    per_step = 1000.0 * n_steps  # ns totals -> µs per step
    # Null, not 0, where no range was recorded (outside modules, or labels by position).
    recorded = lambda column: pl.when(pl.col(column).is_not_null().any()).then(pl.col(column).sum())  # noqa: E731
    table = rows.group_by(*by).agg(
        recorded("ranges") / n_steps,
        recorded("cpu") / per_step,
        recorded("self_cpu") / per_step,
        pl.col("kernels").sum() / n_steps,
        pl.col("busy").sum(),
        pl.col("bytes").sum(),
    )
    table = table.select(
        *by,
        ranges_per_step="ranges",
        cpu_us="cpu",
        self_cpu_us="self_cpu",
        kernels_per_step="kernels",
        busy_us=pl.col("busy") / per_step,
        mbytes=pl.when(has_bytes).then(pl.col("bytes") / (1e6 * n_steps)),
        # bytes per ns is GB/s.
        achieved_gbps=pl.when(has_bytes & (pl.col("busy") > 0)).then(pl.col("bytes") / pl.col("busy")),
        floor_us=pl.col("bytes") / (peak * per_step) if peak else pl.lit(None, pl.Float64),
    )
    if peak:
        table = table.with_columns(
            peak_pct=100.0 * pl.col("achieved_gbps") / peak, excess_us=pl.col("busy_us") - pl.col("floor_us")
        )
        table = table.with_columns(
            excess_share_pct=100.0 * pl.col("excess_us") * per_step / excess_total if excess_total else None
        )
    order = {k: i for i, k in enumerate((*KINDS, OUTSIDE, UNMATCHED))}
    key = (
        pl.col("kind").replace_strict(order, default=len(order), return_dtype=pl.Int64)
        if by == ["kind"]
        else pl.col("layer").cast(pl.Int64, strict=False).fill_null(10**9)
    )
    return table.sort(key, *by)
