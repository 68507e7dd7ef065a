"""A capture session in a child process under a command-line profiler (nsys, ncu): the request goes to the child
in a JSON file and the session's metadata comes back in another, both in a scratch folder."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.log import progress


def session_argv(request_path: Path, meta_path: Path) -> list[str]:
    """The child's command line: profiler.session reads the request and writes the metadata."""
    return [sys.executable, "-m", "gapprof.profiler.session", str(request_path), str(meta_path)]


def run_under(profiler_argv: list[str], request, timeout_s: int | None = None, timeout_hint: str = "") -> dict:
    """Run `request` as PROFILER_ARGV + the session's command line; return the session's metadata. The child gets
    its own process group, so that a timeout stops the decode process too, not only the profiler."""
    tool = Path(profiler_argv[0]).name
    with tempfile.TemporaryDirectory() as scratch:
        request_path, meta_path = Path(scratch, "request.json"), Path(scratch, "meta.json")
        request_path.write_text(json.dumps(dataclasses.asdict(request)))
        progress(f"running under {profiler_argv[0]}")
        child = subprocess.Popen([*profiler_argv, *session_argv(request_path, meta_path)], start_new_session=True)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise GapprofError(f"{tool} ran past {timeout_s} s{timeout_hint}") from None
        if child.returncode != 0 or not meta_path.exists():
            raise GapprofError(f"the decode run under {tool} failed (exit {child.returncode}); see the messages above")
        return json.loads(meta_path.read_text())
