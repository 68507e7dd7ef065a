"""File names derived from other file names.

Every shipped model name has dots (qwen2.5-7b, llama-3.1-8b, mistral-7b-v0.3), and `Path.with_suffix` takes
everything after the last dot for the suffix: `qwen2.5-7b-eager`.with_suffix(".sqlite") is `qwen2.sqlite`.
So a derived name strips only an extension gapprof knows, and appends the new one.
"""

from pathlib import Path

# Longest first, so that `.meta.json` is stripped whole rather than as `.json`.
KNOWN_EXTENSIONS = (
    ".request.json",
    ".meta.json",
    ".nsys-rep",
    ".ncu-rep",
    ".sqlite.xz",
    ".sqlite",
    ".qdstrm",
    ".json",
    ".csv.gz",
    ".csv",
    ".png",
    ".svg",
    ".pdf",
)


def strip_extension(path: Path) -> Path:
    """`path` without its extension when that is one gapprof knows; other dots stay part of the name."""
    path = Path(path)
    for extension in KNOWN_EXTENSIONS:
        if path.name.endswith(extension) and len(path.name) > len(extension):
            return path.with_name(path.name[: -len(extension)])
    return path


def sibling(path: Path, extension: str) -> Path:
    """The file beside `path` with the same name and `extension` instead of its known extension."""
    base = strip_extension(path)
    return base.with_name(base.name + extension)
