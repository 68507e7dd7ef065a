"""The report: one self-contained HTML file (styles, pictures and script inline; nothing fetched) for one trace or
several.

Per trace: the summary and facts, the findings, the anatomy bar, a zoomable timeline of the median and the slowest
measured step (anatomy terms on a lane of their own and shaded behind the GPU streams, launch calls, every op by
class), kernel classes and top kernels, launch-delay distributions; for several traces first their comparison
(`gapprof compare`'s table and explanations) and their anatomy bars side by side. Pictures are inline SVG
(report_pictures); every mark carries its values for hover (an SVG title, shown by the script as a tooltip). Numbers are
formatted as `gapprof attribute` prints them (gapprof.render.text). A print stylesheet drops the controls and
starts each trace on a page.
"""

from importlib import resources

import polars as pl
from gapprof.analysis import launch_delays
from gapprof.analysis.attribution import class_table, facts_table, kernel_table, summary_table
from gapprof.analysis.comparison import sections
from gapprof.analysis.findings import FINDINGS_NOTE, findings
from gapprof.analysis.views.report_pictures import anatomy_bars, delay_chart, esc, mean_terms, timelines

from gapprof import render

TOP_KERNELS = 15
LONG_NAME = 60  # characters of a name shown whole on screen


def table_html(content, caption: str = "") -> str:
    """A section's content (polars frame, dict or gapprof.render.Table) as an HTML table, numbers as the text
    formats show them."""
    if isinstance(content, dict):
        columns, rows, show = [], [(k, int(v) if _whole(v) else v) for k, v in content.items()], render.text
    elif isinstance(content, render.Table):
        columns, rows, show = content.columns, content.rows, content.text
    else:
        columns, rows, show = content.columns, _whole_as_int(content), render.text
    head = f"<thead><tr>{''.join(f'<th>{esc(c)}</th>' for c in columns)}</tr></thead>" if columns else ""
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
    whole = [
        c
        for c, dtype in frame.schema.items()
        if dtype.is_float() and frame[c].drop_nulls().len() and (frame[c].drop_nulls() % 1 == 0).all()
    ]
    return frame.with_columns(pl.col(whole).cast(pl.Int64)).rows()


def trace_section(viewed, anchor: str) -> str:
    result = viewed.result
    n = result.measured.height
    meta = result.frames.trace.meta
    about = ", ".join(f"{k} {meta[k]}" for k in ("model", "runtime", "attn", "ctx", "dtype") if meta.get(k))
    found = findings(result)
    items = (
        "".join(
            f"<li><b>{esc(f.title)}</b> ({f.ms:,.2f} ms a step): {esc(f.evidence)}. <i>Try:</i> {esc(f.knob)}.</li>"
            for f in found
        )
        or "<li>No finding: nothing stands out.</li>"
    )
    ops = launch_delays.launched_ops(result)
    launched = launch_delays.launches(ops)
    per_class = launch_delays.by_class(ops, n)
    notes = [*result.notes, launch_delays.NOTE, FINDINGS_NOTE]
    return (
        f'<section class="trace" id="{anchor}"><h2>{esc(viewed.label)}</h2>'
        f'<p class="about">{esc(result.device_name or "unknown GPU")}; {n} measured steps'
        f"{'; ' + esc(about) if about else ''}</p>"
        f"<h3>Summary</h3>{table_html(summary_table(result))}"
        f'<h3>Findings</h3><ol class="findings">{items}</ol>'
        f"<h3>Anatomy of a step (mean)</h3>{anatomy_bars([(viewed.label, mean_terms(result))])}"
        f"<h3>Timeline</h3>{timelines(result)}"
        f"<h3>Kernel classes</h3>{table_html(class_table(result))}"
        f"<h3>Top kernels</h3>{table_html(kernel_table(result).head(TOP_KERNELS))}"
        f"<h3>Launch delays</h3>{delay_chart(per_class)}"
        f"{table_html(launch_delays.in_us(launch_delays.by_api(launched, n)), 'by launch API')}"
        f"{table_html(launch_delays.in_us(per_class), 'by launch API and class (graph nodes from their launch)')}"
        f"<details><summary>per step</summary>{table_html(launch_delays.in_us(launch_delays.by_step(launched)))}"
        f"</details>"
        f"<h3>Facts</h3>{table_html(facts_table(result))}"
        f'<h3>Notes</h3><ul class="notes">{"".join(f"<li>{esc(note)}</li>" for note in notes)}</ul></section>'
    )


def comparison_section(viewed: list, comparison) -> str:
    """`gapprof compare`'s table and explanations (comparison: analysis.cross_gpu.Columns), the traces' anatomy
    bars above them."""
    shown, sentences = sections(comparison.columns)
    tables = "".join(f"<h3>{esc(title)}</h3>{table_html(content)}" for title, content in shown)
    notes = "".join(f"<li>{esc(note)}</li>" for note in [*comparison.notes, *sentences])
    bars = anatomy_bars([(v.label, mean_terms(v.result)) for v in viewed])
    return f'<section id="comparison"><h2>Comparison</h2>{bars}{tables}<ul class="notes">{notes}</ul></section>'


def projection_section(viewed: list, projections: list) -> str:
    """`gapprof project`'s table, explanations, kernel-model parameters and notes for each trace (projections:
    analysis.cross_gpu.Columns, one per trace)."""
    parts = []
    for v, projected in zip(viewed, projections):
        shown, sentences = sections(projected.columns, "project")
        tables = "".join(
            f"<h4>{esc(title)}</h4>{table_html(content)}" for title, content in [*shown, *projected.sections]
        )
        notes = "".join(f"<li>{esc(note)}</li>" for note in [*projected.notes, *sentences])
        parts.append(f'<h3>{esc(v.label)}</h3>{tables}<ul class="notes">{notes}</ul>')
    return f'<section id="projection"><h2>Projection</h2>{"".join(parts)}</section>'


class HtmlReport:
    name = "html"
    extensions = (".html", ".htm")
    several = True
    projects = True

    def render(self, viewed: list, comparison=None, projections=()) -> bytes:
        assets = resources.files(__package__)
        style = (assets / "report.css").read_text()
        script = (assets / "report.js").read_text()
        anchors = [f"trace-{i}" for i in range(len(viewed))]
        toc = "".join(f'<a href="#{a}">{esc(v.label)}</a> ' for a, v in zip(anchors, viewed))
        body = (
            (comparison_section(viewed, comparison) if comparison is not None else "")
            + (projection_section(viewed, projections) if projections else "")
            + "".join(trace_section(v, a) for v, a in zip(viewed, anchors))
        )
        title = ", ".join(v.label for v in viewed)
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>gapprof: {esc(title)}</title><style>{style}</style></head><body>"
            f"<header><h1>gapprof report</h1><p>wall = busy + starved + latency + head + tail, per decode step"
            f"{'; busy = floor + excess' if any(v.result.floor for v in viewed) else ''}.</p>"
            f'<nav>{toc}</nav><div id="tip" hidden></div></header><main>{body}</main>'
            f"<script>{script}</script></body></html>\n"
        ).encode()
