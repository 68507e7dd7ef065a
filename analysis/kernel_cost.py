"""Where busy time goes, kernel by kernel: busy = floor + extra + shortfall + fixed, exact in integer ns per step.

A kernel's time is a fixed part (launch ramp-up and tail, small grids, synchronisation inside it) plus its bytes
at the bandwidth it achieves. Per measured step, with
- B the analytic bytes the step must move (analysis.floor, gapprof.step_bytes) and M the bytes its kernels
  moved, each kernel's measured bytes summed (analysis.kernel_bytes; memcpys and memsets count 0);
- P the peak bandwidth the floor is taken against (its primary source, the datasheet when known) and
  R the reference achievable bandwidth: what a kernel that only streams DRAM reaches in practice, measured by the
  GPU's profile where it has one, else 0.9 x P (analysis.achievable), and at most P;
the four terms are
- floor = B / P, the floor column of the per-step table;
- extra = M / P - floor: bytes moved above the analytic ones, at peak (negative when the kernels moved fewer
  bytes than the analytic ones, e.g. weights served from L2);
- shortfall = M / R - M / P: the time the moved bytes lose at the reference bandwidth rather than at peak;
- fixed = busy - M / R: the rest, kernel time beyond the bytes' time at the reference bandwidth, the part no
  bandwidth buys back.
M / P and M / R are rounded to integer ns and fixed is the remainder, so the four add up to busy exactly
(check_split). Per op, fixed = duration - bytes / R: negative for a kernel faster than its bytes at R (it
achieved more than 0.9 x peak). It is kept negative, not clipped, so the per-op parts add up to the step's
(busy equals the sum of durations when no ops overlap or spill past the step) and such kernels are counted.
Per class the same terms use the class's bytes and durations, unrounded. Floor and extra per class need analytic
bytes per kernel, which a module mapping gives (kernel_bytes.with_analytic: module ranges in the trace, or
--reference); without one they are shown together as bytes at peak (M / P).
"""

from pathlib import Path

import polars as pl
from gapprof.analysis.achievable import reference_bandwidth
from gapprof.analysis.kernel_bytes import analytic_bytes, measured_bytes, with_analytic
from gapprof.analysis.modules import NoModuleRanges, check_same_model, module_labels
from gapprof.analysis.readers.ncu import read_sidecar

from gapprof.errors import GapprofError

TERMS = ("floor", "extra", "shortfall", "fixed")
TOTAL = "all (busy)"


class SplitError(AssertionError):
    """The split broke busy = floor + extra + shortfall + fixed: a bug, never a data problem."""


def step_split(measured: pl.DataFrame, ops: pl.DataFrame, peak_gbps: float, reference_gbps: float) -> pl.DataFrame:
    """Per measured step (with busy, bytes and floor): moved bytes and the four terms, in integer ns."""
    moved = ops.group_by("step").agg(moved=pl.col("bytes").sum())
    # bytes / (GB/s) is ns.
    at = lambda gbps: (pl.col("moved") / gbps).round().cast(pl.Int64)  # noqa: E731
    split = (
        measured.select("step", "busy", "bytes", "floor")
        .join(moved, on="step", how="left")
        .with_columns(pl.col("moved").fill_null(0))
        .with_columns(at_peak=at(peak_gbps), at_reference=at(reference_gbps))
        .select(
            "step",
            "busy",
            "bytes",
            "moved",
            "floor",
            extra=pl.col("at_peak") - pl.col("floor"),
            shortfall=pl.col("at_reference") - pl.col("at_peak"),
            fixed=pl.col("busy") - pl.col("at_reference"),
        )
    )
    check_split(split)
    return split


def check_split(split: pl.DataFrame) -> None:
    """Raise SplitError unless every step has busy = floor + extra + shortfall + fixed and shortfall >= 0."""
    bad = split.filter((pl.sum_horizontal(TERMS) != pl.col("busy")) | (pl.col("shortfall") < 0))
    if not bad.is_empty():
        raise SplitError(f"busy split broken on steps {bad['step'].head(10).to_list()}")


def with_fixed(ops: pl.DataFrame, reference_gbps: float) -> pl.DataFrame:
    """ops with duration and fixed (ns, float): duration - bytes / R."""
    return ops.with_columns(duration=pl.col("end") - pl.col("start")).with_columns(
        fixed=pl.col("duration") - pl.col("bytes") / reference_gbps
    )


def _row(n_steps: int, peak: float, reference: float) -> list[pl.Expr]:
    per_step = 1000.0 * n_steps  # ns totals -> µs per step
    moved = pl.col("bytes").sum()
    return [
        (pl.len() / n_steps).alias("ops_per_step"),
        (pl.col("duration").sum() / per_step).alias("time_us"),
        (moved / (1e6 * n_steps)).alias("mb_per_step"),
        (moved / pl.col("duration").sum()).alias("achieved_gbps"),  # bytes per ns is GB/s
        (moved / peak / per_step).alias("at_peak_us"),
        (moved * (1 / reference - 1 / peak) / per_step).alias("shortfall_us"),
        (pl.col("fixed").sum() / per_step).alias("fixed_us"),
        *(
            (pl.col("fixed").quantile(q, "linear") / 1000).alias(f"fixed_per_op_{name}_us")
            for name, q in (("median", 0.5), ("p10", 0.1), ("p90", 0.9))
        ),
    ]


def _analytic_row(n_steps: int, peak: float) -> list[pl.Expr]:
    per_step = 1000.0 * n_steps
    return [
        (pl.col("analytic").sum() / peak / per_step).alias("floor_us"),
        ((pl.col("bytes") - pl.col("analytic")).sum() / peak / per_step).alias("extra_us"),
    ]


def cost_table(ops: pl.DataFrame, split: pl.DataFrame, peak: float, reference: float) -> pl.DataFrame:
    """Per class, then all ops with the step split's means (time = busy): µs per step, bytes, the terms; floor and
    extra per class where ops have `analytic` bytes."""
    n = split.height
    per_class = _row(n, peak, reference) + (_analytic_row(n, peak) if "analytic" in ops.columns else [])
    by_class = (
        ops.with_columns(pl.col("class").cast(pl.String))
        .group_by("class")
        .agg(per_class)
        .sort("time_us", descending=True)
    )
    mean_us = lambda c: pl.lit(split[c].mean() / 1000)  # noqa: E731
    total = ops.select(pl.lit(TOTAL).alias("class"), *_row(n, peak, reference)).with_columns(
        time_us=mean_us("busy"),
        floor_us=mean_us("floor"),
        extra_us=mean_us("extra"),
        shortfall_us=mean_us("shortfall"),
        fixed_us=mean_us("fixed"),
    )
    table = pl.concat([total, by_class], how="diagonal")
    first = [
        "class",
        "ops_per_step",
        "time_us",
        "mb_per_step",
        "achieved_gbps",
        "floor_us",
        "extra_us",
        "at_peak_us",
        "shortfall_us",
        "fixed_us",
    ]
    return table.select(*first, *(c for c in table.columns if c not in first))


def cost_facts(ops: pl.DataFrame, split: pl.DataFrame, peak: tuple, reference: tuple) -> dict:
    """Scalar findings over the measured steps; the fixed time per kernel over the kernels (memcpys and memsets
    left out). peak and reference: (GB/s, label)."""
    kernels = ops.filter(pl.col("kind") == "kernel")
    n = split.height
    fixed_us = kernels["fixed"] / 1000
    return {
        f"peak bandwidth GB/s ({peak[1]})": peak[0],
        f"reference bandwidth GB/s ({reference[1]})": reference[0],
        "bytes moved per step, GB (mean)": split["moved"].mean() / 1e9,
        "analytic floor bytes per step, GB (mean)": split["bytes"].mean() / 1e9,
        "kernel time per step, ms (sum of kernel durations)": kernels["duration"].sum() / n / 1e6,
        "fixed time per step, ms (mean)": split["fixed"].mean() / 1e6,
        "fixed per kernel, us: mean": fixed_us.mean(),
        "fixed per kernel, us: median": fixed_us.median(),
        "fixed per kernel, us: p10": fixed_us.quantile(0.1, "linear"),
        "fixed per kernel, us: p90": fixed_us.quantile(0.9, "linear"),
        "kernels x median fixed per kernel, ms": kernels.height / n * fixed_us.median() / 1000,
        "kernels faster than their bytes at the reference bandwidth, per step": (fixed_us < 0).sum() / n,
        "memcpys and memsets per step (0 bytes: their time is fixed)": (ops.height - kernels.height) / n,
    }


def _labels(result, reference) -> pl.DataFrame | None:
    """The measured ops' module labels, or None for a trace without module ranges when no reference is given."""
    try:
        return module_labels(result, reference)[0]
    except NoModuleRanges:
        if reference is not None:
            raise
        return None


def _bytes(result, ncu_csv: Path | None, labelled: pl.DataFrame | None):
    """kernel_bytes.KernelBytes: measured from the ncu CSV, else analytic from the module labels."""
    if ncu_csv is not None:
        sidecar = read_sidecar(ncu_csv)
        check_same_model(sidecar, result.frames.trace.meta)
        found = measured_bytes(result, ncu_csv)
        # What the bytes were measured on: another GPU's L2 or another context changes them a little.
        found.facts["ncu capture"] = (
            ", ".join(f"{key} {sidecar[key]}" for key in ("gpu_name", "runtime", "ctx") if key in sidecar)
            or "no .json beside the CSV"
        )
        return found
    if labelled is None:
        raise GapprofError(
            "the cost table needs bytes per kernel: --ncu CSV (measured, from `gapprof ncu`), or a "
            "module mapping (analytic: --reference MODULES_TRACE, or a trace captured with --modules)"
        )
    return analytic_bytes(result, labelled)


def bytes_per_kernel(result, ncu_csv: Path | None, reference=None):
    """kernel_bytes.KernelBytes of an attribution.Attribution as cost_sections takes them: measured by the ncu CSV,
    else analytic from module labels (its module ranges, or `reference`'s by position)."""
    return _bytes(result, ncu_csv, _labels(result, reference))


def cost_sections(
    result, ncu_csv: Path | None, reference=None, per_step: bool = False, profiles: dict | None = None
) -> tuple[list, list[str]]:
    """Sections (title, table) and notes of the busy split of an attribution.Attribution: bytes measured by the ncu
    CSV, else analytic from module labels (its module ranges, or `reference`'s by position), which also split
    floor and extra per class; when some kernels did not match the ncu CSV, what did not match instead.
    profiles: GPU key -> gapprof.gpu_profile.Found, for the reference bandwidth (none: 0.9 x peak)."""
    if result.floor is None:
        raise GapprofError("the cost split needs the floor: pass --model and --ctx")
    labelled = _labels(result, reference)
    found = _bytes(result, ncu_csv, labelled)
    if found.ops is None:
        return (
            [("cost facts", found.facts), ("unmatched kernels", found.unmatched)],
            [
                "no cost split: the ncu CSV's kernels and the trace's do not match one for one (table 'unmatched "
                "kernels'); profile the same model, runtime and context with `gapprof ncu`"
            ],
        )
    peak = result.floor.bandwidths[result.floor.primary]
    reference = reference_bandwidth(result, profiles or {})
    split = step_split(result.measured, found.ops, peak[0], reference.gbps)
    ops = with_fixed(found.ops, reference.gbps)
    facts = found.facts | cost_facts(ops, split, peak, (reference.gbps, reference.label))
    if "copy" in result.floor.bandwidths:
        facts["copy benchmark at capture / peak"] = result.floor.bandwidths["copy"][0] / peak[0]
    notes = [
        f"cost: busy = floor + extra + shortfall + fixed per step (ns, exact): floor = analytic bytes at "
        f"peak, extra = (moved - analytic bytes) at peak, shortfall = moved bytes at the reference bandwidth R "
        f"minus at peak, fixed = the rest; bytes: {found.facts['bytes per kernel'].split(':')[0]}",
        f"cost: R = {reference.gbps:,.0f} GB/s, {reference.says()}",
    ]
    if labelled is None:
        notes.append(
            "cost: floor and extra per class need a module mapping (--reference, or a trace captured "
            "with --modules); at_peak_us = floor + extra"
        )
    elif "analytic" not in ops.columns:
        ops = with_analytic(ops, labelled, result.measured, result.floor)
    if "analytic" in ops.columns:
        assigned = ops["analytic"].sum() / split.height
        facts["analytic bytes per step on kernels, GB (module mapping)"] = assigned / 1e9
        facts["analytic bytes per step on no kernel, GB"] = (split["bytes"].mean() - assigned) / 1e9
    sections = [("cost", cost_table(ops, split, peak[0], reference.gbps)), ("cost facts", facts)]
    if per_step:
        sections.append(("cost per step", split))
    return sections, notes
