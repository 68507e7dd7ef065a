"""The NVIDIA command-line profilers: where they are (an environment variable, then PATH, then the install
folders) and how their reports are exported. Capture runs them; analysis exports a .nsys-rep it is given."""

import glob
import os
import shutil
from pathlib import Path

from gapprof.errors import GapprofError

# Nsight Systems installs itself under versioned folders; Nsight Compute bundles a copy too.
NSYS_GLOBS = [
    "/opt/nvidia/nsight-systems/*/bin/nsys",
    "/usr/local/cuda*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
]
NCU_GLOBS = ["/opt/nvidia/nsight-compute/*/ncu", "/usr/local/cuda*/bin/ncu"]


def find_tool(name: str, env_var: str, install_globs: list[str], product: str, alternative: str = "") -> str:
    configured = os.environ.get(env_var)
    if configured:
        if not os.access(configured, os.X_OK):
            raise GapprofError(f"{env_var}={configured} is not an executable {name}")
        return configured
    on_path = shutil.which(name)
    if on_path:
        return on_path
    for pattern in install_globs:
        found = sorted(glob.glob(pattern))  # versioned folders: the last sorts newest
        if found:
            return found[-1]
    raise GapprofError(
        f"{name} not found: set {env_var}, put {name} on PATH, or install {product} "
        f"(looked in {', '.join(install_globs)}){alternative}"
    )


def find_nsys(alternative: str = "") -> str:
    """GAPPROF_NSYS, then PATH, then the usual install folders; `alternative` ends the error with what the calling
    command can do without nsys (only an option it has)."""
    return find_tool("nsys", "GAPPROF_NSYS", NSYS_GLOBS, "Nsight Systems", alternative)


def find_ncu() -> str:
    """GAPPROF_NCU, then PATH, then the usual install folders."""
    return find_tool("ncu", "GAPPROF_NCU", NCU_GLOBS, "Nsight Compute")


def nsys_export_command(nsys: str, report: Path, sqlite_path: Path) -> list[str]:
    return [nsys, "export", "--type", "sqlite", "--force-overwrite=true", "-o", str(sqlite_path), str(report)]


def ncu_export_command(ncu: str, report: Path) -> list[str]:
    # Base units (byte, nsecond), so no scaled unit needs guessing; the parser still reads scaled ones.
    return [ncu, "--import", str(report), "--csv", "--page", "raw", "--print-units", "base"]
