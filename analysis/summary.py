"""Summary across the measured steps: every term's median, mean, p10 and p90 (ms) and share of wall, plus
per-step counts, CPU cost per launch, floor fractions and the observer effect."""

import statistics

import polars as pl
from gapprof.analysis.floor import Floor

TERM_ORDER = ("wall", "busy", "floor", "excess", "starved", "latency", "head", "tail", "spill", "overlap")


def term_table(measured: pl.DataFrame) -> pl.DataFrame:
    """One row per term present in the per-step table; share is mean(term) / mean(wall)."""
    terms = [t for t in TERM_ORDER if t in measured.columns]
    mean_wall = measured["wall"].mean()
    rows = []
    for term in terms:
        col = measured[term].cast(pl.Float64) / 1e6
        rows.append(
            {
                "term": term,
                "median_ms": col.median(),
                "mean_ms": col.mean(),
                "p10_ms": col.quantile(0.1, "linear"),
                "p90_ms": col.quantile(0.9, "linear"),
                "share_of_wall_pct": 100.0 * measured[term].mean() / mean_wall if mean_wall else 0.0,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "term": pl.String,
            "median_ms": pl.Float64,
            "mean_ms": pl.Float64,
            "p10_ms": pl.Float64,
            "p90_ms": pl.Float64,
            "share_of_wall_pct": pl.Float64,
        },
    )


def cpu_us_per_launch(steps: pl.DataFrame) -> float | None:
    """Mean CPU time of one launch call (launch API durations over the steps' launch calls), µs."""
    launches = steps["launch_calls"].sum()
    return steps["launch_cpu"].sum() / launches / 1000 if launches else None


def quant_facts(floor: Floor) -> dict:
    """The quantisation the floor counts, where it has one: method, source of the bytes, bits per weight."""
    if floor.quant is None:
        return {}
    quant = floor.quant
    return {
        "quantisation": f"{quant.method}{' (lm_head too)' if quant.lm_head else ''}, {quant.source}",
        "bits per weight (quantised layers)": quant.bits_per_weight,
    }


def facts(table: pl.DataFrame, measured: pl.DataFrame, floor: Floor | None, meta: dict) -> dict:
    """Scalar findings, label -> value, in display order."""
    n = measured.height
    out = {
        "steps found": table.height,
        "threads with steps": table["globalTid"].n_unique(),
        "warm-up steps skipped": int(table["warmup"].sum()),
        "measured steps": n,
        "empty steps (no GPU work)": int(measured["empty"].sum()),
        "steps without kernels": int((measured["kernels"] == 0).sum()),
        "steps with work past the range (spill)": int((measured["spill_ops"] > 0).sum()),
        "steps with nested matching ranges": int((measured["nested"] > 0).sum()),
        "steps with overlapping GPU work": int((measured["overlap"] > 0).sum()),
        "kernels per step": measured["kernels"].mean(),
        "memcpys per step": measured["memcpys"].mean(),
        "memsets per step": measured["memsets"].mean(),
        **(
            {"CUDA graph executions per step (graph-level trace)": measured["graphs"].mean()}
            if measured["graphs"].sum()
            else {}
        ),
        "launch calls per step": measured["launch_calls"].mean(),
        "API calls per step": measured["api_calls"].mean(),
        "CPU us per launch call": cpu_us_per_launch(measured),
    }
    if floor is not None:
        out["floor convention"] = floor.convention
        out.update(quant_facts(floor))
        out["floor bytes per step (mean)"] = measured["bytes"].mean()
        if floor.quant is not None:
            out["unquantised floor bytes per step (mean)"] = measured["bytes_unquantised"].mean()
        out["context (first measured step)"] = int(measured["ctx"].min())
        mean_wall, mean_busy = measured["wall"].mean(), measured["busy"].mean()
        for source, (gbps, label) in floor.bandwidths.items():
            mean_floor = measured[f"floor_{source}"].mean()
            out[f"bandwidth {source} GB/s ({label})"] = gbps
            out[f"floor fraction of wall, {source}"] = mean_floor / mean_wall
            out[f"floor fraction of busy, {source}"] = mean_floor / mean_busy if mean_busy else None
            if floor.quant is not None:
                unquantised = measured["bytes_unquantised"].mean() / gbps
                out[f"unquantised floor fraction of wall, {source}"] = unquantised / mean_wall
        out["floor/excess split against"] = floor.primary
    unprofiled = meta.get("unprofiled_step_ms")
    if unprofiled:
        profiled_ms = measured["wall"].median() / 1e6
        base = statistics.median(unprofiled)
        out["unprofiled median step ms"] = base
        out["profiled median step ms"] = profiled_ms
        out["observer effect (profiled / unprofiled)"] = profiled_ms / base
        if floor is not None:
            # What the step reaches with no profiler attached: the figure to compare with unprofiled studies.
            for source, (gbps, _) in floor.bandwidths.items():
                out[f"floor fraction of unprofiled step, {source}"] = measured[f"floor_{source}"].mean() / (base * 1e6)
                if floor.quant is not None:
                    out[f"unquantised floor fraction of unprofiled step, {source}"] = (
                        measured["bytes_unquantised"].mean() / gbps / (base * 1e6)
                    )
    return out
