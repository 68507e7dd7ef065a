"""Writing `gapprof ab` and `gapprof sweep` results: JSON (everything, raw step times included), markdown,
CSV and the floor-fraction plot. Free of torch and polars."""

import csv
import io
import json
from pathlib import Path
from typing import BinaryIO

from gapprof.output_files import make_folder, write_files
from gapprof.render import markdown_table

SWEEP_COLUMNS = (
    "model",
    "ctx",
    "runtime",
    "attn",
    "status",
    "reason",
    "steps",
    "warmup",
    "median_ms",
    "p10_ms",
    "p90_ms",
    "floor_ms",
    "floor_fraction",
    "floor_ms_copy",
    "floor_fraction_copy",
    "first_token",
)
ANATOMY_PREFIX = "profiled_"


def _ms(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _machine_line(machine: dict) -> str:
    facts = [
        ("device", "gpu_name"),
        ("driver", "driver"),
        ("CPU", "cpu"),
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("CUDA", "cuda"),
        ("copy GB/s", "copy_bandwidth_gbps"),
    ]
    return ", ".join(
        f"{label} {machine[key]:.0f}" if isinstance(machine[key], float) else f"{label} {machine[key]}"
        for label, key in facts
        if machine.get(key) is not None
    )


def _floor_line(floor: dict) -> str:
    if "floor_bytes" not in floor:
        return "Floor: unknown (a local checkpoint has no shipped config to count bytes from)."
    sources = (("floor_ms", "datasheet_gbps", "datasheet"), ("floor_ms_copy", "copy_gbps", "copy"))
    known = [
        f"{_ms(floor[ms])} ms/step at {floor[gbps]:.0f} GB/s ({label})" for ms, gbps, label in sources if ms in floor
    ]
    return (
        f"Floor: {floor['floor_bytes'] / 1e9:.3f} GB/step; {'; '.join(known) or 'no known bandwidth'}. "
        f"{floor['convention']}."
    )


def _label(arm: dict) -> str:
    """An arm's runtime, and its --quant method where it has one."""
    return arm["runtime"] + (f" {arm['quant']}" if arm.get("quant") else "")


def _floor_lines(result: dict) -> list[str]:
    """The floor, one line per arm where the arms' floors differ (--quant-b), and the floor fractions against the
    unquantised floor of a quantised arm."""
    if "floor_b" not in result:
        lines = [_floor_line(result["floor"])]
    else:
        lines = [f"Arm A. {_floor_line(result['floor'])}", f"Arm B. {_floor_line(result['floor_b'])}"]
    arms = [(name, arm) for name, arm in zip("AB", result["arms"].values()) if "floor_fraction_unquantised" in arm]
    if arms:
        lines.append(
            "Floor fraction against the unquantised floor (datasheet): "
            + ", ".join(f"{name} {_pct(arm['floor_fraction_unquantised'])}" for name, arm in arms)
            + "."
        )
    return lines


def _token_line(distinct: dict, sessions_a: int, sessions_b: int) -> str:
    return (
        f"A {distinct['a']} of {sessions_a} sessions, B {distinct['b']} of {sessions_b}, "
        f"{distinct['all']} over both arms (1 = bitwise the same greedy decode everywhere)"
    )


def ab_headline(result: dict) -> str:
    a, b = result["arms"]["a"], result["arms"]["b"]
    low, high = result["ci95"]
    return (
        f"{_label(b)} over {_label(a)}: {result['speedup']:.3f}x (95% CI {low:.3f}-{high:.3f}); "
        f"{a['mean_of_medians_ms']:.2f} vs {b['mean_of_medians_ms']:.2f} ms/step, "
        f"{len(a['sessions'])} sessions per arm"
    )


def ab_markdown(result: dict) -> str:
    request, boot = result["request"], result["bootstrap"]
    arms = [result["arms"]["a"], result["arms"]["b"]]
    summary = markdown_table(
        [
            "arm",
            "runtime",
            "sessions",
            "mean of session medians (ms)",
            "sd (ms)",
            "min-max (ms)",
            "floor fraction (datasheet)",
            "floor fraction (copy)",
        ],
        [
            [
                name,
                _label(arm),
                len(arm["sessions"]),
                _ms(arm["mean_of_medians_ms"]),
                _ms(arm["sd_of_medians_ms"]),
                f"{_ms(arm['min_median_ms'])}-{_ms(arm['max_median_ms'])}",
                _pct(arm.get("floor_fraction")),
                _pct(arm.get("floor_fraction_copy")),
            ]
            for name, arm in zip("AB", arms)
        ],
    )
    sessions = sorted(
        ((s, name, _label(arm)) for name, arm in zip("AB", arms) for s in arm["sessions"]),
        key=lambda item: item[0]["order"],
    )
    per_session = markdown_table(
        ["run order", "arm", "runtime", "median (ms)", "mean (ms)", "copy GB/s"],
        [
            [s["order"] + 1, name, runtime, _ms(s["median_ms"]), _ms(s["mean_ms"]), _ms(s["copy_bandwidth_gbps"])]
            for s, name, runtime in sessions
        ],
    )
    low, high = result["ci95"]
    return (
        "\n\n".join(
            [
                f"# A/B: {_label(arms[0])} (A) vs {_label(arms[1])} (B), {request['model']} ctx {request['ctx']}",
                f"Command: `{result['command']}` (finished {result['finished_at']})",
                f"Machine: {_machine_line(result['machine'])}",
                f"Speedup of B over A = mean of A's session medians / mean of B's = **{result['speedup']:.3f}x**, "
                f"95% CI {low:.3f}-{high:.3f} ({boot['method']}, {boot['resamples']:,} resamples, "
                f"seed {boot['seed']}).",
                summary,
                f"Per session: {request['warmup']} warm-up + {request['steps']} measured steps, {request['dtype']}, "
                f"attn {arms[0]['attn']} (A), {arms[1]['attn']} (B); {result['timing']}. "
                "Distinct decoded token sequences: "
                + _token_line(result["distinct_token_sequences"], len(arms[0]["sessions"]), len(arms[1]["sessions"]))
                + ".",
                *_floor_lines(result),
                "## Sessions in run order",
                per_session,
            ]
        )
        + "\n"
    )


def write_ab(result: dict, out: Path) -> list[Path]:
    make_folder(out)
    return write_files({out / "ab.json": json.dumps(result, indent=1) + "\n", out / "ab.md": ab_markdown(result)})


def _anatomy_terms(rows: list[dict]) -> list[str]:
    terms = []
    for row in rows:
        terms += [t for t in row.get("anatomy", {}) if t not in terms]
    return terms


def sweep_table(rows: list[dict]) -> tuple[list[str], list[dict]]:
    """CSV columns (the fixed ones, each anatomy term's median ms, the trace columns) and rows flattened to them."""
    terms = _anatomy_terms(rows)
    columns = [*SWEEP_COLUMNS, *(f"{ANATOMY_PREFIX}{t}_ms" for t in terms)]
    columns += [c for c in ("trace", "profile_error") if any(c in row for row in rows)]
    flat = [{**row, **{f"{ANATOMY_PREFIX}{t}_ms": ms for t, ms in row.get("anatomy", {}).items()}} for row in rows]
    return columns, flat


def sweep_markdown(result: dict) -> str:
    rows, terms = result["rows"], _anatomy_terms(result["rows"])
    table = markdown_table(
        [
            "model",
            "ctx",
            "runtime",
            "attn",
            "median ms/step",
            "p10-p90 ms",
            "floor ms",
            "floor fraction",
            "floor fraction (copy)",
            *(f"profiled {t} ms" for t in terms),
            "note",
        ],
        [
            [
                r["model"],
                r["ctx"],
                r["runtime"],
                r.get("attn", ""),
                _ms(r.get("median_ms")),
                f"{_ms(r['p10_ms'])}-{_ms(r['p90_ms'])}" if r["status"] == "ok" else "",
                _ms(r.get("floor_ms")),
                _pct(r.get("floor_fraction")),
                _pct(r.get("floor_fraction_copy")),
                *(_ms(r.get("anatomy", {}).get(t)) for t in terms),
                r.get("reason") or r.get("profile_error", ""),
            ]
            for r in rows
        ],
    )
    grid = result["grid"]
    parts = [
        f"# Sweep on {result['machine'].get('gpu_name')}",
        f"Command: `{result['command']}` (finished {result['finished_at']})",
        f"Machine: {_machine_line(result['machine'])}",
        f"Per cell: {grid['warmup']} warm-up + {grid['steps']} measured steps, {grid['dtype']}, attn "
        f"{grid['attn']} (each cell's backend in the table); {result['timing']}. Floor fraction = floor ms / "
        f"median ms; {result['floor_convention']}.",
        table,
    ]
    if "parts" in result:
        parts.insert(
            3,
            f"Joined from {len(result['parts'])} sweeps of the same grid on the same GPU model "
            f"(`{result['merged_with']}`); each part's command, finish time and machine are in sweep.json.",
        )
    if terms:
        parts.append(
            f"Profiled columns: median of each anatomy term over the measured steps of the cell's trace "
            f"({result.get('attributed_with', 'gapprof sweep-attribute')})."
        )
    return "\n\n".join(parts) + "\n"


def plot_sweep(result: dict, file: BinaryIO) -> None:
    """Floor fraction against context, one line per model and runtime, as PNG into `file`."""
    from matplotlib.figure import Figure  # not pyplot: no display backend is chosen

    fig = Figure(figsize=(9, 4.5))  # room for the legend beside the axes
    ax = fig.subplots()
    series: dict[str, list[tuple]] = {}
    for row in result["rows"]:
        if row.get("floor_fraction") is not None:
            series.setdefault(f"{row['model']} {row['runtime']}", []).append((row["ctx"], row["floor_fraction"]))
    for label, points in series.items():
        ctx, fraction = zip(*sorted(points))
        ax.plot(ctx, fraction, marker="o", label=label)
    if series:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes, off the points
    else:
        ax.text(
            0.5,
            0.5,
            "no cell with a known floor (no timed cell on a GPU in the datasheet table)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("floor fraction (datasheet floor / median step)")
    ax.set_title(f"Floor fraction per cell, {result['machine'].get('gpu_name')}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, dpi=120, format="png")


def sweep_csv(rows: list[dict]) -> str:
    columns, flat = sweep_table(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")  # raw step_ms stay in the JSON
    writer.writeheader()
    writer.writerows(flat)
    return text.getvalue()


def write_sweep(result: dict, out: Path, inputs=()) -> list[Path]:
    """sweep.csv, .md, .json and .png in `out`, replaced together (none may be one of `inputs`)."""
    make_folder(out)
    return write_files(
        {
            out / "sweep.csv": sweep_csv(result["rows"]),
            out / "sweep.md": sweep_markdown(result),
            out / "sweep.json": json.dumps(result, indent=1) + "\n",
            out / "sweep.png": lambda file: plot_sweep(result, file),
        },
        inputs,
    )
