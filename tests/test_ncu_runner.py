"""The ncu command lines `gapprof ncu` runs, where it finds ncu, and its timeout."""

import time
from pathlib import Path

import pytest
from gapprof.profiler import ncu_capture as ncu
from gapprof.profiler import profiled_session

from gapprof import nsight
from gapprof.errors import GapprofError


def test_profile_command_filters_the_step_ranges_and_keeps_clocks():
    command = ncu.profile_command("ncu", Path("out/r"), 1400, graphs=False)
    assert command[:3] == ["ncu", "--nvtx", "--nvtx-include"] and command[3] == "gapprof@decode_step/"
    assert (
        command[command.index("--metrics") + 1] == "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum"
    )
    assert command[command.index("--clock-control") + 1] == "none"
    assert command[command.index("--launch-count") + 1] == "1400"
    assert "--graph-profiling" not in command
    assert command[-2:] == ["-o", "out/r"]
    graphs = ncu.profile_command("ncu", Path("r"), 1600, graphs=True)
    assert graphs[graphs.index("--graph-profiling") + 1] == "node"


def test_compiled_runtimes_keep_inductors_compile_workers_in_the_process():
    for runtime in ("compile", "lean"):
        argv = ncu.ncu_argv("ncu", Path("r"), 700, runtime)
        assert argv[:3] == ["env", "TORCHINDUCTOR_COMPILE_THREADS=1", "ncu"]
        assert argv[argv.index("--graph-profiling") + 1] == "node"
    assert ncu.ncu_argv("ncu", Path("r"), 700, "graphs")[0] == "ncu"
    assert ncu.ncu_argv("ncu", Path("r"), 700, "eager") == ncu.profile_command("ncu", Path("r"), 700, graphs=False)


def test_export_asks_for_the_raw_page_in_base_units():
    assert nsight.ncu_export_command("ncu", Path("r.ncu-rep")) == [
        "ncu",
        "--import",
        "r.ncu-rep",
        "--csv",
        "--page",
        "raw",
        "--print-units",
        "base",
    ]


def test_find_ncu_order(tmp_path, monkeypatch):
    fake = tmp_path / "ncu"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GAPPROF_NCU", str(fake))
    assert nsight.find_ncu() == str(fake)
    monkeypatch.setenv("GAPPROF_NCU", str(tmp_path / "missing"))
    with pytest.raises(GapprofError, match="not an executable ncu"):
        nsight.find_ncu()
    monkeypatch.delenv("GAPPROF_NCU")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nsight.find_ncu() == str(fake)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(nsight, "NCU_GLOBS", [str(tmp_path / "nowhere" / "*" / "ncu")])
    with pytest.raises(GapprofError, match="ncu not found"):
        nsight.find_ncu()


def test_a_timeout_stops_ncu_and_its_child(tmp_path, monkeypatch):
    fake = tmp_path / "ncu"
    marker = tmp_path / "child-still-ran"
    # Stands in for ncu: starts a child that would write a file later, then waits on it.
    fake.write_text(f"#!/bin/sh\n(sleep 3; touch {marker}) &\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GAPPROF_NCU", str(fake))
    request = type("Request", (), {"runtime": "eager"})()
    monkeypatch.setattr(profiled_session.dataclasses, "asdict", lambda _: {})
    with pytest.raises(GapprofError, match="ncu ran past 1 s"):
        ncu.run_ncu(request, tmp_path / "out.csv", 10, "gapprof ncu", timeout_s=1)
    time.sleep(3.5)
    assert not marker.exists()
