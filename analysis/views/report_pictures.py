"""The pictures of the HTML report, as inline SVG: the anatomy bars, a step's timeline with its lanes and the
launch-delay distributions. Every mark carries its values in an SVG title, which the report's script shows on
hover; colours follow gapprof's plots (terms) and kernel classes (analysis.kernels.CLASSES, in order).
"""

import html
import math

import polars as pl
from gapprof.analysis import api, kernels, launch_delays
from gapprof.analysis.anatomy_intervals import intervals

TERM_COLORS = {
    "floor": "#1f77b4",
    "excess": "#9ecae1",
    "busy": "#4a90c8",
    "starved": "#d62728",
    "latency": "#ff9896",
    "head": "#7f7f7f",
    "tail": "#c7c7c7",
    "spill": "#ffbb78",
}
CLASS_COLORS = (
    "#1f77b4",
    "#9467bd",
    "#2ca02c",
    "#bcbd22",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#ff7f0e",
    "#d62728",
    "#7f7f7f",
    "#393b79",
)  # kernels.CLASSES, in order
CALL_COLORS = {"launch": "#2ca02c", "graph launch": "#2ca02c", "sync": "#9467bd", "memcpy": "#8c564b"}
OTHER_CALL = "#bcbd22"
LANE_PX = 20
WIDTH = 1000  # timeline units across a step; the script zooms by changing the viewBox


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _duration(ns: float) -> str:
    """A tick label: µs below a millisecond, ms from there."""
    return f"{ns / 1000:g} µs" if ns < 1_000_000 else f"{ns / 1e6:g} ms"


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.3f} ms"


def anatomy_bars(rows: list[tuple[str, dict]]) -> str:
    """One horizontal stacked bar per (label, mean ns per term), floor and excess where the floor is known."""
    longest = max(sum(v for t, v in terms.items() if t != "wall") for _, terms in rows) or 1
    label_w, bar_w, bar_h = 220, 720, 26
    parts = []
    for i, (label, terms) in enumerate(rows):
        y, x = 8 + i * (bar_h + 12), label_w
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.68:.1f}" text-anchor="end">{esc(label)}</text>')
        for term, ns in terms.items():
            if term == "wall" or ns <= 0:
                continue
            w = bar_w * ns / longest
            parts.append(
                f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{TERM_COLORS[term]}">'
                f"<title>{esc(label)}: {term} {_ms(ns)} a step ({100 * ns / terms['wall']:.1f}% of wall)"
                f"</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + bar_h * 0.68:.1f}">{_ms(terms["wall"])}</text>')
    height = 16 + len(rows) * (bar_h + 12)
    legend = "".join(
        f'<span class="key" style="background:{TERM_COLORS[t]}"></span>{t} '
        for t in ("floor", "excess", "busy", "starved", "latency", "head", "tail")
        if any(t in terms for _, terms in rows)
    )
    return (
        f'<svg class="bars" viewBox="0 0 {label_w + bar_w + 110} {height}" role="img">{"".join(parts)}</svg>'
        f'<p class="legend">{legend}</p>'
    )


def mean_terms(result) -> dict:
    """Mean ns a measured step of wall and of each term, busy split into floor and excess where known."""
    measured = result.measured
    terms = ["floor", "excess"] if result.floor is not None else ["busy"]
    return {t: float(measured[t].mean()) for t in ["wall", *terms, "starved", "latency", "head", "tail"]}


def _chosen_steps(result) -> list[tuple[str, dict]]:
    """The median (by wall) and the slowest measured step, as rows of the per-step table."""
    ordered = result.measured.sort("wall", "step")
    if ordered.is_empty():
        return []
    chosen = {
        "median step": ordered.row(ordered.height // 2, named=True),
        "slowest step": ordered.row(ordered.height - 1, named=True),
    }
    if chosen["median step"]["step"] == chosen["slowest step"]["step"]:
        del chosen["slowest step"]
    return list(chosen.items())


def _rect(x0: float, x1: float, y: float, h: float, fill: str, title: str, cls: str = "") -> str:
    css_class = f' class="{cls}"' if cls else ""
    return (
        f'<rect x="{x0:.3f}" y="{y}" width="{x1 - x0:.3f}" height="{h}" fill="{fill}"{css_class}>'
        f"<title>{esc(title)}</title></rect>"
    )


def step_timeline(result, step: dict, step_ops: pl.DataFrame, step_calls: pl.DataFrame) -> str:
    """A step's lanes: the anatomy's intervals, the launch thread's API calls, then one lane per GPU stream with
    each op coloured by class; starved and latency gaps shaded across the lanes."""
    t0, wall = step["t0"], step["wall"] or 1
    x = lambda t: (t - t0) * WIDTH / wall  # noqa: E731
    found = intervals(result.steps.filter(pl.col("step") == step["step"]), step_ops)
    streams = step_ops["streamId"].unique().sort().to_list()
    lanes = ["anatomy", "API calls", *(f"stream {s}" for s in streams)]
    height = LANE_PX * len(lanes)
    marks = []
    for term, start, end in found.select(pl.col("term").cast(pl.String), "start", "end").iter_rows():
        label = f"{term} {(end - start) / 1000:,.3f} µs, at {(start - t0) / 1000:,.3f} µs"
        if term in ("starved", "latency"):
            marks.append(_rect(x(start), x(end), 0, height, TERM_COLORS[term], label, "shade"))
        marks.append(_rect(x(start), x(end), 1, LANE_PX - 2, TERM_COLORS[term], label))
    for name, category, start, end in step_calls.select("name", "category", "start", "end").iter_rows():
        marks.append(
            _rect(
                x(start),
                x(end),
                LANE_PX + 2,
                LANE_PX - 4,
                CALL_COLORS.get(category, OTHER_CALL),
                f"{name} {(end - start) / 1000:,.3f} µs",
            )
        )
    lane_of = {s: 2 + i for i, s in enumerate(streams)}
    for name, cls, stream, start, end, gap, starved in step_ops.select(
        "name", pl.col("class").cast(pl.String), "streamId", "start", "end", "gap", "starved"
    ).iter_rows():
        before = f"; {'starved' if starved else 'latency'} gap before {gap / 1000:,.3f} µs" if gap else ""
        marks.append(
            _rect(
                x(start),
                x(end),
                lane_of[stream] * LANE_PX + 2,
                LANE_PX - 4,
                CLASS_COLORS[kernels.CLASSES.index(cls)],
                f"{name} [{cls}] {(end - start) / 1000:,.3f} µs{before}",
            )
        )
    labels = "".join(f'<div class="lane">{esc(lane)}</div>' for lane in lanes)
    return (
        f'<div class="timeline" data-wall-ms="{wall / 1e6}">'
        f'<div class="controls"><button data-zoom="2">zoom in</button><button data-zoom="0.5">zoom out</button>'
        f'<button data-zoom="0">whole step</button> wheel zooms, drag pans</div>'
        f'<div class="lanes"><div class="labels">{labels}</div><div class="plot">'
        f'<svg class="steps" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="none" '
        f'style="height:{height}px">{"".join(marks)}</svg>'
        f'<svg class="axis"></svg></div></div></div>'
    )


def timelines(result) -> str:
    chosen = _chosen_steps(result)
    if not chosen:
        return "<p>No measured step.</p>"
    steps = [row["step"] for _, row in chosen]
    ops = result.ops.filter(pl.col("step").is_in(steps))
    ops = kernels.named_ops(ops, result.frames.gpu, result.frames.strings, False)
    ops = ops.join(result.frames.gpu.select("streamId").with_row_index("op"), on="op")
    calls = api.named_calls(result.calls.filter(pl.col("step").is_in(steps)), result.frames.strings)
    out = []
    for title, row in chosen:
        out.append(
            f"<h4>{title}: step {row['index']}, wall {_ms(row['wall'])}, starved {_ms(row['starved'])}, "
            f"latency {_ms(row['latency'])}</h4>"
        )
        out.append(
            step_timeline(
                result, row, ops.filter(pl.col("step") == row["step"]), calls.filter(pl.col("step") == row["step"])
            )
        )
    legend = "".join(
        f'<span class="key" style="background:{CLASS_COLORS[i]}"></span>{esc(c)} '
        for i, c in enumerate(kernels.CLASSES)
        if c in set(ops["class"].cast(pl.String).to_list())
    )
    return "".join(out) + f'<p class="legend">ops: {legend}</p>'


def delay_chart(per_class: pl.DataFrame) -> str:
    """Per launch API and class, each op's delay from its launch: a line from p50 to p99, a mark at p90, on a log
    axis in µs."""
    if per_class.is_empty():
        return "<p>No launches in the measured steps.</p>"
    rows = per_class.rows(named=True)
    values = [r[f"delay_p{p}_ns"] for r in rows for p in launch_delays.PERCENTILES]
    low, high = max(min(values), 100), max(max(values), 1000)
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    label_w, plot_w, row_h = 300, 620, 18
    x = lambda ns: label_w + plot_w * (math.log10(max(ns, 10**lo)) - lo) / (hi - lo)  # noqa: E731
    parts = []
    for decade in range(lo, hi + 1):
        parts.append(
            f'<line x1="{x(10**decade):.1f}" x2="{x(10**decade):.1f}" y1="0" '
            f'y2="{row_h * len(rows)}" class="grid"/><text x="{x(10**decade):.1f}" '
            f'y="{row_h * len(rows) + 14}" text-anchor="middle">{_duration(10**decade)}</text>'
        )
    for i, r in enumerate(rows):
        y = i * row_h + row_h / 2
        p50, p90, p99 = (r[f"delay_p{p}_ns"] for p in launch_delays.PERCENTILES)
        title = (
            f"{r['api']} {r['class']}: {r['ops_per_step']:,.1f} ops a step, delay p50 {p50 / 1000:,.3f}, "
            f"p90 {p90 / 1000:,.3f}, p99 {p99 / 1000:,.3f} µs"
        )
        color = CLASS_COLORS[kernels.CLASSES.index(r["class"])]
        parts.append(
            f'<g><title>{esc(title)}</title><text x="{label_w - 8}" y="{y + 4}" text-anchor="end">'
            f"{esc(r['api'])} · {esc(r['class'])}</text>"
            f'<line x1="{x(p50):.1f}" x2="{x(p99):.1f}" y1="{y}" y2="{y}" stroke="{color}" '
            f'stroke-width="4"/><circle cx="{x(p50):.1f}" cy="{y}" r="4" fill="{color}"/>'
            f'<rect x="{x(p90) - 1:.1f}" y="{y - 6}" width="2" height="12" fill="#333"/>'
            f'<circle cx="{x(p99):.1f}" cy="{y}" r="3" fill="#fff" stroke="{color}"/></g>'
        )
    return (
        f'<svg class="delays" viewBox="0 0 {label_w + plot_w + 40} {row_h * len(rows) + 22}" role="img">'
        f'{"".join(parts)}</svg><p class="legend">each row: filled dot p50, bar p90, open dot p99 of the '
        f"delay from the launch call's start to the op's start</p>"
    )
