"""The Nsight Compute runner (`gapprof ncu`): DRAM bytes and duration of every kernel of a few decode steps.

A capture session runs in a child process under `ncu`; only kernels launched inside the profiled pass's
`decode_step` ranges are profiled (NVTX filter), up to --launch-count of them. The report is exported with
`ncu --import --csv --page raw --print-units base` to a CSV (one row per kernel, units in the second row),
and a JSON of the session's metadata beside it; the .ncu-rep itself is deleted unless asked for.
"""

import json
import subprocess
import tempfile
from pathlib import Path

from gapprof.profiler.profiled_session import run_under

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.nsight import find_ncu, ncu_export_command
from gapprof.nvtx_names import STEP_DOMAIN, STEP_MESSAGE
from gapprof.paths import sibling, strip_extension
from gapprof.runtime_table import BY_NAME

METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum")
# ncu's NVTX filter: `domain@range`, and a trailing `/` selects a push/pop range.
STEP_FILTER = f"{STEP_DOMAIN}@{STEP_MESSAGE}/"


def profile_command(ncu: str, report_base: Path, launch_count: int, graphs: bool) -> list[str]:
    """The ncu command line before the session's."""
    command = [
        ncu,
        "--nvtx",
        "--nvtx-include",
        STEP_FILTER,
        "--metrics",
        ",".join(METRICS),
        "--clock-control",
        "none",  # the clocks the decode steps really run at, not ncu's base clocks
        "--launch-count",
        str(launch_count),
        "--force-overwrite",
        "-o",
        str(report_base),
    ]
    if graphs:
        command += ["--graph-profiling", "node"]  # each kernel node of a replay is a result of its own
    return command


def ncu_argv(ncu: str, report_base: Path, launch_count: int, runtime: str) -> list[str]:
    """The whole command line before the session's, for `runtime`. A compiled runtime compiles inside the process:
    inductor's parallel compile workers crashed the lean step under ncu at warm-up (exit 139, H100, 2026-11-27)."""
    row = BY_NAME[runtime]
    in_process = ["env", "TORCHINDUCTOR_COMPILE_THREADS=1"] if row.compiled else []
    return in_process + profile_command(ncu, report_base, launch_count, row.replays_graphs)


def run_ncu(
    request, output: Path, launch_count: int, command: str, keep_report: bool = False, timeout_s: int | None = None
) -> tuple[Path, Path]:
    """Profile `request` under ncu; write the raw CSV to `output` and the metadata beside it (.json)."""
    ncu = find_ncu()
    output.parent.mkdir(parents=True, exist_ok=True)
    meta_out = sibling(output, ".json")
    with tempfile.TemporaryDirectory() as scratch:
        base = strip_extension(output) if keep_report else Path(scratch, "report")
        progress(f"--launch-count {launch_count}")
        meta = run_under(
            ncu_argv(ncu, base, launch_count, request.runtime),
            request,
            timeout_s,
            "; lower --launch-count or raise --timeout",
        )
        report = sibling(base, ".ncu-rep")
        if not report.exists():
            raise GapprofError(f"ncu wrote no report: no kernel matched the NVTX filter {STEP_FILTER!r}")
        progress(f"exporting {output}")
        exported = subprocess.run(ncu_export_command(ncu, report), capture_output=True, text=True)
        if exported.returncode != 0:
            last = exported.stderr.strip().splitlines()
            raise GapprofError(f"ncu --import failed (exit {exported.returncode}): {last[-1] if last else ''}")
        output.write_text(exported.stdout)
    meta.update(
        command=command,
        ncu_command=" ".join(ncu_argv("ncu", Path("REPORT"), launch_count, request.runtime)),
        ncu_metrics=list(METRICS),
        launch_count=launch_count,
    )
    meta_out.write_text(json.dumps(meta, indent=1))
    return output, meta_out
