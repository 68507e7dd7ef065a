"""Side-by-side step anatomy of several traces (or projections), and an explanation computed from the numbers:
which terms scaled with 1/bandwidth, which stayed constant, and how much of the change in floor fraction each
term accounts for.

Every time is the mean over measured steps; floor fraction = mean floor / mean wall (as `attribute` reports).
Change in floor fraction f = F / W from A to B, split exactly over the terms of W = floor + excess + starved +
latency + head + tail: with s = F_B / F_A, a term that kept pace with the floor (T_B = s * T_A) leaves f as it
was, so term T contributes -F_A * (T_B - s * T_A) / (W_A * W_B); the contributions sum to f_B - f_A and the
floor's own is 0 by construction.
"""

import math
from dataclasses import dataclass

import polars as pl
from gapprof.analysis.summary import cpu_us_per_launch

from gapprof.errors import GapprofError
from gapprof.render import Table

TERMS = ("floor", "excess", "starved", "latency", "head", "tail")
ROWS = (
    "gpu",
    "peak GB/s",
    "measured GB/s",
    "floor ms",
    "busy ms",
    "excess ms",
    "starved ms",
    "latency ms",
    "head ms",
    "tail ms",
    "wall ms",
    "floor fraction",
    "unprofiled wall ms",
    "unprofiled floor fraction",
    "kernels/step",
    "launch calls/step",
    "launch call CPU us",
    "host CPU us per launch",
)
# starved, head and tail are time the GPU waits for the step thread's CPU: they follow the host CPU (the two
# machines' CPUs may differ), never the GPU's bandwidth, whatever their ratio.
CPU_TERMS = ("starved", "head", "tail")
DEFINITIONS = (
    "launch call CPU us: mean duration of one launch API call; host CPU us per launch: the step's wall "
    "less the time its thread blocked waiting for the GPU, per launch call (all the CPU work of a step, "
    "spread over its launches)"
)
MATCH_KEYS = ("model", "ctx", "runtime", "attn")
# Scaling exponent e with T_B / T_A = (bw_A / bw_B) ** e: 1 scales with 1/bandwidth, 0 stays constant. Across a
# large bandwidth step a small exponent can still be a large change (x2 over a 10x step is e = 0.3), so a term is
# called constant only if its time also moved by at most CONSTANT_CHANGE.
SCALED, CONSTANT, CONSTANT_CHANGE = 0.67, 0.33, 0.10
NEGLIGIBLE = 0.01  # of wall, in both columns


@dataclass(frozen=True)
class Column:
    label: str
    values: dict  # ROWS -> value (None when unknown)
    replayed: bool = False  # a projection: the replay holds the source's CPU time fixed


def column(
    label: str,
    gpu: str,
    peak_gbps: float | None,
    measured_gbps: float | None,
    table: pl.DataFrame,
    unprofiled_ms: float | None = None,
    replayed: bool = False,
) -> Column:
    """table: measured (or replayed) steps with the anatomy, floor and `wait` columns. Host time is the wall
    less the time blocked waiting for the GPU: the CPU work of the step thread. unprofiled_ms: the mean step
    without the profiler (measured at capture, or estimated for a projection), where known."""
    ms = lambda name: table[name].mean() / 1e6  # noqa: E731
    launches = table["launch_calls"].sum()
    values = {
        "gpu": gpu,
        "peak GB/s": peak_gbps,
        "measured GB/s": measured_gbps,
        **{f"{t} ms": ms(t) for t in ("floor", "busy", "excess", "starved", "latency", "head", "tail", "wall")},
        "floor fraction": table["floor"].mean() / table["wall"].mean(),
        "unprofiled wall ms": unprofiled_ms,
        "unprofiled floor fraction": table["floor"].mean() / 1e6 / unprofiled_ms if unprofiled_ms else None,
        "kernels/step": table["kernels"].mean(),
        "launch calls/step": table["launch_calls"].mean(),
        "launch call CPU us": cpu_us_per_launch(table),
        "host CPU us per launch": (table["wall"] - table["wait"]).sum() / launches / 1e3 if launches else None,
    }
    return Column(label, values, replayed)


def _text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def table(columns: list[Column]) -> Table:
    """One row per quantity, one column per trace (mixed kinds share a column, so a Table, not a frame)."""
    return Table(["", *(c.label for c in columns)], [(r, *(c.values[r] for c in columns)) for r in ROWS], _text)


def check_match(metas: dict, force: bool) -> list[str]:
    """Refuse traces that differ in model, ctx, runtime or attention backend (unless force); return notes on what
    differs."""
    differ = []
    for key in MATCH_KEYS:
        seen = {label: meta.get(key) for label, meta in metas.items()}
        if len({repr(v) for v in seen.values()}) > 1:
            differ.append(f"{key} differs ({', '.join(f'{label}: {v}' for label, v in seen.items())})")
    if differ and not force:
        raise GapprofError("traces are not comparable: " + "; ".join(differ) + "; pass --force to compare anyway")
    return [f"compared anyway (--force): {d}" for d in differ]


def _exponent(a: float, b: float, bw_ratio: float) -> float | None:
    if a <= 0 or b <= 0 or bw_ratio == 1:
        return None
    return math.log(b / a) / math.log(1 / bw_ratio)


def _verdict(exponent: float | None, ratio: float | None, negligible: bool) -> str:
    if negligible:
        return "negligible"
    if exponent is None:
        return "-"
    if exponent >= SCALED:
        return "scaled with 1/bandwidth"
    if abs(exponent) <= CONSTANT and abs(ratio - 1) <= CONSTANT_CHANGE:
        return "constant"
    return "partly scaled" if exponent > 0 else "moved against 1/bandwidth"


def contributions(a: Column, b: Column) -> dict:
    """term -> its share of the change in floor fraction from a to b (fraction units; sums to the change)."""
    fa, wa, wb = a.values["floor ms"], a.values["wall ms"], b.values["wall ms"]
    s = b.values["floor ms"] / fa
    return {t: fa * (s * a.values[f"{t} ms"] - b.values[f"{t} ms"]) / (wa * wb) for t in TERMS}


def _times(ratio: float | None) -> str:
    return "new" if ratio is None else f"x{ratio:.2f}"


def explain(a: Column, b: Column) -> tuple[pl.DataFrame, list[str]]:
    """Per term: A and B (ms), B/A, scaling exponent, verdict, contribution (percentage points); and sentences."""
    bw_a, bw_b = a.values["peak GB/s"], b.values["peak GB/s"]
    bw_ratio = bw_b / bw_a if bw_a and bw_b else 1.0
    parts = contributions(a, b)
    # A replay holds the CPU time fixed: its CPU terms move only with the GPU's timing, never with a host CPU.
    cpu_verdict = "CPU time held by the replay" if b.replayed else "follows the host CPU"
    rows, scaled, partly, constant, against = [], [], [], [], []
    for term in TERMS:
        va, vb = a.values[f"{term} ms"], b.values[f"{term} ms"]
        e, ratio = _exponent(va, vb, bw_ratio), vb / va if va else None
        negligible = max(va / a.values["wall ms"], vb / b.values["wall ms"]) < NEGLIGIBLE
        verdict = cpu_verdict if term in CPU_TERMS and not negligible else _verdict(e, ratio, negligible)
        groups = {
            "scaled with 1/bandwidth": scaled,
            "partly scaled": partly,
            "constant": constant,
            "moved against 1/bandwidth": against,
        }
        groups.get(verdict, []).append(term)
        rows.append(
            {
                "term": term,
                f"{a.label} ms": va,
                f"{b.label} ms": vb,
                "ratio": ratio,
                "exponent": e,
                "verdict": verdict,
                "floor fraction change pp": 100 * parts[term],
            }
        )
    frame = pl.DataFrame(
        rows,
        schema={
            "term": pl.String,
            f"{a.label} ms": pl.Float64,
            f"{b.label} ms": pl.Float64,
            "ratio": pl.Float64,
            "exponent": pl.Float64,
            "verdict": pl.String,
            "floor fraction change pp": pl.Float64,
        },
    )
    fa, fb = a.values["floor fraction"], b.values["floor fraction"]
    ranked = sorted(((t, v) for t, v in parts.items() if t != "floor"), key=lambda kv: abs(kv[1]), reverse=True)
    lines = [
        f"{a.label} -> {b.label}: peak bandwidth x{bw_ratio:.2f}, wall {a.values['wall ms']:.2f} -> "
        f"{b.values['wall ms']:.2f} ms, floor fraction {100 * fa:.1f}% -> {100 * fb:.1f}% "
        f"({100 * (fb - fa):+.1f} pp)."
    ]
    if scaled:
        lines.append(f"Scaled with 1/bandwidth (exponent >= {SCALED}): {', '.join(scaled)}.")
    if partly:
        lines.append(
            "Partly scaled with 1/bandwidth: "
            + ", ".join(f"{t} {_times(rows[TERMS.index(t)]['ratio'])}" for t in partly)
            + "."
        )
    if constant:
        lines.append(
            f"Stayed constant in absolute time (|exponent| <= {CONSTANT}, within "
            f"{CONSTANT_CHANGE:.0%}): {', '.join(constant)}."
        )
    if against:
        way = "Grew although bandwidth rose" if bw_ratio > 1 else "Shrank although bandwidth fell"
        lines.append(f"{way}: {', '.join(against)}.")
    cpu = [t for t in CPU_TERMS if rows[TERMS.index(t)]["verdict"] == cpu_verdict]
    if cpu:
        lead = (
            "CPU-side time, replayed with the source's CPU time, so moved only by the GPU's timing: "
            if b.replayed
            else "CPU time, which follows the host CPU and not the bandwidth: "
        )
        lines.append(lead + ", ".join(f"{t} {_times(rows[TERMS.index(t)]['ratio'])}" for t in cpu) + ".")
    lines.append(
        "Change in floor fraction by term (time that did not keep pace with the floor): "
        + ", ".join(f"{t} {100 * v:+.1f} pp" for t, v in ranked[:4])
        + "."
    )
    return frame, lines


def sections(columns: list[Column], title: str = "compare") -> tuple[list, list[str]]:
    """The comparison table (under `title`) and one explanation per column against the first: (sections,
    sentences, the definitions last)."""
    out, sentences = [(title, table(columns))], []
    for other in columns[1:]:
        frame, lines = explain(columns[0], other)
        out.append((f"explanation {columns[0].label} -> {other.label}", frame))
        sentences += lines
    return out, sentences + [DEFINITIONS]
