"""JSON read as a stream of values, in chunks of text, each value decoded by the standard library's C scanner
(`json.JSONDecoder.raw_decode`): a file of any size holds one chunk in memory, never the document.

Numbers with a fraction or exponent are kept as their text (`Fraction`), never as floats, so that a reader can
round them exactly.
"""

import gzip
import io
import json
import re
from contextlib import contextmanager, nullcontext
from pathlib import Path

from gapprof.analysis.readers.compressed import GZIP_MAGIC


class Fraction(str):
    """The text of a JSON number with a fraction or exponent, kept as written so that no float ever rounds it (a
    double near 5e12 µs cannot hold every ns); its own type, so that a JSON string is never taken for a number."""


NUMBERS = (int, Fraction)  # what a time may be as parsed


# Text decoded at a time: events are parsed one by one from it, so memory holds one chunk, not the file.
CHUNK_CHARS = 1 << 24
_DECODER = json.JSONDecoder(parse_float=Fraction)
_SPACE = re.compile(r"[\s,]*")  # what separates values, as the walk below reads it


class Text:
    """JSON text read in chunks, values decoded one at a time with the standard library's C scanner."""

    def __init__(self, stream):
        self.stream, self.text, self.at, self.ended = stream, "", 0, False

    def _more(self) -> bool:
        chunk = "" if self.ended else self.stream.read(CHUNK_CHARS)
        self.ended = not chunk
        self.text, self.at = self.text[self.at :] + chunk, 0
        return bool(chunk)

    def next_char(self) -> str:
        """The next character after spaces and commas ('' at the end), not consumed."""
        while True:
            self.at = _SPACE.match(self.text, self.at).end()
            if self.at < len(self.text) or not self._more():
                return self.text[self.at : self.at + 1]

    def take(self, char: str) -> None:
        if self.next_char() != char:
            raise json.JSONDecodeError(f"expected {char!r}", self.text, self.at)
        self.at += 1

    def value(self):
        """The JSON value that starts here. One that reaches the end of the text read so far is decoded again with
        more text, so a number is never cut short at a chunk's edge."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.at)
                if end < len(self.text) or self.ended:
                    self.at = end
                    return value
            except json.JSONDecodeError:
                if self.ended:
                    raise
            self._more()

    def items(self):
        """The values of the list that starts here (one scan and one decode per value: the hot loop of a read)."""
        self.take("[")
        while True:
            self.at = _SPACE.match(self.text, self.at).end()
            if self.at == len(self.text):
                if not self._more():
                    raise json.JSONDecodeError("unterminated list", self.text, self.at)
                continue
            if self.text[self.at] == "]":
                self.at += 1
                return
            yield self.value()


@contextmanager
def text(path: Path):
    """The file at `path` as UTF-8 text in chunks, gunzipped where it is gzip."""
    with open(path, "rb") as raw:
        packed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        with gzip.open(raw) if packed else nullcontext(raw) as binary:
            yield Text(io.TextIOWrapper(binary, encoding="utf-8"))


def walk(path: Path, found: dict):
    """The events of the Chrome trace at `path`, one at a time; `found` gets whether it has an event list and the
    value of every other key (deviceProperties among them). The file is a list of events or an object with a
    traceEvents list among its keys."""
    with text(path) as stream:
        if stream.next_char() == "[":
            found["events"] = True
            yield from stream.items()
            return
        stream.take("{")
        while stream.next_char() != "}":
            key = stream.value()
            stream.take(":")
            if stream.next_char() == "[" and key == "traceEvents":
                found["events"] = True
                yield from stream.items()
            else:
                found[key] = stream.value()
        stream.at += 1
        if stream.next_char():
            raise json.JSONDecodeError("extra data after the trace", stream.text, stream.at)


# A file that is not readable JSON (gzip's errors are OSError and EOFError).
UNREADABLE = (json.JSONDecodeError, UnicodeDecodeError, EOFError, OSError)
