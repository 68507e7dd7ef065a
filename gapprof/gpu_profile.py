"""A GPU profile: what `gapprof calibrate` measured on one GPU (every point, how and when) and the parameters fitted
to it, as JSON; reading, checking and finding profiles. Pure: the GPU side writes profiles, analysis reads them.

The document (FORMAT, VERSION):
    gpu       name (the CUDA device name), key (gapprof.gpus key, else the name in lower case), datasheet_gbps
              (None for a GPU the table lacks), memory_bytes, sm_count, l2_bytes
    date      when it was measured (ISO 8601, UTC); command: the command line as typed
    versions  torch, cuda, driver, python
    settings  how it was measured (repeats, warm-up, sizes, the L2-defeating reuse distance, seconds taken)
    points    launch: {kernel, mode (graph|host), count, us, samples_us}: µs per kernel;
              read, copy, gemv: {bytes, count, copies, us, samples_us, ...}: µs per op (copy bytes = read + written)
    fit       fixed_us_graph / fixed_us_host: a tiny real kernel (an add on one element) back to back in a CUDA
              graph / launched from the host; empty_us_graph / empty_us_host: the same for an empty kernel;
              read_gbps / copy_gbps: achieved at large transfers (bandwidth_fit.achieved_gbps); read, copy, gemv:
              time = fixed + bytes / bandwidth over their points (bandwidth_fit.fit_line)
Profiles shipped with gapprof live in gapprof/gpu_profiles/<key>.json.
"""

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gapprof import gpus
from gapprof.bandwidth_fit import achieved_gbps, fit_line
from gapprof.errors import GapprofError
from gapprof.input_files import regular_file
from gapprof.output_files import write_files

FORMAT = "gapprof-gpu-profile"
VERSION = 1
FOLDER = "gpu_profiles"
SECTIONS = {"gpu": dict, "date": str, "command": str, "versions": dict, "settings": dict, "points": dict, "fit": dict}
POINT_KINDS = ("launch", "read", "copy", "gemv")
POSITIVE_FIT = ("fixed_us_graph", "fixed_us_host", "read_gbps", "copy_gbps")
TINY, EMPTY = "add", "empty"  # the kernels of points.launch


def _launch_us(points: dict, kernel: str, mode: str) -> float | None:
    return next((p["us"] for p in points["launch"] if p["kernel"] == kernel and p["mode"] == mode), None)


def fit(points: dict) -> dict:
    """The fitted parameters of a profile's points (see the module docstring)."""
    out: dict[str, object] = {
        "fixed_us_graph": _launch_us(points, TINY, "graph"),
        "fixed_us_host": _launch_us(points, TINY, "host"),
        "empty_us_graph": _launch_us(points, EMPTY, "graph"),
        "empty_us_host": _launch_us(points, EMPTY, "host"),
    }
    for kind in ("read", "copy"):
        sizes, us = [p["bytes"] for p in points[kind]], [p["us"] for p in points[kind]]
        out[f"{kind}_gbps"] = achieved_gbps(sizes, us)
        out[kind] = fit_line(sizes, us)
    out["gemv"] = fit_line([p["bytes"] for p in points["gemv"]], [p["us"] for p in points["gemv"]])
    return out


def document(gpu: dict, date: str, command: str, versions: dict, settings: dict, points: dict) -> dict:
    """A checked profile of these measurements, with its fit."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "gpu": gpu,
        "date": date,
        "command": command,
        "versions": versions,
        "settings": settings,
        "points": points,
        "fit": fit(points),
    }
    check(doc, "the new profile")
    return doc


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _problem(doc) -> str | None:
    """What makes `doc` no usable profile, or None."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return f'no "format": "{FORMAT}"'
    if doc.get("version") != VERSION:
        return f"version {doc.get('version')!r}, this gapprof reads version {VERSION}"
    for name, kind in SECTIONS.items():
        if not isinstance(doc.get(name), kind):
            return f"{name!r} missing or not a{'n object' if kind is dict else ' string'}"
    if not isinstance(doc["gpu"].get("name"), str) or not isinstance(doc["gpu"].get("key"), str):
        return "gpu.name and gpu.key must be strings"
    for point_kind in POINT_KINDS:
        points = doc["points"].get(point_kind)
        if not isinstance(points, list) or not points:
            return f"points.{point_kind} missing or empty"
        if not all(isinstance(p, dict) and _positive(p.get("us")) for p in points):
            return f"points.{point_kind}: every point needs a positive 'us'"
    for name in POSITIVE_FIT:
        if not _positive(doc["fit"].get(name)) or not math.isfinite(doc["fit"][name]):
            return f"fit.{name} missing or not a positive number"
    low, high = gpus.DRAM_GBPS
    for name in ("read_gbps", "copy_gbps"):
        if not gpus.dram_gbps(doc["fit"][name]):
            return f"fit.{name} {doc['fit'][name]:,.3g} is no DRAM's bandwidth ({low:,.0f} to {high:,.0f} GB/s)"
    return _other_gpu(doc["gpu"])


def _other_gpu(gpu: dict) -> str | None:
    """A profile serves only the GPU it measured: its key must be the datasheet entry its device name matches."""
    spec = gpus.gpu_for_device_name(gpu["name"])
    if (spec.key if spec else None) == gpu["key"] or (spec is None and gpu["key"] not in gpus.known_gpus()):
        return None
    measured = f"the {spec.label}" if spec else "a GPU the datasheet table lacks"
    return f"gpu.key is {gpu['key']!r} but gpu.name {gpu['name']!r} is {measured}: a profile serves only its own GPU"


def check(doc, where: str) -> None:
    """Raise a one-line GapprofError naming `where` unless `doc` is a usable profile."""
    problem = _problem(doc)
    if problem is not None:
        raise GapprofError(f"{where}: not a usable gapprof GPU profile: {problem}")


@dataclass(frozen=True)
class Found:
    """A checked profile and how the output names it (a path as given, or gapprof/gpu_profiles/NAME)."""

    where: str
    doc: dict

    @property
    def key(self) -> str:
        return self.doc["gpu"]["key"]

    @property
    def date(self) -> str:
        return self.doc["date"]

    @property
    def read_gbps(self) -> float:
        return float(self.doc["fit"]["read_gbps"])

    @property
    def fixed_us_graph(self) -> float:
        return float(self.doc["fit"]["fixed_us_graph"])

    @property
    def sm_count(self) -> int | None:
        return self.doc["gpu"].get("sm_count")

    def cite(self) -> str:
        return f"{self.where}, measured {self.date[:10]}"


def parse(text: str, where: str) -> Found:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise GapprofError(f"{where}: not JSON ({error.msg}, line {error.lineno})") from None
    check(doc, where)
    return Found(where, doc)


def read(path: Path) -> Found:
    try:
        text = regular_file(path).read_text()
    except UnicodeDecodeError:
        raise GapprofError(f"{path}: not a GPU profile (not text)") from None
    except OSError as error:
        raise GapprofError(f"{path}: cannot read the GPU profile ({error.strerror})") from None
    return parse(text, str(path))


def write(doc: dict, path: Path) -> Path:
    check(doc, str(path))
    write_files({Path(path): json.dumps(doc, indent=1) + "\n"})
    return Path(path)


def shipped(folder=None) -> dict[str, Found]:
    """GPU key -> the profile shipped in gapprof/gpu_profiles/<key>.json (or in `folder`); none there: empty."""
    named = f"gapprof/{FOLDER}" if folder is None else str(folder)  # not the install's absolute path
    folder = folder if folder is not None else resources.files("gapprof").joinpath(FOLDER)
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name) if folder.is_dir() else ():
        if entry.name.endswith(".json"):
            profile = parse(entry.read_text(), f"{named}/{entry.name}")
            if f"{profile.key}.json" != entry.name:
                raise GapprofError(f"{profile.where}: holds the profile of {profile.key!r}; name it {profile.key}.json")
            found[profile.key] = profile
    return found


def profiles(paths=()) -> dict[str, Found]:
    """GPU key -> profile: the shipped ones, and those at `paths`, which replace a shipped one of the same GPU."""
    found = shipped()
    for path in paths:
        profile = read(path)
        found[profile.key] = profile
    return found
