"""Finding the NVIDIA command-line profilers: an environment variable, then PATH, then the install folders."""
import glob
import os
import shutil

from gapprof.errors import GapprofError


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
    raise GapprofError(f"{name} not found: set {env_var}, put {name} on PATH, or install {product} "
                       f"(looked in {', '.join(install_globs)}){alternative}")
