"""One rendering layer: sections (title, content) and notes to aligned text, Markdown, CSV or JSON.

Content is a dict (a key/value table), a polars DataFrame (used through its columns, rows and CSV writer, so
this module needs no polars and serves the GPU side too), or a Table (rows of raw values of mixed kinds, with
their own display format). Values stay raw in CSV and JSON; only the text formats round them. Notes follow the
tables in the text formats and sit under "notes" in JSON; CSV carries tables only.
"""
import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from gapprof.log import progress

FORMATS = ("table", "csv", "json", "markdown")


def text(value) -> str:
    """A value as the text formats show it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """Rows of raw values with a header; `text` formats a value for the text formats."""
    columns: list[str]
    rows: list[tuple]
    text: Callable = text


def _parts(content) -> tuple[list[str], list[tuple], Callable]:
    if isinstance(content, dict):
        return ["key", "value"], list(content.items()), text
    if isinstance(content, Table):
        return content.columns, content.rows, content.text
    return content.columns, content.rows(), text


def markdown_table(columns: list[str], rows: list, show: Callable = text) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(show(v).replace("|", "\\|") for v in row) + " |" for row in rows])


def _aligned(title: str, content) -> str:
    header, rows, show = _parts(content)
    cells = [header] + [[show(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for row in cells:
        lines.append("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip())
    return "\n".join(lines)


def _markdown(title: str, content) -> str:
    header, rows, show = _parts(content)
    return f"## {title}\n\n" + markdown_table(header, rows, show)


def _csv(title: str, content) -> str:
    if hasattr(content, "write_csv"):  # a polars DataFrame writes itself
        return f"# {title}\n" + content.write_csv().rstrip("\n")
    header, rows, _ = _parts(content)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_value(v) for v in row] for row in rows])
    return f"# {title}\n" + out.getvalue().rstrip("\n")


def _csv_value(value):
    return "" if value is None else str(value)


def _json_value(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def render(sections: list[tuple[str, object]], fmt: str, notes: list[str]) -> str:
    """One document holding every section, in order, and the notes."""
    if fmt == "json":
        doc = {}
        for title, content in sections:
            header, rows, _ = _parts(content)
            doc[title] = ({k: _json_value(v) for k, v in rows} if isinstance(content, dict)
                          else [{k: _json_value(v) for k, v in zip(header, row)} for row in rows])
        doc["notes"] = notes
        return json.dumps(doc, indent=2) + "\n"
    block = {"table": _aligned, "markdown": _markdown, "csv": _csv}[fmt]
    document = "\n\n".join(block(title, content) for title, content in sections) + "\n"
    if fmt in ("table", "markdown") and notes:
        document += "\n" + "\n".join(notes) + "\n"
    return document


def emit(document: str, output: Path | None) -> None:
    """Data to stdout, or to -o FILE (said on stderr)."""
    if output is None:
        click.echo(document, nl=False)
    else:
        output.write_text(document)
        progress(f"wrote {output}")
