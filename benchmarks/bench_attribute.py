"""Benchmark: `gapprof attribute` on a trace of 1,000,000 kernels against merely reading those rows.

    python benchmarks/bench_attribute.py [--kernels N] [--per-step K] [--repeat R] [--keep PATH]

Generates a .sqlite in the nsys schema subset (kernels, their cudaLaunchKernel calls, a memcpy and a sync per
step, NVTX steps in the gapprof domain), then times, each in a fresh process so peak memory is its own:
- read: SELECT * of the kernel, runtime and NVTX tables into polars through the same ADBC reader gapprof uses
  (and, for reference, through Python's sqlite3);
- attribute: the whole command (load, steps, anatomy, kernel/API tables, rendering), imports excluded.
Goal: attribute <= 2x read, peak memory < 1 GB.
"""
import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gapprof import trace_schema as ts

PID, TID = 4242, 4243
NAMES = 50


def generate(path: Path, kernels: int, per_step: int) -> None:
    """Step s: per_step launches 4 µs apart; each kernel runs 2.5 µs starting 5 µs after its call, so the GPU
    idles between kernels (latency) and, every 10th launch, waits 20 µs more for a late call (starved)."""
    rng = np.random.default_rng(0)
    steps = kernels // per_step
    tid, pid = ts.global_tid(PID, TID), ts.global_pid(PID)
    i = np.arange(kernels)
    within = i % per_step
    step = i // per_step
    late = (within % 10 == 9) * 20_000
    step_start = step * (per_step * 4_000 + per_step // 10 * 20_000 + 200_000)
    call_start = step_start + 10_000 + within * 4_000 + np.cumsum(late.reshape(steps, per_step), axis=1).ravel()
    corr = i * 2 + 1
    k_start = call_start + 5_000
    k_end = k_start + 2_500 + rng.integers(0, 500, kernels)
    name = within % NAMES
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    ts.create_tables(conn, {k: v for k, v in ts.TABLES.items() if k != ts.META_TABLE})
    strings = [(n, f"kernel_{n}") for n in range(NAMES)] + [(n + NAMES, f"void kernel_{n}<float>(float*)")
                                                            for n in range(NAMES)]
    launch, memcpy, sync, message = 2 * NAMES, 2 * NAMES + 1, 2 * NAMES + 2, 2 * NAMES + 3
    strings += [(launch, "cudaLaunchKernel_v7000"), (memcpy, "cudaMemcpyAsync_v3020"),
                (sync, "cudaStreamSynchronize_v3020"), (message, "decode_step")]
    conn.executemany("INSERT INTO StringIds VALUES (?, ?)", strings)
    zeros, ones = np.zeros(kernels, np.int64), np.ones(kernels, np.int64)
    conn.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, contextId, streamId, correlationId, "
        "globalPid, demangledName, shortName) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        zip(k_start.tolist(), k_end.tolist(), zeros.tolist(), ones.tolist(), (ones * 7).tolist(), corr.tolist(),
            (zeros + pid).tolist(), (name + NAMES).tolist(), name.tolist()))
    conn.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, correlationId, nameId, "
        "returnValue) VALUES (?, ?, 1, ?, ?, ?, 0)",
        zip(call_start.tolist(), (call_start + 3_000).tolist(), (zeros + tid).tolist(), corr.tolist(),
            (zeros + launch).tolist()))
    last_end = k_end.reshape(steps, per_step).max(axis=1)
    last_call = call_start.reshape(steps, per_step)[:, -1]
    s = np.arange(steps)
    step_t0 = step_start[::per_step]
    copy_call = last_call + 4_000
    copy_corr = s * 2 * per_step + 2  # even ids: unused by kernels
    conn.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME (start, end, eventClass, globalTid, correlationId, nameId, "
        "returnValue) VALUES (?, ?, 1, ?, ?, ?, 0)",
        [(int(c), int(c) + 2_000, tid, int(k), memcpy) for c, k in zip(copy_call, copy_corr)]
        + [(int(c) + 2_500, int(e) + 12_000, tid, None, sync) for c, e in zip(copy_call, last_end)])
    conn.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY (start, end, deviceId, contextId, streamId, correlationId, "
        "globalPid, bytes, copyKind) VALUES (?, ?, 0, 1, 7, ?, ?, 4, 2)",
        [(int(e) + 1_000, int(e) + 3_000, int(k), pid) for e, k in zip(last_end, copy_corr)])
    conn.execute(f"INSERT INTO NVTX_EVENTS (start, eventType, text, domainId, globalTid) "
                 f"VALUES (0, {ts.NVTX_DOMAIN_CREATE}, 'gapprof', 1, {tid})")
    conn.executemany(
        "INSERT INTO NVTX_EVENTS (start, end, eventType, globalTid, endGlobalTid, textId, domainId, uint64Value) "
        f"VALUES (?, ?, {ts.NVTX_PUSH_POP_RANGE}, ?, ?, ?, 1, ?)",
        [(int(a), int(e) + 15_000, tid, tid, message, int(k)) for k, (a, e) in enumerate(zip(step_t0, last_end))])
    conn.commit()
    conn.close()


def _read(path: str) -> tuple[int, float]:
    import polars as pl
    import adbc_driver_sqlite.dbapi as adbc
    started = time.perf_counter()
    with adbc.connect(path) as conn:
        rows = sum(pl.read_database(f"SELECT * FROM {table}", conn).height for table in
                   ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"))
    return rows, time.perf_counter() - started


def _read_sqlite3(path: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    rows = sum(len(conn.execute(f"SELECT * FROM {table}").fetchall()) for table in
               ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"))
    return rows, time.perf_counter() - started


def _attribute(path: str) -> tuple[int, float]:
    from click.testing import CliRunner
    from gapprof.commands.attribute_cli import attribute
    started = time.perf_counter()
    result = CliRunner().invoke(attribute, [path, "--tables", "summary,facts,classes,kernels,api"])
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return result.stdout.count("\n"), time.perf_counter() - started


TASKS = {"read": _read, "read-sqlite3": _read_sqlite3, "attribute": _attribute}


def child(task: str, path: str) -> None:
    size, seconds = TASKS[task](path)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "size": size}))


def measure(task: str, path: Path, repeat: int) -> dict:
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", task, str(path)], check=True,
                                      capture_output=True, text=True).stdout) for _ in range(repeat)]
    return {"seconds": min(r["seconds"] for r in runs), "peak_mb": max(r["peak_mb"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=int, default=1_000_000)
    parser.add_argument("--per-step", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the trace here and keep it")
    parser.add_argument("--child", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.sqlite"
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        generate(path, args.kernels, args.per_step)
        print(f"generated {args.kernels:,} kernels in {args.kernels // args.per_step:,} steps "
              f"({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f} s")
        measure("read", path, 1)  # warm the page cache so neither side pays the first disk read
        results = {task: measure(task, path, args.repeat) for task in TASKS}
    for task, r in results.items():
        print(f"{task:>13}: {r['seconds']:.2f} s  peak {r['peak_mb']:.0f} MB  (best of {args.repeat}, own process)")
    ratio = results["attribute"]["seconds"] / results["read"]["seconds"]
    peak = results["attribute"]["peak_mb"]
    print(f"attribute / read = {ratio:.2f}x (goal <= 2x); attribute peak {peak:.0f} MB "
          f"= {peak / results['read']['peak_mb']:.2f}x read's (goal < 1024 MB)")


if __name__ == "__main__":
    main()
