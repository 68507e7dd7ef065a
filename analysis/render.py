"""Render named tables as aligned text, CSV, JSON or Markdown. Floats are rounded only in text formats;
CSV and JSON carry full precision."""
import json
import math
from pathlib import Path

import click
import polars as pl

from gapprof.log import progress

FORMATS = ("table", "csv", "json", "markdown")

Section = tuple[str, pl.DataFrame | dict]


def _rows(content: pl.DataFrame | dict) -> tuple[list[str], list[tuple]]:
    if isinstance(content, dict):
        return ["key", "value"], list(content.items())
    return content.columns, content.rows()


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _aligned(title: str, content) -> str:
    header, rows = _rows(content)
    cells = [header] + [[_text(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for row in cells:
        lines.append("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip())
    return "\n".join(lines)


def _markdown(title: str, content) -> str:
    header, rows = _rows(content)
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_text(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _csv(title: str, content) -> str:
    frame = pl.DataFrame({"key": list(content), "value": [str(v) for v in content.values()]}) \
        if isinstance(content, dict) else content
    return f"# {title}\n" + frame.write_csv().rstrip("\n")


def _json_value(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def render(sections: list[Section], fmt: str, notes: list[str]) -> str:
    """One document holding every section, in order."""
    if fmt == "json":
        doc = {title: ({k: _json_value(v) for k, v in content.items()} if isinstance(content, dict)
                       else [{k: _json_value(v) for k, v in row.items()} for row in content.iter_rows(named=True)])
               for title, content in sections}
        doc["notes"] = notes
        return json.dumps(doc, indent=2) + "\n"
    block = {"table": _aligned, "markdown": _markdown, "csv": _csv}[fmt]
    return "\n\n".join(block(title, content) for title, content in sections) + "\n"


def emit(document: str, output: Path | None) -> None:
    """Data to stdout, or to -o FILE (said on stderr)."""
    if output is None:
        click.echo(document, nl=False)
    else:
        output.write_text(document)
        progress(f"wrote {output}")
