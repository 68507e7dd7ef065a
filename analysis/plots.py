"""Pictures of the step anatomy with matplotlib, drawn on Figure objects (no pyplot, so no display backend is
chosen or needed: files only).

- anatomy: one stacked bar per trace or projection (floor, excess, starved, latency, head, tail), floor marked;
- fraction: floor fraction against peak bandwidth, measured points and projected lines per source trace, and
  the kernel model's curve for one trace (analysis.fraction_model);
- timeline: one step, API calls on the CPU row above, GPU ops below, starved gaps shaded.
"""

from pathlib import Path

import matplotlib as mpl
import numpy as np
import polars as pl
from gapprof.analysis.comparison import Column
from gapprof.analysis.fraction_model import FractionModel
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gapprof.errors import GapprofError
from gapprof.output_files import write_files

# The timeline's starved gaps: the legend's swatch is drawn as the shading is, colour and transparency.
STARVED_SHADE = {"color": "#d62728", "alpha": 0.25}
COLORS = {
    "floor": "#1f77b4",
    "excess": "#9ecae1",
    "starved": "#d62728",
    "latency": "#ff9896",
    "head": "#7f7f7f",
    "tail": "#c7c7c7",
}
CALL_COLORS = {"launch": "#2ca02c", "graph launch": "#2ca02c", "sync": "#9467bd", "memcpy": "#8c564b"}
OTHER_CALL = "#bcbd22"
FORMATS = (".png", ".svg", ".pdf")
STEP_COLOR = "#9467bd"
MODEL_SPAN = 4  # the kernel model's curve runs to this many times the fastest GPU drawn, to show where it tends


def anatomy(columns: list[Column], path: Path) -> Path:
    labels = [c.label for c in columns]
    fig = Figure(figsize=(max(6.5, 1.3 * len(columns) + 3), 4.5))
    ax = fig.subplots()
    bottom = [0.0] * len(columns)
    for term, color in COLORS.items():
        values = [c.values[f"{term} ms"] for c in columns]
        ax.bar(labels, values, bottom=bottom, color=color, label=term, width=0.6)
        bottom = [b + v for b, v in zip(bottom, values)]
    for i, c in enumerate(columns):
        floor = c.values["floor ms"]
        ax.hlines(floor, i - 0.38, i + 0.38, colors="black", linewidth=1.5)
        ax.annotate(
            f"floor {100 * c.values['floor fraction']:.0f}%",
            (i, c.values["wall ms"]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("ms per decode step (mean)")
    ax.set_title("Step anatomy: wall = floor + excess + starved + latency + head + tail", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="black line: floor")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    ax.set_ylim(0, max(c.values["wall ms"] for c in columns) * 1.12)
    return _save(fig, path)


def fraction(
    measured: list[Column],
    projected: dict[str, list[Column]],
    path: Path,
    model: FractionModel | None = None,
    unprofiled: dict[str, float] | None = None,
) -> Path:
    """projected: source label -> its projections (one per target GPU); unprofiled: source label -> the floor
    fraction of its unprofiled step, drawn hollow. With `model`, its curve (fraction_model), the bandwidth where
    fixed time equals the floor, and on a second axis the step time it predicts, which tends to fixed + exposed.
    GPUs are named on the x axis (`_gpu_ticks`), the legend sits outside the axes."""
    fig = Figure(figsize=(10.5 if model else 9.5, 5))
    ax = fig.subplots()
    cycle = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, source in enumerate(measured):
        color = cycle[i % len(cycle)]
        points = sorted(projected.get(source.label, []), key=lambda c: c.values["peak GB/s"])
        how = "projected by the kernel model (replay)" if model and model.label == source.label else "projected"
        if points:
            ax.plot(
                [c.values["peak GB/s"] for c in points],
                [100 * c.values["floor fraction"] for c in points],
                "--",
                marker="x",
                color=color,
                alpha=0.8,
                label=f"{source.label}: {how}",
            )
        ax.plot(
            source.values["peak GB/s"],
            100 * source.values["floor fraction"],
            "o",
            markersize=9,
            color=color,
            markeredgecolor="black",
            label=f"{source.label}: measured ({source.values['gpu']})",
        )
        if (unprofiled or {}).get(source.label) is not None:
            ax.plot(
                source.values["peak GB/s"],
                100 * unprofiled[source.label],
                "o",
                markersize=9,
                color="none",
                markeredgecolor=color,
                markeredgewidth=2,
                label=f"{source.label}: measured, unprofiled step",
            )
    ax.set_xscale("log")
    ticks = _gpu_ticks(measured + [c for cs in projected.values() for c in cs])
    if model is not None:
        ticks = _model_curve(ax, model, ticks)
    ax.set_xticks(list(ticks), list(ticks.values()), fontsize=7, rotation=45, ha="right", rotation_mode="anchor")
    ax.minorticks_off()
    ax.set_xlabel("datasheet peak DRAM bandwidth, GB/s (log)")
    ax.set_ylabel("floor fraction of wall, %")
    ax.set_ylim(bottom=0)
    ax.set_title("Floor fraction vs peak bandwidth" + (f": the kernel model of {model.label}" if model else ""))
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    for twin in ax.figure.axes[1:]:  # the model's step-time axis
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.09 if model else 1.0, 1.0), fontsize=7)
    return _save(fig, path)


def _model_curve(ax, model: FractionModel, ticks: dict[float, str]) -> dict[float, str]:
    """Draw the model's fraction from below the slowest GPU to MODEL_SPAN x the fastest, the bandwidth where fixed
    time equals the floor, and the step time on a second axis with its limit; return ticks with the span's end."""
    high = MODEL_SPAN * max(ticks)
    x = np.geomspace(min(ticks) / 1.2, high, 200)
    ax.plot(
        x,
        100 * model.fraction(x),
        "-",
        color="black",
        linewidth=1.5,
        label=f"{model.label}: kernel model, fixed {model.fixed_ms:.2f} ms + bytes x peak/bandwidth",
    )
    ax.axvline(model.crossover_gbps, color="gray", linestyle=":", linewidth=1)
    ax.annotate(
        f"fixed time = floor time\nat {model.crossover_gbps:,.0f} GB/s",
        (model.crossover_gbps, 0.97),
        xycoords=("data", "axes fraction"),
        va="top",
        fontsize=7,
        color="dimgray",
        xytext=(4, 0),
        textcoords="offset points",
    )
    step = ax.twinx()
    wall = model.bytes_ms * model.peak_gbps / x + model.fixed_ms + model.exposed_ms
    step.plot(x, wall, "-", color=STEP_COLOR, linewidth=1, label="kernel model: step time (right axis)")
    limit = model.fixed_ms + model.exposed_ms
    step.axhline(
        limit,
        color=STEP_COLOR,
        linestyle="--",
        linewidth=1,
        label=f"its limit (right axis): fixed {model.fixed_ms:.2f} + exposed {model.exposed_ms:.2f} = {limit:.2f} ms",
    )
    step.set_ylim(0, wall.max() * 1.05)
    step.set_ylabel("kernel model: step time, ms", color=STEP_COLOR)
    step.tick_params(axis="y", colors=STEP_COLOR)
    return ticks | {high: f"{high:,.0f}"}


def _gpu_ticks(columns: list[Column]) -> dict[float, str]:
    """Tick position (peak GB/s) -> label, one line per GPU: its name and peak. A GPU within 10% of the tick below
    it (A100 80GB at 2,039 over H100 PCIe at 2,000) adds its line to that tick's label instead of a tick of its
    own, so that no two labels overlap."""
    names: dict[float, set[str]] = {}
    for c in columns:
        names.setdefault(c.values["peak GB/s"], set()).add(c.values["gpu"].removesuffix(" (projected)"))
    ticks: dict[float, str] = {}
    for peak in sorted(names):
        line = f"{' / '.join(sorted(names[peak]))} {peak:,.0f}"
        below = max(ticks, default=None)
        if below is not None and peak < 1.1 * below:
            ticks[below] += "\n" + line
        else:
            ticks[peak] = line
    return ticks


def timeline(panels: list[tuple[str, pl.DataFrame, pl.DataFrame, int, int]], path: Path) -> Path:
    """panels: (title, calls with start/end/category, ops with start/end/gap/starved, t0, t1) of one step each;
    times in ns, drawn in ms from t0."""
    # One time axis for every panel, so a shorter replayed step looks shorter.
    span = max(t1 - t0 for *_, t0, t1 in panels) / 1e6
    fig = Figure(figsize=(11, 1.9 * len(panels) + 0.6))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    for ax, (title, calls, ops, t0, _) in zip(axes[:, 0], panels):

        def ms(col: str, t0: int = t0) -> pl.Expr:
            return (pl.col(col) - t0) / 1e6

        c = calls.select(s=ms("start"), w=(pl.col("end") - pl.col("start")) / 1e6, category="category")
        for category, part in c.group_by("category"):
            color = CALL_COLORS.get(category[0], OTHER_CALL)
            ax.broken_barh(list(zip(part["s"], part["w"])), (1.1, 0.8), facecolors=color, edgecolor="none")
        o = ops.select(s=ms("start"), w=(pl.col("end") - pl.col("start")) / 1e6)
        ax.broken_barh(list(zip(o["s"], o["w"])), (0.1, 0.8), facecolors="#1f77b4", edgecolor="none")
        starved = ops.filter(pl.col("starved")).select(e=ms("start"), w=pl.col("gap") / 1e6)
        for end, width in starved.iter_rows():
            ax.axvspan(end - width, end, ymin=0.0, ymax=0.5, linewidth=0, **STARVED_SHADE)
        ax.set_xlim(0, span)
        ax.set_ylim(0, 2)
        ax.set_yticks([0.5, 1.5], ["GPU ops", "CPU calls"])
        ax.set_title(title, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("ms from step start")
    colors = ("#2ca02c", "#9467bd", "#8c564b", OTHER_CALL, "#1f77b4")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colors] + [Rectangle((0, 0), 1, 1, **STARVED_SHADE)]
    fig.legend(
        handles,
        ["launch call", "sync call", "memcpy call", "other call", "GPU op", "starved gap"],
        loc="upper right",
        ncol=6,
        fontsize=8,
    )
    return _save(fig, path)


def picture_path(path: Path) -> Path:
    """The file a picture asked for as `path` is written to, checked before any work: with no extension (no dot,
    or text other than letters after the last one, as in qwen2.5-7b) .png is added; otherwise the extension must be
    one of FORMATS (any case), and the folder must exist."""
    path = Path(path)
    if not path.suffix[1:].isalpha():
        path = path.with_name(path.name + ".png")
    elif path.suffix.lower() not in FORMATS:
        raise GapprofError(f"{path}: unsupported picture format {path.suffix}; use {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise GapprofError(f"{path}: folder {path.parent} does not exist")
    return path


def _save(fig, path: Path) -> Path:
    path = picture_path(path)
    fig.tight_layout(rect=(0, 0, 1, 0.95) if fig.legends else (0, 0, 1, 1))
    write_files({path: lambda file: fig.savefig(file, dpi=110, format=path.suffix[1:].lower())})
    return path
