"""Bytes per kernel, measured: the DRAM bytes (read + written) Nsight Compute measured for each kernel of a
profiled step (the CSV `gapprof ncu` writes), joined to the kernels of every measured step of a trace.

The join is by name and position. The step: the trace's most common kernel sequence over its measured steps
(short names, GPU order). The ncu rows, in launch order, are aligned with the step repeated
(module_alignment.align); ncu covers one or two steps and stops where --launch-count ends, often inside the
next step, so a repeat counts as profiled only when ncu got past its end, and the rows after the last profiled
repeat are left out. Each position of the step takes the mean bytes of its ncu rows over the profiled repeats;
each measured step's kernels are aligned with the step the same way and take the bytes of their position.

Nothing is guessed. A position no ncu row matched (missing, or n/a bytes), an ncu row inside the profiled repeats
that matches no position (extra) and a trace kernel outside its step's alignment are listed as unmatched; with
any of them the bytes are not used. Memcpys and memsets are not kernels and ncu does not profile them: they
take 0 bytes, so their time counts as fixed (kernel_cost).

Bytes per kernel, analytic, where ops carry module labels (modules.module_labels): each module instance (step,
kind, layer) must move module_tables.instance_bytes (a projection its weight matrix, attention its KV at the
step's context, a norm its weight vector); the whole of it goes to one op of the instance, its carrier, and its
other ops and the ops outside modules or unmatched get 0. The carrier is the op that streams those bytes: among
the ops of the kind's class where it has one (CARRIER_CLASS: attention kernels for attention, GEMV/GEMM for the
projections and lm_head), else among all, the one that measured the most bytes, or with no ncu CSV
(analytic_bytes) the longest, whose analytic bytes are then each op's bytes; ties go to the first in GPU order.
"""

import collections
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from gapprof.analysis import kernels
from gapprof.analysis.module_alignment import align, difference_frame, reference_step, step_sequences
from gapprof.analysis.module_tables import instance_bytes
from gapprof.analysis.readers.ncu import read_ncu_csv

from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name
from gapprof.nvtx_names import KINDS

CARRIER_CLASS = {
    "attention": "attention",
    "lm_head": "gemv/gemm",
    **{kind: "gemv/gemm" for kind in KINDS if kind.endswith("_proj")},
}
UNMATCHED_SCHEMA = {
    "against": pl.String,
    "steps": pl.Int64,
    "tag": pl.String,
    "reference_position": pl.Int64,
    "reference_ops": pl.String,
    "position": pl.Int64,
    "ops": pl.String,
}


@dataclass(frozen=True)
class KernelBytes:
    ops: pl.DataFrame | None  # measured steps' ops with name, class, position (kernels) and bytes; None if unmatched
    unmatched: pl.DataFrame  # UNMATCHED_SCHEMA: differing runs, ncu rows against the step, trace steps against it
    facts: dict


def step_ops(result) -> pl.DataFrame:
    """The measured steps' ops (attribution.Attribution) named, with each kernel's position in its step's kernel
    sequence in GPU order (null for memcpys and memsets)."""
    named = kernels.named_ops(result.measured_only(result.ops), result.frames.gpu, result.frames.strings, False)
    positions = step_sequences(named.filter(pl.col("kind") == "kernel")).select("op", "position", "short")
    return named.join(positions, on="op", how="left")


def _unmatched(differences: list[tuple], steps: int, against: str, step_length: int) -> pl.DataFrame:
    # Reference positions of the repeated step are shown as positions within one step.
    rows = [(tag, i0 % step_length, ref, j0, got) for tag, i0, ref, j0, got in differences]
    return difference_frame(rows, steps).select(pl.lit(against).alias("against"), pl.all())


def profiled_bytes(rows: pl.DataFrame, step: list[str]) -> tuple[list[float | None], pl.DataFrame, dict]:
    """Bytes per position of `step` (None where ncu has none), the unmatched ncu runs, and what was used."""
    names = rows["name"].map_elements(short_name, return_dtype=pl.String).to_list()
    n = len(step)
    matched, differences = align(step * -(-len(names) // n), names)
    last = max((m for m in matched if m is not None), default=-1)
    profiled = (last + 1) // n
    if profiled == 0:
        raise GapprofError(
            f"the ncu CSV has {len(names)} kernels matching less than one step of the trace "
            f"({n} kernels); profile at least one whole step (raise --launch-count)"
        )
    total, count = [0.0] * n, [0] * n
    moved = (rows["bytes_read"] + rows["bytes_write"]).to_list()
    for position, value in zip(matched, moved):
        if position is not None and position < profiled * n and value is not None:
            total[position % n] += value
            count[position % n] += 1
    per_position = [t / c if c == profiled else None for t, c in zip(total, count)]
    inside = [d for d in differences if d[1] < profiled * n]
    # Positions that align but lack bytes in some repeat (n/a values, or matched in one repeat only).
    shown = {i % n for _, i0, ref, _, _ in inside for i in range(i0, i0 + len(ref))}
    partial = [("no bytes", i, [step[i]], None, []) for i, c in enumerate(count) if c < profiled and i not in shown]
    end = next((j for j, m in enumerate(matched) if m is not None and m >= profiled * n), len(names))
    facts = {
        "ncu steps profiled (complete)": profiled,
        "ncu rows used": sum(1 for m in matched if m is not None and m < profiled * n),
        "ncu rows past the last complete step (left out)": len(names) - end,
    }
    return per_position, _unmatched(inside + partial, 1, "ncu rows", n), facts


def trace_positions(ops: pl.DataFrame, step: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(op, step position) of every kernel the alignment matched, and the unmatched runs per distinct sequence."""
    kernel_ops = ops.filter(pl.col("position").is_not_null()).sort("step", "position")
    sequences = collections.defaultdict(list)
    for step_id, op_ids, names in kernel_ops.group_by("step", maintain_order=True).agg("op", "short").iter_rows():
        sequences[tuple(names)].append((step_id, op_ids))
    pairs, unmatched = [], []
    for names, members in sequences.items():
        matched, differences = align(step, list(names))
        pairs += [(op, m) for _, op_ids in members for op, m in zip(op_ids, matched) if m is not None]
        unmatched.append(_unmatched(differences, len(members), "trace steps", len(step)))
    frame = pl.DataFrame(pairs, schema={"op": pl.Int64, "step_position": pl.Int64}, orient="row")
    return frame, pl.concat(unmatched)


def measured_bytes(result, ncu_csv: Path) -> KernelBytes:
    """Each measured kernel's DRAM bytes from the ncu CSV at ncu_csv, or the runs that did not match."""
    ops = step_ops(result)
    kernels = ops.filter(pl.col("kind") == "kernel")
    if kernels.is_empty():
        raise GapprofError(
            f"{ncu_csv}: the measured steps ran no kernel to join its rows to (a graph-level trace records each CUDA "
            "graph replay as one op: pass the node-level trace of the capture)"
        )
    # reference_step finds the most common sequence; it carries module labels along, which play no part here.
    step = reference_step(kernels.with_columns(kind=pl.lit(""), layer=pl.lit(0)))
    step_names = step["short"].to_list()
    per_position, ncu_unmatched, facts = profiled_bytes(read_ncu_csv(ncu_csv), step_names)
    positions, trace_unmatched = trace_positions(ops, step_names)
    unmatched = pl.concat([ncu_unmatched, trace_unmatched]).cast(UNMATCHED_SCHEMA)
    lookup = pl.DataFrame(
        {"step_position": range(len(step_names)), "bytes": per_position},
        schema={"step_position": pl.Int64, "bytes": pl.Float64},
    )
    ops = (
        ops.join(positions, on="op", how="left")
        .join(lookup, on="step_position", how="left")
        .with_columns(
            bytes=pl.when(pl.col("kind") == "kernel").then(pl.col("bytes").round()).otherwise(0.0).cast(pl.Int64)
        )
    )
    without = ops.filter(pl.col("bytes").is_null())
    kernels_per_step = ops.filter(pl.col("kind") == "kernel").height / result.measured.height
    facts = {
        "bytes per kernel": f"measured: DRAM read + written per kernel in {ncu_csv}, joined by name and "
        "position in the step",
        "kernels per step": kernels_per_step,
        "kernels matched per step": kernels_per_step - without.height / result.measured.height,
        "kernels without bytes (all steps)": without.height,
        **facts,
    }
    return KernelBytes(ops if unmatched.is_empty() and without.is_empty() else None, unmatched, facts)


def with_analytic(
    ops: pl.DataFrame, labelled: pl.DataFrame, steps: pl.DataFrame, floor, carrier_by: str = "bytes"
) -> pl.DataFrame:
    """ops plus `analytic` bytes (see the module docstring), carried in each module instance by its op with the
    largest `carrier_by`; labelled: ops with kind, layer; steps: the measured steps with ctx; floor: a Floor."""
    instance = ["step", "kind", "layer"]
    labels = labelled.select("op", "kind", "layer")
    must_move = instance_bytes(labels.join(ops.select("op", "step"), on="op"), steps, floor)
    preferred = pl.col("class").cast(pl.String) == pl.col("kind").replace_strict(CARRIER_CLASS, default=None)
    ranked = (
        ops.drop("kind")
        .join(labels, on="op", how="left")
        .join(must_move.rename({"bytes": "instance"}), on=instance, how="left", nulls_equal=True)
        .sort(
            *instance,
            preferred.fill_null(False),
            carrier_by,
            "start",
            descending=[False, False, False, True, True, False],
            nulls_last=True,
        )
        .with_columns(carrier=pl.int_range(pl.len()).over(instance) == 0)
    )
    analytic = pl.when(pl.col("carrier")).then(pl.col("instance")).otherwise(0).fill_null(0)
    return ops.join(ranked.select("op", analytic=analytic.cast(pl.Int64)), on="op", how="left")


def analytic_bytes(result, labelled: pl.DataFrame) -> KernelBytes:
    """Each measured op's bytes from the module mapping alone (no ncu CSV): with_analytic, longest op carrying."""
    ops = step_ops(result).with_columns(duration=pl.col("end") - pl.col("start"))
    ops = with_analytic(ops, labelled, result.measured, result.floor, "duration").with_columns(bytes="analytic")
    facts = {
        "bytes per kernel": "analytic: each module instance's bytes (weights, KV at the step's context) on "
        "its longest op, by the module mapping; no traffic above them is measured, so extra "
        "is 0 and its time counts as fixed",
        "kernels per step": (ops["kind"] == "kernel").sum() / result.measured.height,
    }
    return KernelBytes(ops, pl.DataFrame(schema=UNMATCHED_SCHEMA), facts)


AGGREGATE = (
    "aggregate: no bytes per kernel, so each step's floor bytes are spread over its kernels in proportion to "
    "their durations; projected, a step's kernel time is its fixed part (busy less the floor bytes at the "
    "source's achievable bandwidth) plus the floor bytes at the target's"
)


def aggregate_bytes(result) -> KernelBytes:
    """Each measured kernel's share of its step's floor bytes, by duration: the kernel model of a trace without
    bytes per kernel (no ncu CSV, no module ranges). Summed over a step the shares are the floor's bytes, so the
    per-kernel model gives busy - floor bytes / R_s + floor bytes / R_t for each step, whatever the split."""
    kernels = step_ops(result).filter(pl.col("kind") == "kernel").with_columns(duration=pl.col("end") - pl.col("start"))
    share = (pl.col("duration") / pl.col("duration").sum().over("step")).fill_nan(0.0)  # a step of 0-ns kernels
    ops = (
        kernels.join(result.measured.select("step", floor_bytes="bytes"), on="step")
        .with_columns(bytes=pl.col("floor_bytes") * share)
        .drop("floor_bytes")
    )
    facts = {"bytes per kernel": AGGREGATE, "kernels per step": ops.height / result.measured.height}
    return KernelBytes(ops, pl.DataFrame(schema=UNMATCHED_SCHEMA), facts)
