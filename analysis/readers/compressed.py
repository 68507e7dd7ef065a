"""Compressed inputs as traces/ ships them: gzipped text (torch.profiler .json.gz, ncu .csv.gz), read whole, and
xz-compressed nsys exports (.sqlite.xz), which SQLite can only open as a file: unpacked once into the user's
cache folder and reused while they still match what they were made from.

The cache is $XDG_CACHE_HOME/gapprof/unpacked (else ~/.cache/gapprof/unpacked), a folder only its owner may use.
An entry is named by the SHA-256 of the packed file and has a record beside it (<hash>.json: the packed file's
size and hash, the unpacked file's size and hash); on every use the entry is checked against its record and
unpacked again when it differs (truncated, swapped, edited). Files are written to a temporary file created
exclusively in the cache folder, then renamed into place, so a reader never sees half a file and no planted link
is followed. The cache holds at most CACHE_BYTES: entries used longest ago are dropped first.

Decompression is streamed and bounded: a file that unpacks to more than MAX_RATIO times its packed size (or to
more than the free disk) is refused in one line, as a decompression bomb would be, and nothing is left behind.
"""

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import tempfile
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.input_files import regular_file

GZIP_MAGIC = b"\x1f\x8b"
# The shipped traces unpack to 5-9x (xz) and 25x (gzipped ncu CSVs); anything past this is no trace.
MAX_RATIO = 100
CACHE_BYTES = 8 * 2**30
CHUNK = 2**20
# Left free on the cache's disk by an unpacking, so that it never fills the disk.
DISK_RESERVE = 256 * 2**20


def _too_large(path: Path, limit: int, why: str) -> GapprofError:
    return GapprofError(f"{path}: unpacks to more than {limit:,} bytes ({why}); refused as no trace would")


def contents(path: Path) -> bytes:
    """The bytes of the file at `path`, gunzipped where they are gzip (gzip's errors reach the caller), at most
    MAX_RATIO times the packed size."""
    path = regular_file(path)
    data = path.read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    limit = MAX_RATIO * len(data)
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
        text = unzipped.read(limit + 1)
    if len(text) > limit:
        raise _too_large(path, limit, f"{MAX_RATIO}x its packed size")
    return text


def cache_folder() -> Path:
    """The user's unpack cache, created where missing; refused when it is not a folder of the user's own."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # XDG: a relative path is ignored
    folder = base / "gapprof" / "unpacked"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(folder)
    except OSError as error:
        raise GapprofError(
            f"{folder}: cannot create the unpack cache ({error.strerror or error}); set "
            "XDG_CACHE_HOME to a folder of your own"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise GapprofError(
            f"{folder}: the unpack cache must be a folder of your own that others cannot write "
            "to; remove it or set XDG_CACHE_HOME"
        )
    return folder


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _record(source: Path, source_sha: str, entry: Path) -> dict:
    return {
        "source_bytes": source.stat().st_size,
        "source_sha256": source_sha,
        "bytes": entry.stat().st_size,
        "sha256": _digest(entry),
    }


def _valid(source: Path, source_sha: str, entry: Path, record: Path) -> bool:
    """Whether the entry is a plain file (no link) matching the record made with it, for this packed file."""
    try:
        if not stat.S_ISREG(os.lstat(entry).st_mode) or not stat.S_ISREG(os.lstat(record).st_mode):
            return False
        return json.loads(record.read_text()) == _record(source, source_sha, entry)
    except (OSError, ValueError):
        return False


def _unpack_into(path: Path, file, limit: int, why: str) -> None:
    """Stream the xz file `path` into `file`, refusing more than `limit` bytes (concatenated streams allowed)."""
    written, decompressor = 0, lzma.LZMADecompressor()
    with open(path, "rb") as packed:
        chunk = packed.read(CHUNK)
        while True:
            out = decompressor.decompress(chunk, max_length=CHUNK)
            written += len(out)
            if written > limit:
                raise _too_large(path, limit, why)
            file.write(out)
            if decompressor.eof:
                rest = decompressor.unused_data + packed.read(CHUNK)
                if not rest:
                    return
                decompressor, chunk = lzma.LZMADecompressor(), rest
            elif decompressor.needs_input:
                chunk = packed.read(CHUNK)
                if not chunk:
                    raise lzma.LZMAError("the compressed data ends early")
            else:
                chunk = b""


def _limit(path: Path, folder: Path) -> tuple[int, str]:
    by_ratio = MAX_RATIO * path.stat().st_size
    by_disk = shutil.disk_usage(folder).free - DISK_RESERVE
    return (by_ratio, f"{MAX_RATIO}x its packed size") if by_ratio <= by_disk else (max(by_disk, 0), "the free disk")


def _write_entry(path: Path, folder: Path, entry: Path) -> None:
    limit, why = _limit(path, folder)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".unpacking.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            _unpack_into(path, f, limit, why)
        os.replace(name, entry)
    except (lzma.LZMAError, EOFError) as error:
        raise GapprofError(f"{path}: not an xz-compressed trace ({error})") from None
    except OSError as error:
        raise GapprofError(f"{folder}: cannot unpack {path} into the cache ({error.strerror or error})") from None
    finally:
        Path(name).unlink(missing_ok=True)


def _write_record(folder: Path, record: Path, content: dict) -> None:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".record.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
        os.replace(name, record)
    except OSError as error:
        raise GapprofError(f"{folder}: cannot write to the cache ({error.strerror or error})") from None
    finally:
        Path(name).unlink(missing_ok=True)


def _drop_oldest(folder: Path, keep: Path) -> None:
    """Remove the entries used longest ago (with their records) until the cache holds at most CACHE_BYTES."""
    entries = []
    for entry in folder.glob("*.sqlite"):
        try:
            info = os.lstat(entry)
        except OSError:  # dropped by another run meanwhile
            continue
        entries.append((info.st_mtime_ns, info.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= CACHE_BYTES:
            return
        if entry != keep:
            entry.unlink(missing_ok=True)
            entry.with_suffix(".json").unlink(missing_ok=True)
            total -= size


def unpacked(path: Path) -> Path:
    """The SQLite file inside the xz file `path`, from the cache (unpacked again where its entry does not match)."""
    path = regular_file(path)
    folder = cache_folder()
    source_sha = _digest(path)
    entry, record = folder / f"{source_sha}.sqlite", folder / f"{source_sha}.json"
    if not _valid(path, source_sha, entry, record):
        _write_entry(path, folder, entry)
        _write_record(folder, record, _record(path, source_sha, entry))
        _drop_oldest(folder, entry)
    os.utime(entry)  # last used now: the last to be dropped
    return entry
