"""A Chrome trace's event list read as a stream of batches, each of many events decoded by msgspec in one call
into typed structs of the fields gapprof reads (msgspec skips every other field in C): a file of any size holds
about one block of text and one batch of events in memory, never the document.

The file is a list of events or an object with a traceEvents list among its keys. A batch is cut after an
event's closing brace: a cut is valid exactly when '[' + the text before it + ']' decodes, since a cut inside a
string or a nested object leaves invalid JSON. The last '}' followed by spaces and a comma is tried first; where
its text is a valid JSON prefix that is still not a list of whole events, the cut was inside an event, and an
earlier one is tried, ever further back. Where the text is no list's prefix but is the object's (the list ended
before the cut, in a key after it: deviceProperties may follow traceEvents), the rest is the last batch's. Where
the text itself is damaged, or holds a value of the wrong type (every value msgspec checks was read whole, the cut
comes after it), the batch is refused at once.

Times are kept as their text (msgspec.Raw), never as floats, so that a reader can round them exactly.
"""

import gzip
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import msgspec
from gapprof.analysis.readers.compressed import GZIP_MAGIC

from gapprof.errors import GapprofError

BLOCK_BYTES = 1 << 24  # read at a time; a batch is about this much text
_FIRST_BACK_OFF = 1 << 10  # bytes an invalid cut moves back, doubled at each further one
_SPACE = re.compile(rb"\s*")
_COMMA = re.compile(rb"\s*,")
_KEY = re.compile(rb'"traceEvents"\s*(?::\s*(\[)?)?')  # as much of the key as the text read holds
_OBJECT_REOPENED = b'{"traceEvents":['  # before the rest of an object's list, from the batches' last cut
UTF8_BOM = b"\xef\xbb\xbf"  # written before the JSON by some editors and Windows tools; JSON readers may skip it


# An id as written: an integer where the event is read (or a tid spelt as one: old Kineto releases quote tids);
# other types only where it is not (old Kineto releases wrote "pid": "Spans" for their own spans), so that they are
# refused in one line, not by the decoder.
Id = int | str | None


class Args(msgspec.Struct, gc=False):
    correlation: Id = None
    device: Id = None
    stream: Id = None


class Event(msgspec.Struct, gc=False):
    """A trace event's fields that gapprof reads: times as their JSON text (empty where absent), ids as written."""

    ph: str = ""
    cat: str = ""
    name: str = ""
    ts: msgspec.Raw = msgspec.Raw()
    dur: msgspec.Raw = msgspec.Raw()
    pid: Id = None
    tid: Id = None
    args: Args = msgspec.field(default_factory=Args)


class _Head(msgspec.Struct):
    deviceProperties: Any = None


class _Tail(msgspec.Struct):
    traceEvents: list[Event] = []
    deviceProperties: Any = None


_EVENTS = msgspec.json.Decoder(list[Event])
_TAIL = msgspec.json.Decoder(_Tail)
_HEAD = msgspec.json.Decoder(_Head)
_PREFIX = msgspec.json.Decoder(list[msgspec.Raw])  # a valid JSON prefix fails only as truncated


class _Text:
    """The file's bytes read in blocks; `at` is where the text not yet decoded starts."""

    def __init__(self, binary):
        self.binary, self.text, self.at, self.ended = binary, b"", 0, False

    def more(self) -> bool:
        block = b"" if self.ended else self.binary.read(BLOCK_BYTES)
        self.ended = not block
        self.text = self.text[self.at :] + block
        self.at = 0
        return bool(block)


@contextmanager
def unpacked(path: Path):
    """The file's bytes as a binary stream, gunzipped where they are gzip's (damage raises OSError or EOFError)."""
    with open(path, "rb") as raw:
        packed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        with gzip.open(raw) if packed else nullcontext(raw) as binary:
            yield binary


def _unreadable(path: Path, error: Exception) -> GapprofError:
    if isinstance(error, RecursionError):
        return GapprofError(f"{path}: not a Chrome trace: JSON nested deeper than a trace event ever is")
    # msgspec counts bytes from the start of the batch decoded, not of the file: that count would mislead.
    return GapprofError(
        f"{path}: not a Chrome trace: unreadable JSON ({re.sub(r' [(]byte [0-9]+[)]', '', str(error))})"
    )


def _damaged(path: Path, error: msgspec.ValidationError, first: int) -> GapprofError:
    """An event of the wrong shape, named by its index in the list (msgspec names it within the batch)."""
    found = re.fullmatch(r"(.*) - at `\$(?:\.traceEvents)?\[(\d+)\]\.?(.*)`", str(error))
    if found is None:
        return GapprofError(f"{path}: not a Chrome trace ({error})")
    what, index, field = found.groups()
    return GapprofError(f"{path}: event {first + int(index)} is damaged ({what}{f' in {field}' if field else ''})")


def _open_list(text: _Text, path: Path) -> tuple[bytes, Any]:
    """Read up to the '[' that opens the event list: how the text after the last batch reopens as JSON, and the
    deviceProperties found before the list. A traceEvents key is the list's exactly when the text up to it,
    closed by ']}', decodes."""
    while not text.text.strip() and text.more():
        pass
    text.text = text.text.removeprefix(UTF8_BOM)
    start = _SPACE.match(text.text).end()
    if text.text[start : start + 1] == b"[":
        text.at = start + 1
        return b"[", None
    searched = 0
    while True:
        key = _KEY.search(text.text, searched)
        if key is not None and key.group(1):
            try:
                head = _HEAD.decode(text.text[: key.end()] + b"]}")
                text.at = key.end()
                return _OBJECT_REOPENED, head.deviceProperties
            except msgspec.DecodeError:  # the key inside a string or a nested object
                searched = key.end()
                continue
        if key is not None and key.end() < len(text.text):
            searched = key.end()  # a traceEvents that is no list
            continue
        searched = key.start() if key is not None else max(searched, len(text.text) - len(b'"traceEvents"'))
        if not text.more():
            break
    msgspec.json.decode(text.text)  # unreadable JSON is said as such
    raise GapprofError(
        f"{path}: JSON but not a Chrome trace (no traceEvents list); expected the output of "
        f"torch.profiler's export_chrome_trace"
    )


def _last_cut(text: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(after the '}', after the ',') of the last '}' before `end` followed by spaces and a comma."""
    while (brace := text.rfind(b"}", start, end)) >= 0:
        comma = _COMMA.match(text, brace + 1)
        if comma is not None:
            return brace + 1, comma.end()
        end = brace
    return None


def _truncated(decoder: msgspec.json.Decoder, prefix: bytes) -> bool:
    """Whether `prefix` fails to decode only as a valid JSON prefix cut short does."""
    try:
        decoder.decode(prefix)
    except msgspec.DecodeError as error:
        return "truncated" in str(error)
    return False


def _batch(text: _Text, reopened: bytes) -> list[Event] | None:
    """The events before the last valid cut of the text read, or None where the text holds no whole event or
    the list's end with the document's keys after it (the last batch's to read)."""
    end, back_off = len(text.text), _FIRST_BACK_OFF
    while (cut := _last_cut(text.text, text.at, end)) is not None:
        events = memoryview(text.text)[text.at : cut[0]]
        try:
            batch = _EVENTS.decode(b"".join((b"[", events, b"]")))
            text.at = cut[1]
            return batch
        except msgspec.ValidationError:  # a value read whole, so one of the file's own: damaged at any cut
            raise
        except msgspec.DecodeError:
            try:
                _PREFIX.decode(b"".join((b"[", events)))
            except msgspec.DecodeError as prefix:
                if "truncated" not in str(prefix):
                    if reopened == b"[" or not _truncated(_HEAD, b"".join((reopened, events))):
                        raise  # damaged before the cut: no cut can help
                    return None  # the list ended before the cut, in a key that follows it
        end, back_off = cut[0] - back_off, back_off * 2  # the cut was inside an event
    return None


def _last_batch(text: _Text, reopened: bytes, found: dict) -> list[Event]:
    """The events after the last cut, decoded with the rest of the document (which closes the list)."""
    rest = b"".join((reopened, memoryview(text.text)[text.at :]))
    text.at = len(text.text)
    if reopened == b"[":
        return _EVENTS.decode(rest)
    document = _TAIL.decode(rest)
    if document.deviceProperties is not None:
        found["deviceProperties"] = document.deviceProperties
    return document.traceEvents


def batches(path: Path, found: dict) -> Iterator[tuple[int, list[Event]]]:
    """(index of the first, events) of the Chrome trace at `path`, batch by batch; `found` gets its
    deviceProperties. Text that is not a Chrome trace's JSON is refused in one line."""
    first = 0
    try:
        with unpacked(path) as binary:
            text = _Text(binary)
            reopened, found["deviceProperties"] = _open_list(text, path)
            while True:
                while not text.ended and len(text.text) - text.at < BLOCK_BYTES:
                    text.more()
                batch = _last_batch(text, reopened, found) if text.ended else _batch(text, reopened)
                if batch is None:  # an event longer than the text read, or the list's end
                    text.more()
                    continue
                yield first, batch
                if text.ended:
                    return
                first += len(batch)
    except msgspec.ValidationError as error:
        raise _damaged(path, error, first) from None
    except (msgspec.DecodeError, RecursionError, OSError, EOFError) as error:  # gzip's errors: OSError, EOFError
        raise _unreadable(path, error) from None
