"""Compressed inputs as traces/ ships them: gzipped text (torch.profiler .json.gz, ncu .csv.gz), read whole, and
xz-compressed nsys exports (.sqlite.xz), which SQLite can only open as a file: unpacked once into a temporary
folder named by the packed file's content, so that a changed file is never read from an old copy."""
import gzip
import hashlib
import lzma
import os
import tempfile
from pathlib import Path

from gapprof.errors import GapprofError

GZIP_MAGIC = b"\x1f\x8b"


def contents(path: Path) -> bytes:
    """The bytes of the file at `path`, gunzipped where they are gzip (gzip's errors reach the caller)."""
    data = Path(path).read_bytes()
    return gzip.decompress(data) if data[:2] == GZIP_MAGIC else data


def unpacked(path: Path) -> Path:
    """The file inside the xz file `path` (its name without .xz), in a temporary folder."""
    data = path.read_bytes()
    target = Path(tempfile.gettempdir(), "gapprof-unpacked", hashlib.sha256(data).hexdigest()[:16],
                  path.name.removesuffix(".xz"))
    if not target.exists():
        try:
            raw = lzma.decompress(data)
        except (lzma.LZMAError, EOFError) as error:
            raise GapprofError(f"{path}: not an xz-compressed trace ({error})") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # readers never see half a file
        partial.write_bytes(raw)
        partial.replace(target)
    return target
