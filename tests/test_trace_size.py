"""A trace too large for the memory at hand is refused before it is read, in one line naming its size."""

import subprocess
import sys

import pytest
from conftest import basic_step
from gapprof.analysis import attribution
from gapprof.analysis.readers import memory
from synthetic import TraceBuilder

from gapprof.errors import GapprofError

STEPS = 1_000  # 9 GPU ops and API calls a step: about 3.0 MiB by memory.BYTES_PER_ROW


def _trace(tmp_path):
    b = TraceBuilder()
    for i in range(STEPS):
        basic_step(b, 2000 * i)
    return b.write(tmp_path / "t.sqlite")


def test_a_trace_larger_than_the_free_memory_is_refused_naming_its_rows(tmp_path, monkeypatch):
    path = _trace(tmp_path)
    attribution.analyze(path)  # fits
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    with pytest.raises(
        GapprofError,
        match=rf"^{path}: 9,000 rows \(4,000 GPU ops, 5,000 API calls\) need about "
        r"0\.0 GiB to attribute and 0\.0 GiB is free here",
    ):
        attribution.analyze(path)


def test_a_torch_profiler_trace_too_large_is_refused_once_its_events_are_counted(tmp_path, monkeypatch):
    b = TraceBuilder()
    for i in range(10):
        basic_step(b, 2000 * i)
    path = b.write_kineto(tmp_path / "t.json")
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**10)
    with pytest.raises(GapprofError, match=rf"^{path}: 90 rows \(40 GPU ops, 50 API calls\) need about"):
        attribution.analyze(path)


# The limit is set once the command's modules are imported: the address space they hold plus 1 MiB.
CHILD = """
import resource, sys
from gapprof.analysis import attribution
from gapprof.cli import main
from gapprof.commands import attribute_cli
held = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (held + 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
main(["attribute", sys.argv[1]])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_under_an_address_space_limit_the_command_fails_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHILD, str(_trace(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {tmp_path / 't.sqlite'}: 9,000 rows")
