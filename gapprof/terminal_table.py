"""Aligned text tables fitted to a width (the terminal's): columns two spaces apart, numbers right-aligned.

Fitting, in order: (1) while the table is wider than the width, its text columns are narrowed, the last first,
each down to max(MIN_TEXT, 2/5 of the width) or its own width; text longer than its column is shortened in
the middle (start...end) or, in key/value tables, wrapped onto more lines. (2) A table still too wide is cut
into blocks of columns, in order, each holding the first (key) column and as many of the next as fit. A
table that no block can fit (the key column and one more already wider than the width) stays whole.
"""

import textwrap
from itertools import zip_longest

GAP = "  "
ELLIPSIS = "..."
MIN_TEXT = 20


def shorten(value: str, width: int, head: int | None = None) -> str:
    """value, or its first `head` characters (default: half of what fits) and its end joined by an ellipsis in
    `width` characters (width > len(ELLIPSIS))."""
    if len(value) <= width:
        return value
    kept = width - len(ELLIPSIS)
    head = (kept + 1) // 2 if head is None else head
    return value[:head] + ELLIPSIS + value[len(value) - (kept - head) :]


def shorten_distinct(values: list[str], width: int) -> list[str]:
    """Each value shortened as `shorten` does, except that different values never print alike (two kernels whose
    names differ only in the middle): where they would, their ellipsis moves towards the start or the end, as
    little as it takes, to keep where they differ."""
    out = [shorten(v, width) for v in values]
    alike: dict[str, set[str]] = {}
    for value, short in zip(values, out):
        alike.setdefault(short, set()).add(value)
    kept = width - len(ELLIPSIS)
    for short, originals in alike.items():
        if len(originals) < 2:
            continue
        taken = set(out) - {short}
        for head in sorted(range(kept + 1), key=lambda h: abs(h - (kept + 1) // 2)):
            moved = {v: shorten(v, width, head) for v in originals}
            if len(set(moved.values())) == len(originals) and not taken & set(moved.values()):
                out = [moved[v] if s == short else s for v, s in zip(values, out)]
                break
    return out


def wrapped(value: str, width: int) -> list[str]:
    """value on lines of at most `width` characters, broken at spaces where it can be."""
    return [value] if len(value) <= width else textwrap.wrap(value, width, break_on_hyphens=False)


def table(
    title: str,
    header: list[str],
    cells: list[list[str]],
    numeric: list[bool],
    width: int | None,
    *,
    wrap: bool = False,
    shorten_text: bool = True,
) -> str:
    """The title, its underline and the rows (cells as text) fitted to `width` columns (None: as wide as they
    are). wrap: wrap long text (key/value tables) instead of shortening it; shorten_text=False keeps text whole."""
    natural = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    width = width or _span(natural)
    text_columns = [i for i, num in enumerate(numeric) if not num] if wrap or shorten_text else []
    widths = _narrowed(natural, text_columns, width)
    blocks = [_block([header, *cells], numeric, widths, columns, wrap) for columns in _blocks(widths, width)]
    return "\n".join([title, "-" * len(title), "\n\n".join(blocks)])


def _span(widths: list[int]) -> int:
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _narrowed(widths: list[int], text_columns: list[int], width: int) -> list[int]:
    """Column widths after step (1): text columns narrowed, the last first, while the table is too wide."""
    widths, floor = list(widths), max(MIN_TEXT, width * 2 // 5)
    for i in reversed(text_columns):
        widths[i] = max(min(widths[i], floor), widths[i] - max(_span(widths) - width, 0))
    return widths


def _blocks(widths: list[int], width: int) -> list[list[int]]:
    """Column indices of each block of step (2)."""
    if _span(widths) <= width or len(widths) < 3 or widths[0] + len(GAP) + max(widths[1:]) > width:
        return [list(range(len(widths)))]
    blocks = [[0]]
    for i in range(1, len(widths)):
        if len(blocks[-1]) > 1 and _span([widths[j] for j in blocks[-1]] + [widths[i]]) > width:
            blocks.append([0])
        blocks[-1].append(i)
    return blocks


def _block(rows: list[list[str]], numeric: list[bool], widths: list[int], columns: list[int], wrap: bool) -> str:
    lines = []
    shortened = {i: shorten_distinct([row[i] for row in rows], widths[i]) for i in columns if not wrap}
    for r, row in enumerate(rows):
        cells = [wrapped(row[i], widths[i]) if wrap else [shortened[i][r]] for i in columns]
        for parts in zip_longest(*cells, fillvalue=""):
            lines.append(
                GAP.join(
                    part.rjust(widths[i]) if numeric[i] else part.ljust(widths[i]) for part, i in zip(parts, columns)
                ).rstrip()
            )
    return "\n".join(lines)
