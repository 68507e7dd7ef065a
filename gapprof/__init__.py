"""gapprof: where batch-1 LLM decode time goes, per step and per kernel.

The Python API, `gapprof.attribute` (analysis side: polars) and `gapprof.mark_steps` (capture side), is imported
on first use, so `import gapprof` loads neither polars nor torch and the package's core depends on neither side.
The core's modules are the vocabulary both sides share (model specs, the floor's byte model, quantisation methods,
GPU datasheets and profiles, the trace schema, runtimes, rendering, result files, the bootstrap interval); the
capture side is `gapprof.profiler`, the analysis side `gapprof.analysis`, the click commands `gapprof.commands`,
and `gapprof.cli` the console script that imports one command only when it runs.
"""

import importlib

__version__ = "0.1.0"

# API name -> the module that defines it, imported when the name is first looked up (PEP 562).
_API = {"attribute": "gapprof.analysis.python_api", "mark_steps": "gapprof.profiler.step_marks"}


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'gapprof' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only: not the submodules imported along the way, nor this module's machinery."""
    return sorted(["__version__", *_API])
