"""The Nsight Systems backend: run a capture session under `nsys profile`, then `nsys export --type sqlite`."""
import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.paths import sibling, strip_extension
from gapprof.nsight import find_nsys, nsys_export_command
from gapprof.trace_schema import write_meta

def profile_command(nsys: str, report_base: Path, request_path: Path, meta_path: Path) -> list[str]:
    """The nsys command line: CUDA and NVTX only, collection limited to the profiled phase."""
    return [
        nsys, "profile",
        "-t", "cuda,nvtx",
        "-s", "none", "--cpuctxsw=none",  # without these a short run writes gigabytes of CPU samples
        "--cuda-graph-trace=node",  # every kernel of a graph replay, not one opaque graph range
        "--capture-range=cudaProfilerApi", "--capture-range-end=stop",
        "--force-overwrite=true",
        "-o", str(report_base),
        sys.executable, "-m", "gapprof.profiler.session", str(request_path), str(meta_path),
    ]


def _written_since(folder: Path, started: float, ours: tuple[Path, ...]) -> list[str]:
    """Names of the files in `folder` changed since `started`, but for `ours`: what nsys did write."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.stat().st_mtime >= started and p not in ours)


def capture_with_nsys(request, output: Path, command: str) -> tuple[Path, Path, dict]:
    """Profile `request` in a child process under nsys; return the .nsys-rep, .sqlite and metadata."""
    nsys = find_nsys()
    base = strip_extension(output)
    report, sqlite_path = sibling(base, ".nsys-rep"), sibling(base, ".sqlite")
    request_path, meta_path = sibling(base, ".request.json"), sibling(base, ".meta.json")
    base.parent.mkdir(parents=True, exist_ok=True)
    request_path.write_text(json.dumps(dataclasses.asdict(request)))
    started = time.time() - 1  # file times may be coarser than the clock
    try:
        progress(f"running under {nsys}")
        child = subprocess.run(profile_command(nsys, base, request_path, meta_path))
        if child.returncode != 0 or not meta_path.exists():
            raise GapprofError(f"the profiled decode run failed (exit {child.returncode}); see the messages above")
        if not report.exists():
            raise GapprofError(f"nsys did not write {report}; files it wrote there: "
                               f"{', '.join(_written_since(base.parent, started, (request_path, meta_path))) or 'none'}")
        progress(f"exporting {sqlite_path}")
        exported = subprocess.run(nsys_export_command(nsys, report, sqlite_path))
        if exported.returncode != 0 or not sqlite_path.exists():
            raise GapprofError(f"`nsys export` of {report} failed (exit {exported.returncode}); "
                               f"expected {sqlite_path}")
        meta = json.loads(meta_path.read_text())
    finally:
        request_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    meta["command"] = command
    with sqlite3.connect(sqlite_path) as conn:
        write_meta(conn, meta)
    return report, sqlite_path, meta
