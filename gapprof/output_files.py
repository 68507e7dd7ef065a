"""Writing outputs so that nothing is lost: no output may be a file the same command reads, every file is written
whole or not at all, and the files of one result (sweep.csv, .md, .json and .png; a folder of CSVs) are replaced
together, all new or all old.

Each file is first written to a temporary file of its own folder (an unpredictable name, created exclusively),
and only once every file of the set is written are they renamed over their targets (os.replace, atomic within a
folder). A write that fails (a read-only folder, a full disk) removes its temporary files and leaves every target
as it was, and is one GapprofError line. Free of torch and polars.
"""

import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from gapprof.errors import GapprofError
from gapprof.paths import sibling

# What a file holds: text (UTF-8), bytes, or a function that writes it into an open binary file (a figure's savefig).
Content = str | bytes | Callable[[BinaryIO], None]


def read_with(path: Path) -> list[Path]:
    """`path` and the files a reader takes from beside it: the export beside a .nsys-rep, the metadata beside an
    ncu CSV."""
    path = Path(path)
    if path.suffix == ".nsys-rep":
        return [path, sibling(path, ".sqlite"), sibling(path, ".sqlite.xz")]
    if path.name.endswith((".csv", ".csv.gz")):
        return [path, sibling(path, ".json")]
    return [path]


def _same_file(output: Path, given: Path) -> bool:
    """Whether two paths name one file: the same resolved path (symlinks followed), or the same inode (a hard
    link)."""
    if output.resolve() == given.resolve():
        return True
    try:
        return os.path.samefile(output, given)
    except OSError:  # either does not exist (yet): not one file
        return False


def refuse_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """Raise when any output would write over an input of the same command (or a file read beside one)."""
    given = [file for path in inputs if path is not None for file in read_with(path)]
    for output in outputs:
        clash = next((path for path in given if _same_file(Path(output), path)), None)
        if clash is not None:
            raise GapprofError(f"{output}: is {clash}, an input of this command; write the output elsewhere")


def _new_file_mode(target: Path) -> int:
    """The permissions of the file being replaced, else those a plain open() gives (0o666 less the umask)."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _put(content: Content, file: BinaryIO) -> None:
    if isinstance(content, str):
        file.write(content.encode())
    elif isinstance(content, bytes):
        file.write(content)
    else:
        content(file)


def _write_temporary(target: Path, content: Content) -> Path:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            _put(content, f)
        os.chmod(temporary, _new_file_mode(target))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _special(target: Path) -> bool:
    """Whether `target` is a device or a pipe (/dev/null, /dev/stdout): written in place, never replaced."""
    try:
        return not stat.S_ISREG(target.stat().st_mode) and not target.is_dir()
    except OSError:  # not there yet
        return False


def write_files(files: dict[Path, Content], inputs: Iterable[Path] = ()) -> list[Path]:
    """Write every file (path -> content), all or none, refusing any that is one of `inputs`; the paths written."""
    targets = [Path(path) for path in files]
    refuse_inputs(targets, inputs)
    written, target = {}, None
    try:
        for target, content in zip(targets, files.values()):
            # A symlink's file is replaced, not the link; a device or pipe is written as it is.
            real = target.resolve() if target.is_symlink() else target
            if _special(real):
                with open(real, "wb") as f:
                    _put(content, f)
            else:
                written[real] = _write_temporary(real, content)
        for target, temporary in written.items():
            os.replace(temporary, target)
    except BaseException as error:
        for temporary in written.values():
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise GapprofError(f"{target}: cannot write ({error.strerror or error})") from None
        raise
    return targets


def make_folder(folder: Path) -> Path:
    """`folder`, created with its parents where missing; one line where it cannot be."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GapprofError(f"{folder}: cannot create the folder ({error.strerror or error})") from None
    return Path(folder)
