"""Run at the start of every Python process of a program under `gapprof profile`, whose folder leads the program's
PYTHONPATH: installs gapprof.profiler.forward_marks (the marks of --mark forward and the record of versions),
then runs the sitecustomize this one shadows, as Python would have. The program itself is not changed."""

import json
import os
import sys


def _install_marks():
    try:
        from gapprof.profiler import forward_marks
    except Exception as error:  # this Python cannot import gapprof: the program runs unmarked, and says why
        folder = os.environ.get("GAPPROF_PROFILE_FACTS")
        if os.environ.get("GAPPROF_PROFILE_MARK") and folder:
            why = f"gapprof is not importable by {sys.executable} ({error!r})"
            try:
                with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
                    json.dump({"pid": os.getpid(), "argv": sys.argv, "mark_error": why}, out)
            except OSError:
                pass
        return
    forward_marks.install_from_environment()


def _run_shadowed():
    """The next sitecustomize on sys.path after this folder, if any."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_install_marks()
_run_shadowed()
