"""`gapprof profile`: run any command under Nsight Systems with capture's collection flags over the whole run,
export the .sqlite and record what can be known of the run in its GAPPROF_META table.

Torch-free: this side only launches nsys. The program's Python processes find profiler/child_site first on their
PYTHONPATH; its sitecustomize runs profiler.forward_marks (the ranges of --mark forward, and each process's facts
at exit). The command runs inside `sh -c`, which prints its exit status after it on a line of its own, so its
status and last lines are known whatever nsys itself returns.
"""

import datetime
import os
import secrets
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from gapprof.profiler import environment, nsys_capture, profile_facts
from gapprof.profiler.forward_marks import FACTS_ENV, MARK_ENV, TRANSFORMERS

from gapprof.errors import GapprofError
from gapprof.log import progress
from gapprof.nsight import find_nsys
from gapprof.trace_schema import gpu_op_count, write_meta

SITE_HOOK_FOLDER = Path(__file__).resolve().parent / "child_site"
TAIL_LINES = 5
NSYS_PRELUDE = ("Collecting data...",)  # what nsys prints before the program starts


def mark_target(mark: str | None, mark_module: str | None) -> str | None:
    """MODULE:CLASS whose top-level calls get ranges: --mark-module's, else transformers' PreTrainedModel under
    --mark forward; None without --mark."""
    if mark_module is not None:
        module, _, name = mark_module.partition(":")
        if not (module and name.isidentifier()):
            raise GapprofError(f"--mark-module {mark_module!r}: expected MODULE:CLASS, such as mypkg.model:Decoder")
        return mark_module
    return TRANSFORMERS if mark == "forward" else None


def child_environment(target: str | None, facts_folder: str, environ=os.environ) -> dict:
    """The program's environment: the site hook folder first on PYTHONPATH, what to mark and where to write facts."""
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SITE_HOOK_FOLDER), *filter(None, [environ.get("PYTHONPATH")])])
    env[FACTS_ENV] = facts_folder
    env.pop(MARK_ENV, None)
    if target:
        env[MARK_ENV] = target
    return env


def program_name(command: list[str]) -> str:
    """The default trace name: the script of `python x.py` or the module of `python -m pkg.mod`, else the
    executable's name."""
    executable, args = Path(command[0]).name, command[1:]
    if executable.startswith("python"):
        if "-m" in args[:-1]:
            return args[args.index("-m") + 1].rsplit(".", 1)[-1]
        script = next((arg for arg in args if arg.endswith(".py")), None)
        if script:
            return Path(script).name[: -len(".py")]
    return executable


def wrapped(command: list[str], token: str) -> list[str]:
    return ["/bin/sh", "-c", f'"$@"; status=$?; echo "{token}$status"; exit $status', "sh", *command]


def run_streaming(argv: list[str], env: dict, token: str) -> tuple[int | None, int, list[str], list[str]]:
    """Run argv with its output echoed to stderr (stdout carries the report); return the program's exit status
    (None when it never ended), argv's own, the program's last lines and the last lines of all."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    status, program, everything = None, deque(maxlen=TAIL_LINES), deque(maxlen=TAIL_LINES)
    for raw in child.stdout:
        line = raw.decode(errors="replace").rstrip("\r\n")
        ended = token in line
        if ended:  # the program's last line may lack its newline: what precedes the token is still its own
            line, _, code = line.partition(token)
        if line or not ended:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            everything.append(line)
            if status is None and line.strip() and line not in NSYS_PRELUDE:
                program.append(line)
        if ended and code.split() and code.split()[0].isdigit():
            status = int(code.split()[0])
    return status, child.wait(), list(program), list(everything)


def _last_lines(lines: list[str]) -> str:
    shown = [line.strip()[:200] for line in lines if line.strip()]
    return " | ".join(shown) if shown else "(no output)"


def check_ran(
    command: list[str], status: int | None, nsys_status: int, program: list[str], everything: list[str]
) -> None:
    """One line for a program that failed, or an nsys that never saw it end."""
    if status is None:
        raise GapprofError(
            f"nsys exited with status {nsys_status} before `{shlex.join(command)}` ended; last lines: "
            f"{_last_lines(everything)}"
        )
    if status != 0:
        signal = f" (signal {status - 128})" if status > 128 else ""
        raise GapprofError(
            f"`{shlex.join(command)}` exited with status {status}{signal} under nsys; its last lines: "
            f"{_last_lines(program)}"
        )


def nsys_version(nsys: str) -> str | None:
    try:
        out = subprocess.run([nsys, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def profile_program(command: list[str], output: Path, target: str | None, invocation: str) -> tuple[Path, Path, dict]:
    """Profile `command` under nsys into `output` (.nsys-rep and .sqlite); return both paths and the metadata
    written into the .sqlite."""
    nsys = find_nsys()
    base, report, sqlite_path = nsys_capture.report_paths(output)
    base.parent.mkdir(parents=True, exist_ok=True)
    token = f"[gapprof {secrets.token_hex(4)}] exit status "
    argv = [*nsys_capture.profile_command(nsys, base, capture_range=False), *wrapped(command, token)]
    started = time.time() - 1  # file times may be coarser than the clock
    with tempfile.TemporaryDirectory() as folder:
        progress(f"running `{shlex.join(command)}` under {nsys}")
        status, nsys_status, program, everything = run_streaming(argv, child_environment(target, folder), token)
        facts = profile_facts.read_facts(Path(folder))
    check_ran(command, status, nsys_status, program, everything)
    nsys_capture.require_report(report, started)
    nsys_capture.export_sqlite(nsys, report, sqlite_path)
    if gpu_op_count(sqlite_path) == 0:
        raise GapprofError(
            f"`{shlex.join(command)}` ran no GPU work under nsys: {sqlite_path} has no kernel, "
            "memcpy or memset (does it run on a CUDA device?)"
        )
    meta = {
        "command": invocation,
        "program": shlex.join(command),
        "program_exit_status": status,
        "backend": "nsys",
        "nsys": nsys_version(nsys),
        "mark": target,
        "captured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": environment.cpu_model(),
        "driver": environment.driver_version(),
        **profile_facts.program_meta(facts),
    }
    if target and "decode_steps" not in meta:
        meta["unmarked_because"] = profile_facts.why_unmarked(facts, target)
    with sqlite3.connect(sqlite_path) as conn:
        write_meta(conn, meta)
    return report, sqlite_path, meta
