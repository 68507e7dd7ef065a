"""The Nsight Compute runner (`gapprof ncu`): DRAM bytes and duration of every kernel of a few decode steps.

A capture session runs in a child process under `ncu`; only kernels launched inside the profiled pass's
`decode_step` ranges are profiled (NVTX filter), up to --launch-count of them. The report is exported with
`ncu --import --csv --page raw --print-units base` to a CSV (one row per kernel, units in the second row),
and a JSON of the session's metadata beside it; the .ncu-rep itself is deleted unless asked for.
"""
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
from gapprof.paths import sibling, strip_extension
from gapprof.nvtx_names import STEP_DOMAIN, STEP_MESSAGE
from gapprof.nsight import find_ncu, ncu_export_command

METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum")
# ncu's NVTX filter: `domain@range`, and a trailing `/` selects a push/pop range.
STEP_FILTER = f"{STEP_DOMAIN}@{STEP_MESSAGE}/"


def profile_command(ncu: str, report_base: Path, request_path: Path, meta_path: Path, launch_count: int,
                    graphs: bool) -> list[str]:
    command = [
        ncu, "--nvtx", "--nvtx-include", STEP_FILTER,
        "--metrics", ",".join(METRICS),
        "--clock-control", "none",  # the clocks the decode steps really run at, not ncu's base clocks
        "--launch-count", str(launch_count),
        "--force-overwrite", "-o", str(report_base),
    ]
    if graphs:
        command += ["--graph-profiling", "node"]  # each kernel node of a replay is a result of its own
    return command + [sys.executable, "-m", "gapprof.profiler.session", str(request_path), str(meta_path)]


def run_ncu(request, output: Path, launch_count: int, command: str, keep_report: bool = False,
            timeout_s: int | None = None) -> tuple[Path, Path]:
    """Profile `request` under ncu; write the raw CSV to `output` and the metadata beside it (.json)."""
    ncu = find_ncu()
    output.parent.mkdir(parents=True, exist_ok=True)
    meta_out = sibling(output, ".json")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        request_path, meta_path = scratch / "request.json", scratch / "meta.json"
        request_path.write_text(json.dumps(dataclasses.asdict(request)))
        base = strip_extension(output) if keep_report else scratch / "report"
        progress(f"running under {ncu} (--launch-count {launch_count})")
        # Its own process group, so a timeout stops the profiled decode process too, not only ncu.
        child = subprocess.Popen(profile_command(ncu, base, request_path, meta_path, launch_count,
                                                 request.runtime == "graphs"), start_new_session=True)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise GapprofError(f"ncu ran past {timeout_s} s; lower --launch-count or raise --timeout") from None
        report = sibling(base, ".ncu-rep")
        if child.returncode != 0 or not meta_path.exists():
            raise GapprofError(f"the decode run under ncu failed (exit {child.returncode}); see the messages above")
        if not report.exists():
            raise GapprofError(f"ncu wrote no report: no kernel matched the NVTX filter {STEP_FILTER!r}")
        progress(f"exporting {output}")
        exported = subprocess.run(ncu_export_command(ncu, report), capture_output=True, text=True)
        if exported.returncode != 0:
            last = exported.stderr.strip().splitlines()
            raise GapprofError(f"ncu --import failed (exit {exported.returncode}): {last[-1] if last else ''}")
        output.write_text(exported.stdout)
        meta = json.loads(meta_path.read_text())
    meta.update(command=command, ncu_command=" ".join(profile_command(
        "ncu", Path("REPORT"), Path("REQUEST"), Path("META"), launch_count, request.runtime == "graphs")),
        ncu_metrics=list(METRICS), launch_count=launch_count)
    meta_out.write_text(json.dumps(meta, indent=1))
    return output, meta_out
