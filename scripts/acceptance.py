"""GPU acceptance run: every GPU-side command of the documentation as it is written there, then the analyses.

    python3 scripts/acceptance.py gpu WORKDIR [--part K/N [--balance results/<gpu>/acceptance.md]]   # GPU machine
    python3 scripts/acceptance.py gpu WORKDIR --remaining    # then: what a share cut short did not run
    python3 scripts/acceptance.py report WORKDIR             # where polars is: the analyses, then the log

The GPU-side commands are read from README.md and the pages of docs/ (acceptance_plan.DOCUMENTED) (indented code
lines that start with `gapprof capture`,
`gapprof ncu`, `gapprof ab`, `gapprof sweep`, `gapprof calibrate` or `gapprof profile`, and the GPU install line),
so the run follows the documentation as it stands. Only sizes shrink: --steps to at most 4, --warmup to at most 3,
--sessions to 2, --launch-count to 100, comma lists of --models/--ctx to their first item, calibrate gets --quick;
NAME becomes a dotted name, and a repository file that a profiled program runs (examples/...) is named by its
absolute path. The log records the commit that ran: GAPPROF_COMMIT, else `git rev-parse HEAD` where the copy has its
.git (a copy sent without it needs GAPPROF_COMMIT=<commit> on the command line). Each command runs in WORKDIR (the
install in the repository), and WORKDIR/acceptance.jsonl records its exit status, seconds, the files it wrote and
the end of its output; `--remaining` runs, after the install line, the commands that log has no record of (a share
stopped by its time guard leaves its last ones unrun). `report` runs `attribute` on every trace written (`--by
module` for module traces, `ncu-report` for ncu CSVs, `sweep-attribute` for profiled sweeps) and writes
results/<gpu>/acceptance.md. The GPU side needs only the standard library: the GPU image has no polars.
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # acceptance_plan, beside this file, however it is loaded
from acceptance_plan import (
    REPO,
    documentation,
    documented_gpu_commands,
    is_install,
    logged_seconds,
    part_of,
    remaining,  # noqa: E402
    shrink,
)

LOG = "acceptance.jsonl"
TAIL_LINES = 8


def _snapshot(folder: Path) -> dict[str, tuple[float, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and p.name != LOG
    }


def run_logged(command: str, cwd: Path, workdir: Path, phase: str) -> dict:
    """Run one shell command; append what happened to WORKDIR/acceptance.jsonl and return the record."""
    print(f"$ {command}", flush=True)
    before, started = _snapshot(workdir), time.monotonic()
    child = subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = time.monotonic() - started
    after = _snapshot(workdir)
    sys.stdout.write(child.stdout)
    record = {
        "phase": phase,
        "command": command,
        "cwd": "repository" if cwd == REPO else "WORKDIR",
        "exit": child.returncode,
        "seconds": round(seconds, 1),
        "files": sorted(p for p, stamp in after.items() if before.get(p) != stamp),
        "output": child.stdout.strip().splitlines()[-TAIL_LINES:],
    }
    with open(workdir / LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
    return record


def source_commit() -> str | None:
    """The commit of the code that runs: GAPPROF_COMMIT, else the checkout's HEAD; None if neither is known."""
    if os.environ.get("GAPPROF_COMMIT"):
        return os.environ["GAPPROF_COMMIT"]
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return git.stdout.strip() if git.returncode == 0 else None


def machine_facts() -> dict:
    query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        smi = subprocess.run(query, capture_output=True, text=True).stdout
    except FileNotFoundError:  # no NVIDIA driver here: the log says "unknown" instead of stopping the run
        smi = ""
    name, _, driver = smi.strip().partition(", ")
    return {
        "phase": "machine",
        "gpu_name": name or "unknown",
        "driver": driver,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": source_commit(),
    }


def read_log(workdir: Path) -> list[dict]:
    """WORKDIR/acceptance.jsonl's records; none before the first command."""
    log = workdir / LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def logged_commands(workdir: Path) -> set[str]:
    return {r["command"] for r in read_log(workdir) if r["phase"] == "gpu"}


def gpu_phase(workdir: Path, select: Callable[[list[str]], list[str]]) -> int:
    """Run the documented GPU commands that `select` picks (part_of's share, or remaining), each logged."""
    workdir.mkdir(parents=True, exist_ok=True)
    commands = documented_gpu_commands(documentation())
    chosen = select(commands)
    if not chosen:
        print(f"every documented GPU command has a record in {workdir / LOG}: none remains")
        return 0
    with open(workdir / LOG, "a") as log:
        log.write(json.dumps(machine_facts()) + "\n")
    failed = 0
    for command in chosen:
        index = commands.index(command)
        install = is_install(command)
        record = run_logged(
            command if install else shrink(command, index), REPO if install else workdir, workdir, "gpu"
        )
        failed += record["exit"] != 0
    return 1 if failed else 0


def analyses(gpu_records: list[dict]) -> list[str]:
    """The analysis commands for what the GPU commands wrote: a .nsys-rep is read as the documentation reads one
    (through the .sqlite beside it), a profiled sweep through `sweep-attribute`."""
    commands = []
    for record in gpu_records:
        sweep, files = record["command"].startswith("gapprof sweep"), record["files"]
        for path in files:
            report = (
                path.endswith(".nsys-rep")
                or path.endswith(".sqlite")
                and path.removesuffix(".sqlite") + ".nsys-rep" not in files
            )
            if report and not sweep:
                by = " --by module" if "--modules" in record["command"] else ""
                commands.append(f"gapprof attribute {shlex.quote(path)}{by}")
            elif path.endswith("-ncu.csv"):
                commands.append(f"gapprof ncu-report {shlex.quote(path)}")
            elif sweep and path.endswith("sweep.json") and "--profile" in record["command"]:
                commands.append(f"gapprof sweep-attribute {shlex.quote(str(Path(path).parent))}")
    return commands


def _gpu_key(gpu_name: str) -> str:
    """The results folder ab and sweep use for this GPU (profiler.fresh_sessions.gpu_key)."""
    sys.path.insert(0, str(REPO))
    from gapprof.profiler.fresh_sessions import gpu_key

    return gpu_key([{"gpu_name": gpu_name}])


def _commit_line(commit: str | None) -> str:
    return f"commit {commit}" if commit else "commit not recorded (run with GAPPROF_COMMIT=<commit>)"


def markdown(records: list[dict]) -> str:
    machine = next(r for r in records if r["phase"] == "machine")
    steps = [r for r in records if r["phase"] != "machine"]
    failed = sum(r["exit"] != 0 for r in steps)
    lines = [
        f"# GPU acceptance run: {machine['gpu_name']}",
        "",
        f"{machine['date']}, driver {machine['driver']}, Python {machine['python']}. Produced by "
        "`python3 scripts/acceptance.py gpu WORKDIR` on the GPU machine (the documented GPU-side commands, "
        "sizes shrunk as that script's docstring says) and `python3 scripts/acceptance.py report WORKDIR` on a "
        "CPU machine with the analysis install. Paths are relative to WORKDIR.",
        "",
        f"Code: {_commit_line(machine.get('commit'))}.",
        "",
        f"{len(steps)} commands, {failed} failed.",
        "",
        "| # | where | command | exit | s | files written |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(steps, 1):
        where = "GPU" if r["phase"] == "gpu" else "CPU"
        files = "<br>".join(f"`{f}`" for f in r["files"][:12]) + (" ..." if len(r["files"]) > 12 else "")
        lines.append(f"| {i} | {where} | `{r['command']}` | {r['exit']} | {r['seconds']} | {files} |")
    lines += ["", "## End of each command's output", ""]
    for i, r in enumerate(steps, 1):
        lines += [f"{i}. `{r['command']}` (exit {r['exit']})", "", "```", *r["output"], "```", ""]
    return "\n".join(lines)


def report_phase(workdir: Path) -> int:
    records = read_log(workdir)
    records = [r for r in records if r["phase"] != "cpu"]  # a report run again replaces its analyses
    (workdir / LOG).write_text("".join(json.dumps(r) + "\n" for r in records))
    for command in analyses([r for r in records if r["phase"] == "gpu"]):
        records.append(run_logged(command, workdir, workdir, "cpu"))
    machine = next(r for r in records if r["phase"] == "machine")
    out = REPO / "results" / _gpu_key(machine["gpu_name"]) / "acceptance.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(records))
    print(f"wrote {out}")
    return 1 if any(r["exit"] != 0 for r in records if r["phase"] != "machine") else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["gpu", "report"])
    parser.add_argument("workdir", type=Path)
    parser.add_argument(
        "--part",
        default="1/1",
        help="K/N: run the K-th of N shares of the GPU commands (each share appends to the same log)",
    )
    parser.add_argument(
        "--balance",
        type=Path,
        default=None,
        help="an earlier run's acceptance.md (results/<gpu>/acceptance.md): --part shares balanced "
        "by its seconds per command instead of every N-th command",
    )
    parser.add_argument(
        "--remaining",
        action="store_true",
        help="run the GPU commands WORKDIR's log has no record of (what a share cut short by its "
        "time guard left), after the install line",
    )
    args = parser.parse_args()
    if args.balance is not None and not args.balance.is_file():
        parser.error(f"--balance {args.balance}: no such file")
    if args.remaining and args.phase == "report":
        parser.error("--remaining runs the GPU commands the log lacks: it goes with gpu, not report")
    if args.remaining and (args.part != "1/1" or args.balance is not None):
        parser.error("--remaining runs what the log lacks: it takes neither --part nor --balance")
    workdir = args.workdir.resolve()
    if args.phase == "report":
        return report_phase(workdir)
    if args.remaining:
        return gpu_phase(workdir, lambda commands: remaining(commands, logged_commands(workdir)))
    part, _, parts = args.part.partition("/")
    seconds = logged_seconds(args.balance.read_text()) if args.balance else None
    return gpu_phase(workdir, lambda commands: part_of(commands, int(part), int(parts), seconds))


if __name__ == "__main__":
    sys.exit(main())
