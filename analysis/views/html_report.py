"""The report: one self-contained HTML file (styles, pictures and script inline; nothing fetched) for one trace or
several.

Per trace: the summary and facts, the findings, the anatomy bar, a zoomable timeline of the median and the slowest
measured step (anatomy terms on a lane of their own and shaded behind the GPU streams, launch calls, every op by
class), kernel classes and top kernels, launch-delay distributions; for several traces first their comparison
(`gapprof compare`'s table and explanations) and their anatomy bars side by side. Pictures are inline SVG drawn
here; every mark carries its values for hover (an SVG title, shown by the script as a tooltip). Numbers are
formatted as `gapprof attribute` prints them (gapprof.render.text). A print stylesheet drops the controls and
starts each trace on a page.
"""
import html
import math
from importlib import resources

import polars as pl

from gapprof import render
from gapprof.analysis import api, kernels, launch_delays
from gapprof.analysis.anatomy_intervals import intervals
from gapprof.analysis.attribution import class_table, facts_table, kernel_table, summary_table
from gapprof.analysis.findings import FINDINGS_NOTE, findings

TERM_COLORS = {"floor": "#1f77b4", "excess": "#9ecae1", "busy": "#4a90c8", "starved": "#d62728",
               "latency": "#ff9896", "head": "#7f7f7f", "tail": "#c7c7c7", "spill": "#ffbb78"}
CLASS_COLORS = ("#1f77b4", "#9467bd", "#2ca02c", "#bcbd22", "#17becf", "#8c564b", "#e377c2", "#ff7f0e",
                "#d62728", "#7f7f7f", "#393b79")  # kernels.CLASSES, in order
CALL_COLORS = {"launch": "#2ca02c", "graph launch": "#2ca02c", "sync": "#9467bd", "memcpy": "#8c564b"}
OTHER_CALL = "#bcbd22"
TOP_KERNELS = 15
LONG_NAME = 60  # characters of a name shown whole on screen
LANE_PX = 20
WIDTH = 1000  # timeline units across a step; the script zooms by changing the viewBox


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def table_html(content, caption: str = "") -> str:
    """A section's content (polars frame, dict or gapprof.render.Table) as an HTML table, numbers as the text
    formats show them."""
    if isinstance(content, dict):
        columns, rows, show = [], [(k, int(v) if _whole(v) else v) for k, v in content.items()], render.text
    elif isinstance(content, render.Table):
        columns, rows, show = content.columns, content.rows, content.text
    else:
        columns, rows, show = content.columns, _whole_as_int(content), render.text
    head = f'<thead><tr>{"".join(f"<th>{esc(c)}</th>" for c in columns)}</tr></thead>' if columns else ""
    body = "".join("<tr>" + "".join(_cell(v, show, shorten=bool(columns)) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}{head}<tbody>{body}</tbody></table></div>'


def _cell(value, show, shorten: bool) -> str:
    """A table cell: numbers right-aligned; a long name in a frame cut to the column's width on screen, whole on
    hover and in print."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{esc(show(value))}</td>'
    text = esc(show(value))
    if shorten and len(text) > LONG_NAME:
        return f'<td class="long" title="{text}">{text}</td>'
    return f"<td>{text}</td>"


def _whole(value) -> bool:
    return isinstance(value, float) and value.is_integer()


def _whole_as_int(frame: pl.DataFrame) -> list[tuple]:
    """A frame's rows with each float column whose values are all whole (a count's mean over steps that all have
    it) as integers, as the text formats show them."""
    whole = [c for c, dtype in frame.schema.items() if dtype.is_float()
             and frame[c].drop_nulls().len() and (frame[c].drop_nulls() % 1 == 0).all()]
    return frame.with_columns(pl.col(whole).cast(pl.Int64)).rows()


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
            parts.append(f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{TERM_COLORS[term]}">'
                         f'<title>{esc(label)}: {term} {_ms(ns)} a step ({100 * ns / terms["wall"]:.1f}% of wall)'
                         f'</title></rect>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + bar_h * 0.68:.1f}">{_ms(terms["wall"])}</text>')
    height = 16 + len(rows) * (bar_h + 12)
    legend = "".join(f'<span class="key" style="background:{TERM_COLORS[t]}"></span>{t} '
                     for t in ("floor", "excess", "busy", "starved", "latency", "head", "tail")
                     if any(t in terms for _, terms in rows))
    return (f'<svg class="bars" viewBox="0 0 {label_w + bar_w + 110} {height}" role="img">{"".join(parts)}</svg>'
            f'<p class="legend">{legend}</p>')


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
    chosen = {"median step": ordered.row(ordered.height // 2, named=True),
              "slowest step": ordered.row(ordered.height - 1, named=True)}
    if chosen["median step"]["step"] == chosen["slowest step"]["step"]:
        del chosen["slowest step"]
    return list(chosen.items())


def _rect(x0: float, x1: float, y: float, h: float, fill: str, title: str, cls: str = "") -> str:
    css_class = f' class="{cls}"' if cls else ""
    return (f'<rect x="{x0:.3f}" y="{y}" width="{x1 - x0:.3f}" height="{h}" fill="{fill}"{css_class}>'
            f'<title>{esc(title)}</title></rect>')


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
        marks.append(_rect(x(start), x(end), LANE_PX + 2, LANE_PX - 4, CALL_COLORS.get(category, OTHER_CALL),
                           f"{name} {(end - start) / 1000:,.3f} µs"))
    lane_of = {s: 2 + i for i, s in enumerate(streams)}
    for name, cls, stream, start, end, gap, starved in step_ops.select(
            "name", pl.col("class").cast(pl.String), "streamId", "start", "end", "gap", "starved").iter_rows():
        before = f"; {'starved' if starved else 'latency'} gap before {gap / 1000:,.3f} µs" if gap else ""
        marks.append(_rect(x(start), x(end), lane_of[stream] * LANE_PX + 2, LANE_PX - 4,
                           CLASS_COLORS[kernels.CLASSES.index(cls)],
                           f"{name} [{cls}] {(end - start) / 1000:,.3f} µs{before}"))
    labels = "".join(f'<div class="lane">{esc(lane)}</div>' for lane in lanes)
    return (f'<div class="timeline" data-wall-ms="{wall / 1e6}">'
            f'<div class="controls"><button data-zoom="2">zoom in</button><button data-zoom="0.5">zoom out</button>'
            f'<button data-zoom="0">whole step</button> wheel zooms, drag pans</div>'
            f'<div class="lanes"><div class="labels">{labels}</div><div class="plot">'
            f'<svg class="steps" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="none" '
            f'style="height:{height}px">{"".join(marks)}</svg>'
            f'<svg class="axis"></svg></div></div></div>')


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
        out.append(f'<h4>{title}: step {row["index"]}, wall {_ms(row["wall"])}, starved {_ms(row["starved"])}, '
                   f'latency {_ms(row["latency"])}</h4>')
        out.append(step_timeline(result, row, ops.filter(pl.col("step") == row["step"]),
                                 calls.filter(pl.col("step") == row["step"])))
    legend = "".join(f'<span class="key" style="background:{CLASS_COLORS[i]}"></span>{esc(c)} '
                     for i, c in enumerate(kernels.CLASSES) if c in set(ops["class"].cast(pl.String).to_list()))
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
    x = lambda ns: label_w + plot_w * (math.log10(max(ns, 10 ** lo)) - lo) / (hi - lo)  # noqa: E731
    parts = []
    for decade in range(lo, hi + 1):
        parts.append(f'<line x1="{x(10 ** decade):.1f}" x2="{x(10 ** decade):.1f}" y1="0" '
                     f'y2="{row_h * len(rows)}" class="grid"/><text x="{x(10 ** decade):.1f}" '
                     f'y="{row_h * len(rows) + 14}" text-anchor="middle">{_duration(10 ** decade)}</text>')
    for i, r in enumerate(rows):
        y = i * row_h + row_h / 2
        p50, p90, p99 = (r[f"delay_p{p}_ns"] for p in launch_delays.PERCENTILES)
        title = (f"{r['api']} {r['class']}: {r['ops_per_step']:,.1f} ops a step, delay p50 {p50 / 1000:,.3f}, "
                 f"p90 {p90 / 1000:,.3f}, p99 {p99 / 1000:,.3f} µs")
        color = CLASS_COLORS[kernels.CLASSES.index(r["class"])]
        parts.append(f'<g><title>{esc(title)}</title><text x="{label_w - 8}" y="{y + 4}" text-anchor="end">'
                     f'{esc(r["api"])} · {esc(r["class"])}</text>'
                     f'<line x1="{x(p50):.1f}" x2="{x(p99):.1f}" y1="{y}" y2="{y}" stroke="{color}" '
                     f'stroke-width="4"/><circle cx="{x(p50):.1f}" cy="{y}" r="4" fill="{color}"/>'
                     f'<rect x="{x(p90) - 1:.1f}" y="{y - 6}" width="2" height="12" fill="#333"/>'
                     f'<circle cx="{x(p99):.1f}" cy="{y}" r="3" fill="#fff" stroke="{color}"/></g>')
    return (f'<svg class="delays" viewBox="0 0 {label_w + plot_w + 40} {row_h * len(rows) + 22}" role="img">'
            f'{"".join(parts)}</svg><p class="legend">each row: filled dot p50, bar p90, open dot p99 of the '
            f'delay from the launch call\'s start to the op\'s start</p>')


def trace_section(viewed, anchor: str) -> str:
    result = viewed.result
    n = result.measured.height
    meta = result.frames.trace.meta
    about = ", ".join(f"{k} {meta[k]}" for k in ("model", "runtime", "attn", "ctx", "dtype") if meta.get(k))
    found = findings(result)
    items = "".join(f"<li><b>{esc(f.title)}</b> ({f.ms:,.2f} ms a step): {esc(f.evidence)}. "
                    f"<i>Try:</i> {esc(f.knob)}.</li>" for f in found) or "<li>No finding: nothing stands out.</li>"
    ops = launch_delays.launched_ops(result)
    launched = launch_delays.launches(ops)
    per_class = launch_delays.by_class(ops, n)
    notes = [*result.notes, launch_delays.NOTE, FINDINGS_NOTE]
    return (f'<section class="trace" id="{anchor}"><h2>{esc(viewed.label)}</h2>'
            f'<p class="about">{esc(result.device_name or "unknown GPU")}; {n} measured steps'
            f'{"; " + esc(about) if about else ""}</p>'
            f'<h3>Summary</h3><div class="summary">{table_html(summary_table(result))}</div>'
            f'<h3>Findings</h3><ol class="findings">{items}</ol>'
            f'<h3>Anatomy of a step (mean)</h3>{anatomy_bars([(viewed.label, mean_terms(result))])}'
            f'<h3>Timeline</h3>{timelines(result)}'
            f'<h3>Kernel classes</h3>{table_html(class_table(result))}'
            f'<h3>Top kernels</h3>{table_html(kernel_table(result).head(TOP_KERNELS))}'
            f'<h3>Launch delays</h3>{delay_chart(per_class)}'
            f'{table_html(launch_delays.in_us(launch_delays.by_api(launched, n)), "by launch API")}'
            f'{table_html(launch_delays.in_us(per_class), "by launch API and class (graph nodes from their launch)")}'
            f'<details><summary>per step</summary>{table_html(launch_delays.in_us(launch_delays.by_step(launched)))}'
            f'</details>'
            f'<h3>Facts</h3>{table_html(facts_table(result))}'
            f'<h3>Notes</h3><ul class="notes">{"".join(f"<li>{esc(note)}</li>" for note in notes)}</ul></section>')


def comparison_section(viewed: list, comparison) -> str:
    from gapprof.analysis.comparison import sections

    shown, sentences = sections(comparison.columns)
    tables = "".join(f"<h3>{esc(title)}</h3>{table_html(content)}" for title, content in shown)
    notes = "".join(f"<li>{esc(note)}</li>" for note in [*comparison.notes, *sentences])
    bars = anatomy_bars([(v.label, mean_terms(v.result)) for v in viewed])
    return (f'<section id="comparison"><h2>Comparison</h2>{bars}{tables}<ul class="notes">{notes}</ul></section>')


class HtmlReport:
    name = "html"
    extensions = (".html", ".htm")
    several = True

    def render(self, viewed: list, comparison=None) -> bytes:
        assets = resources.files(__package__)
        style = (assets / "report.css").read_text()
        script = (assets / "report.js").read_text()
        anchors = [f"trace-{i}" for i in range(len(viewed))]
        toc = "".join(f'<a href="#{a}">{esc(v.label)}</a> ' for a, v in zip(anchors, viewed))
        body = (comparison_section(viewed, comparison) if comparison is not None else "") + "".join(
            trace_section(v, a) for v, a in zip(viewed, anchors))
        title = ", ".join(v.label for v in viewed)
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>gapprof: {esc(title)}</title><style>{style}</style></head><body>'
                f'<header><h1>gapprof report</h1><p>wall = busy + starved + latency + head + tail, per decode step'
                f'{"; busy = floor + excess" if any(v.result.floor for v in viewed) else ""}.</p>'
                f'<nav>{toc}</nav><div id="tip" hidden></div></header><main>{body}</main>'
                f'<script>{script}</script></body></html>\n').encode()
