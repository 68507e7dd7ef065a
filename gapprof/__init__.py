"""gapprof: where batch-1 LLM decode time goes, per step and per kernel.

The Python API, `gapprof.attribute` (analysis side: polars) and `gapprof.mark_steps` (capture side), is imported
on first use, so `import gapprof` loads neither polars nor torch and the package's core depends on neither side.
"""

import importlib

__version__ = "0.1.0"

# API name -> the module that defines it, imported when the name is first looked up (PEP 562).
_API = {"attribute": "gapprof.analysis.report", "mark_steps": "gapprof.profiler.step_marks"}


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'gapprof' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only: not the submodules imported along the way, nor this module's machinery."""
    return sorted(["__version__", *_API])
