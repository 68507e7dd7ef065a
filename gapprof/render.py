"""One rendering layer: sections (title, content) and notes to aligned text, Markdown, CSV or JSON.

Content is a dict (a key/value table), a polars DataFrame (used through its columns, rows and CSV writer, so this
module needs no polars and serves the GPU side too), or a Table (rows of raw values of mixed kinds, with their
own display format). Values stay raw in CSV and JSON; only the text formats round them (and show a column of
whole numbers without decimals). The table format fits the terminal's width (`gapprof.terminal_table`; COLUMNS
sets it); Markdown, CSV and JSON are never shortened. Notes follow the tables in the text formats and sit under
"notes" in JSON; CSV carries tables only, one per file.
"""

import csv
import io
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from gapprof import terminal_table
from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.output_files import make_folder, write_files

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


def _whole(value) -> bool:
    return isinstance(value, float) and value.is_integer()


def _counts_as_int(content, header: list[str], rows: list[tuple]) -> list[tuple]:
    """For the text formats: a float column whose values are all whole numbers (a count's mean over steps that all
    have the same count, say) shows as integers, and so does a whole float in a key/value table; CSV and JSON
    keep the raw values."""
    if isinstance(content, dict):
        return [(k, int(v) if _whole(v) else v) for k, v in rows]
    whole = [
        bool(rows) and all(row[i] is None or _whole(row[i]) for row in rows) and any(_whole(row[i]) for row in rows)
        for i in range(len(header))
    ]
    return [tuple(int(v) if whole[i] and v is not None else v for i, v in enumerate(row)) for row in rows]


def markdown_table(columns: list[str], rows: list, show: Callable = text) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(show(v).replace("|", "\\|") for v in row) + " |" for row in rows])


def _aligned(title: str, content, width: int | None, full_names: bool) -> str:
    header, rows, show = _parts(content)
    rows = _counts_as_int(content, header, rows)
    cells = [[show(v) for v in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
        for i in range(len(header))
    ]
    return terminal_table.table(
        title, header, cells, numeric, width, wrap=isinstance(content, dict), shorten_text=not full_names
    )


def _markdown(title: str, content) -> str:
    header, rows, show = _parts(content)
    return f"## {title}\n\n" + markdown_table(header, _counts_as_int(content, header, rows), show)


def _csv_table(content) -> str:
    """One table as CSV: a header row, then raw values (an empty field for None)."""
    if hasattr(content, "write_csv"):  # a polars DataFrame writes itself
        return content.write_csv()
    header, rows, _ = _parts(content)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_value(v) for v in row] for row in rows])
    return out.getvalue()


def _csv_value(value):
    return "" if value is None else str(value)


def _json_value(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def render(
    sections: list[tuple[str, object]], fmt: str, notes: list[str], width: int | None = None, full_names: bool = False
) -> str:
    """One document holding every section, in order, and the notes, in table, markdown or json. width: fit the
    table format to it (None: no limit); full_names: never shorten its text, only wrap and split it."""
    if fmt == "json":
        doc: dict[str, object] = {}
        for title, content in sections:
            header, rows, _ = _parts(content)
            doc[title] = (
                {k: _json_value(v) for k, v in rows}
                if isinstance(content, dict)
                else [{k: _json_value(v) for k, v in zip(header, row)} for row in rows]
            )
        doc["notes"] = notes
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "markdown":
        return "\n\n".join(_markdown(title, content) for title, content in sections) + "\n" + _notes(notes, None)
    document = "\n\n".join(_aligned(title, content, width, full_names) for title, content in sections) + "\n"
    return document + _notes(notes, width)


def _notes(notes: list[str], width: int | None) -> str:
    lines = [line for note in notes for line in (terminal_table.wrapped(note, width) if width else [note])]
    return "\n" + "\n".join(lines) + "\n" if lines else ""


def emit(
    sections: list[tuple[str, object]],
    fmt: str,
    notes: list[str],
    output: Path | None,
    *,
    full_names: bool = False,
    select: str | None = None,
    inputs=(),
) -> None:
    """The sections and notes in `fmt` to stdout or -o FILE (said on stderr); the table format fitted to the
    terminal's width. CSV goes one table per file (see `_emit_csv`); `select` names the command's option that
    picks one table, for the error when there are several. No file written may be one of `inputs` (the files the
    command read)."""
    if fmt == "csv":
        _emit_csv(sections, output, select, inputs)
    elif output is not None and output.is_dir():
        raise GapprofError(f"-o {output} is a folder; only --format csv writes to a folder (one CSV per table)")
    else:
        width = shutil.get_terminal_size().columns if fmt == "table" else None
        _write({output: render(sections, fmt, notes, width, full_names)}, inputs)


def csv_folder(output: Path | None) -> bool:
    """Whether -o names a folder for one CSV per table: an existing folder, or a new path without a suffix."""
    return output is not None and (output.is_dir() or not (output.exists() or output.suffix))


def _emit_csv(sections: list[tuple[str, object]], output: Path | None, select: str | None, inputs) -> None:
    """-o DIR (an existing folder, or a new path without a suffix) gets DIR/<table>.csv per table, all replaced
    together; stdout and -o FILE take exactly one table."""
    names = [_file_stem(title) for title, _ in sections]
    if output is not None and csv_folder(output):
        make_folder(output)
        _write({output / f"{name}.csv": _csv_table(content) for name, (_, content) in zip(names, sections)}, inputs)
    elif len(sections) == 1:
        _write({output: _csv_table(sections[0][1])}, inputs)
    else:
        choose = f", or one of them with {select} NAME" if select else ""
        raise GapprofError(
            f"--format csv writes one table per file and this output has {len(sections)} "
            f"({', '.join(names)}): pass -o DIR for DIR/<table>.csv each{choose}"
        )


def _file_stem(title: str) -> str:
    """A section title as a file name: `modules (per step)` -> modules-per-step."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _write(documents: dict[Path | None, str], inputs) -> None:
    """Data to stdout (the path None), or to files written as one set (each said on stderr)."""
    if None in documents:
        try:
            click.echo(documents[None], nl=False)
            sys.stdout.flush()
        except OSError as error:
            # Nothing more can reach stdout: point it at devnull so that the flush at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise GapprofError(f"stdout: cannot write ({error.strerror or error})") from None
        return
    for path in write_files({path: text for path, text in documents.items() if path is not None}, inputs):
        progress(f"wrote {path}")
