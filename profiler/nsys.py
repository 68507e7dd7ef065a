"""The Nsight Systems backend: run a capture session under `nsys profile`, then `nsys export --type sqlite`."""
import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.profiler.tool_lookup import find_tool
from gapprof.profiler.trace_schema import write_meta

# Nsight Systems installs itself under versioned folders; Nsight Compute bundles a copy too.
NSYS_GLOBS = [
    "/opt/nvidia/nsight-systems/*/bin/nsys",
    "/usr/local/cuda*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
]


def find_nsys() -> str:
    """GAPPROF_NSYS, then PATH, then the usual install folders."""
    return find_tool("nsys", "GAPPROF_NSYS", NSYS_GLOBS, "Nsight Systems", "; or use --backend cupti")


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


def export_command(nsys: str, report: Path, sqlite_path: Path) -> list[str]:
    return [nsys, "export", "--type", "sqlite", "--force-overwrite=true", "-o", str(sqlite_path), str(report)]


def capture_with_nsys(request, output: Path, command: str) -> tuple[Path, Path, dict]:
    """Profile `request` in a child process under nsys; return the .nsys-rep, .sqlite and metadata."""
    nsys = find_nsys()
    base = output.with_suffix("") if output.suffix == ".nsys-rep" else output
    report, sqlite_path = base.with_suffix(".nsys-rep"), base.with_suffix(".sqlite")
    request_path, meta_path = base.with_suffix(".request.json"), base.with_suffix(".meta.json")
    base.parent.mkdir(parents=True, exist_ok=True)
    request_path.write_text(json.dumps(dataclasses.asdict(request)))
    try:
        progress(f"running under {nsys}")
        child = subprocess.run(profile_command(nsys, base, request_path, meta_path))
        if child.returncode != 0 or not meta_path.exists():
            raise GapprofError(f"the profiled decode run failed (exit {child.returncode}); see the messages above")
        if not report.exists():
            raise GapprofError(f"nsys wrote no {report}; see its messages above")
        progress(f"exporting {sqlite_path}")
        exported = subprocess.run(export_command(nsys, report, sqlite_path))
        if exported.returncode != 0:
            raise GapprofError(f"nsys export failed (exit {exported.returncode})")
        meta = json.loads(meta_path.read_text())
    finally:
        request_path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
    meta["command"] = command
    with sqlite3.connect(sqlite_path) as conn:
        write_meta(conn, meta)
    return report, sqlite_path, meta
