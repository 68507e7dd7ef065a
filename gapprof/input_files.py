"""Inputs are regular files: a FIFO, a device or a socket named like a trace is refused before anything opens it
(opening a FIFO with no writer blocks forever). Free of torch and polars."""

import os
import stat
from pathlib import Path

from gapprof.errors import GapprofError

KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def regular_file(path: Path) -> Path:
    """`path`, when it names a regular file (a link to one counts); else one GapprofError line."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # stat never opens the file, so a FIFO cannot block here
    except FileNotFoundError:
        raise GapprofError(f"{path}: no such file") from None
    except OSError as error:
        raise GapprofError(f"{path}: cannot read ({error.strerror or error})") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
        raise GapprofError(f"{path}: {kind}, not a file; gapprof reads only regular files")
    return path
