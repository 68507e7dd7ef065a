"""The Nsight Systems backend: run a capture session under `nsys profile`, then `nsys export --type sqlite`."""
import sqlite3
import subprocess
import time
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.paths import sibling, strip_extension
from gapprof.profiler.profiled_session import run_under
from gapprof.nsight import find_nsys, nsys_export_command
from gapprof.trace_schema import write_meta

def profile_command(nsys: str, report_base: Path) -> list[str]:
    """The nsys command line before the session's: CUDA and NVTX only, collection limited to the profiled phase."""
    return [
        nsys, "profile",
        "-t", "cuda,nvtx",
        "-s", "none", "--cpuctxsw=none",  # without these a short run writes gigabytes of CPU samples
        "--cuda-graph-trace=node",  # every kernel of a graph replay, not one opaque graph range
        "--capture-range=cudaProfilerApi", "--capture-range-end=stop",
        "--force-overwrite=true",
        "-o", str(report_base),
    ]


def _written_since(folder: Path, started: float) -> list[str]:
    """Names of the files in `folder` changed since `started`: what nsys did write."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.stat().st_mtime >= started)


def capture_with_nsys(request, output: Path, command: str) -> tuple[Path, Path, dict]:
    """Profile `request` in a child process under nsys; return the .nsys-rep, .sqlite and metadata."""
    nsys = find_nsys()
    base = strip_extension(output)
    report, sqlite_path = sibling(base, ".nsys-rep"), sibling(base, ".sqlite")
    base.parent.mkdir(parents=True, exist_ok=True)
    started = time.time() - 1  # file times may be coarser than the clock
    meta = run_under(profile_command(nsys, base), request)
    if not report.exists():
        raise GapprofError(f"nsys did not write {report}; files it wrote there: "
                           f"{', '.join(_written_since(base.parent, started)) or 'none'}")
    progress(f"exporting {sqlite_path}")
    exported = subprocess.run(nsys_export_command(nsys, report, sqlite_path))
    if exported.returncode != 0 or not sqlite_path.exists():
        raise GapprofError(f"`nsys export` of {report} failed (exit {exported.returncode}); expected {sqlite_path}")
    meta["command"] = command
    with sqlite3.connect(sqlite_path) as conn:
        write_meta(conn, meta)
    return report, sqlite_path, meta
