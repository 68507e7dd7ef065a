"""The Nsight Systems backend: run a capture session under `nsys profile`, then `nsys export --type sqlite`."""

import sqlite3
import subprocess
import time
from pathlib import Path

from gapprof.profiler.profiled_session import run_under

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.nsight import find_nsys, nsys_export_command
from gapprof.paths import sibling, strip_extension
from gapprof.trace_schema import write_meta

# CUDA and NVTX only; without -s none --cpuctxsw=none a short run writes gigabytes of CPU samples. `gapprof
# profile` collects with the same flags.
COLLECTION_FLAGS = ["-t", "cuda,nvtx", "-s", "none", "--cpuctxsw=none"]


def profile_command(nsys: str, report_base: Path, capture_range: bool = True, graph_trace: str = "node") -> list[str]:
    """The nsys command line before the profiled command's; with capture_range, collection is limited to what the
    program brackets with cudaProfilerStart/Stop (capture's profiled phase), else it covers the whole run.
    graph_trace: `node` traces every kernel of a graph replay; `graph` one range per graph execution, which costs
    the replay less (the observer effect of the graph runtimes) and hides the kernels."""
    limit = ["--capture-range=cudaProfilerApi", "--capture-range-end=stop"] if capture_range else []
    return [
        nsys,
        "profile",
        *COLLECTION_FLAGS,
        f"--cuda-graph-trace={graph_trace}",
        *limit,
        "--force-overwrite=true",
        "-o",
        str(report_base),
    ]


def report_paths(output: Path) -> tuple[Path, Path, Path]:
    """The base nsys writes to (it appends .nsys-rep), the report and the .sqlite beside it, for `output` with or
    without a known extension (dotted names kept)."""
    base = strip_extension(output)
    return base, sibling(base, ".nsys-rep"), sibling(base, ".sqlite")


def _written_since(folder: Path, started: float) -> list[str]:
    """Names of the files in `folder` changed since `started`: what nsys did write."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.stat().st_mtime >= started)


def require_report(report: Path, started: float) -> None:
    """Raise when nsys did not write `report`, naming what it wrote in that folder since `started`."""
    if not report.exists():
        raise GapprofError(
            f"nsys did not write {report}; files it wrote there: "
            f"{', '.join(_written_since(report.parent, started)) or 'none'}"
        )


def export_sqlite(nsys: str, report: Path, sqlite_path: Path) -> None:
    progress(f"exporting {sqlite_path}")
    exported = subprocess.run(nsys_export_command(nsys, report, sqlite_path))
    if exported.returncode != 0 or not sqlite_path.exists():
        raise GapprofError(f"`nsys export` of {report} failed (exit {exported.returncode}); expected {sqlite_path}")


def capture_with_nsys(request, output: Path, command: str) -> tuple[Path, Path, dict]:
    """Profile `request` in a child process under nsys; return the .nsys-rep, .sqlite and metadata."""
    nsys = find_nsys("; or use --backend cupti")
    base, report, sqlite_path = report_paths(output)
    base.parent.mkdir(parents=True, exist_ok=True)
    started = time.time() - 1  # file times may be coarser than the clock
    meta = run_under(profile_command(nsys, base, graph_trace=request.graph_trace), request)
    require_report(report, started)
    export_sqlite(nsys, report, sqlite_path)
    meta["command"] = command
    with sqlite3.connect(sqlite_path) as conn:
        write_meta(conn, meta)
    return report, sqlite_path, meta
