"""Benchmark: what a user waits for. `gapprof attribute` as a whole process (start-up included) on synthetic nsys
traces of 1M to 10M kernels, against the fastest read of the same rows and columns by other means.

    python benchmarks/bench_attribute.py [--sizes 1M,2M,5M,10M] [--per-step K] [--repeat R] [--dir /tmp]

Each size is generated into --dir (the nsys schema subset: kernels carrying their process id as real exports do,
their cudaLaunchKernel calls, a memcpy and a sync per step, NVTX steps in the gapprof domain; 10M kernels take
845 MiB of disk), measured, then deleted. Every measurement is a fresh process run under `/usr/bin/time -v`:
wall time and peak RSS, imports included. The reads fetch the columns attribute uses from the same tables into
polars frames through sqlite3 (Python rows), ADBC (Arrow, large batches) and connectorx (Arrow, where installed);
the fastest is the baseline of the ratio.
"""

import argparse
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from gapprof import trace_schema as ts

PID, TID = 4242, 4243
NAMES = 50
CHUNK_STEPS = 1_000  # steps generated and written at a time, so generating 10M kernels stays in bounded memory

# The columns attribute reads, table by table (analysis/readers/nsys.py): the rows a read must match.
READ_QUERIES = (
    'SELECT start, "end", deviceId, streamId, correlationId, globalPid, shortName, demangledName '
    "FROM CUPTI_ACTIVITY_KIND_KERNEL",
    'SELECT start, "end", deviceId, streamId, correlationId, globalPid, copyKind FROM CUPTI_ACTIVITY_KIND_MEMCPY',
    'SELECT start, "end", globalTid, correlationId, nameId FROM CUPTI_ACTIVITY_KIND_RUNTIME',
    'SELECT start, "end", globalTid, eventType, text, textId, domainId, uint64Value FROM NVTX_EVENTS',
    "SELECT id, value FROM StringIds",
)


def _step_chunk(first: int, steps: int, per_step: int, rng) -> dict[str, pl.DataFrame]:
    """Steps first .. first + steps - 1. Step s: per_step launches 4 µs apart; each kernel runs about 2.5 µs
    starting 5 µs after its call, so the GPU idles between kernels (latency) and, every 10th launch, waits 20 µs
    more for a late call (starved); then a memcpy of the token and a sync."""
    tid, pid = ts.global_tid(PID, TID), ts.global_pid(PID)
    kernels = steps * per_step
    i = np.arange(kernels) + first * per_step
    within, step = i % per_step, i // per_step
    late = (within % 10 == 9) * 20_000
    step_start = step * (per_step * 4_000 + per_step // 10 * 20_000 + 200_000)
    call_start = step_start + 10_000 + within * 4_000 + np.cumsum(late.reshape(steps, per_step), axis=1).ravel()
    corr = i * 2 + 1
    k_start = call_start + 5_000
    k_end = k_start + 2_500 + rng.integers(0, 500, kernels)
    name = within % NAMES
    launch, memcpy, sync, message = 2 * NAMES, 2 * NAMES + 1, 2 * NAMES + 2, 2 * NAMES + 3
    kernel = pl.DataFrame(
        {
            "start": k_start,
            "end": k_end,
            "deviceId": 0,
            "contextId": 1,
            "streamId": 7,
            "correlationId": corr,
            "globalPid": pid,
            "demangledName": name + NAMES,
            "shortName": name,
        }
    )
    last_end = k_end.reshape(steps, per_step).max(axis=1)
    last_call = call_start.reshape(steps, per_step)[:, -1]
    s = np.arange(first, first + steps)
    copy_call = last_call + 4_000
    copy_corr = s * 2 * per_step + 2  # even ids: unused by kernels
    calls = (
        pl.concat(
            [
                pl.DataFrame({"start": call_start, "end": call_start + 3_000, "correlationId": corr, "nameId": launch}),
                pl.DataFrame(
                    {"start": copy_call, "end": copy_call + 2_000, "correlationId": copy_corr, "nameId": memcpy}
                ),
                pl.DataFrame(
                    {"start": copy_call + 2_500, "end": last_end + 12_000, "correlationId": None, "nameId": sync},
                    schema_overrides={"correlationId": pl.Int64},
                ),
            ]
        )
        .with_columns(eventClass=pl.lit(1), globalTid=pl.lit(tid), returnValue=pl.lit(0))
        .sort("start")
    )
    copies = pl.DataFrame(
        {
            "start": last_end + 1_000,
            "end": last_end + 3_000,
            "deviceId": 0,
            "contextId": 1,
            "streamId": 7,
            "correlationId": copy_corr,
            "globalPid": pid,
            "bytes": 4,
            "copyKind": 2,
        }
    )
    ranges = pl.DataFrame(
        {
            "start": step_start[::per_step],
            "end": last_end + 15_000,
            "eventType": ts.NVTX_PUSH_POP_RANGE,
            "globalTid": tid,
            "endGlobalTid": tid,
            "textId": message,
            "domainId": 1,
            "uint64Value": s,
        }
    )
    return {
        "CUPTI_ACTIVITY_KIND_KERNEL": kernel,
        "CUPTI_ACTIVITY_KIND_RUNTIME": calls,
        "CUPTI_ACTIVITY_KIND_MEMCPY": copies,
        "NVTX_EVENTS": ranges,
    }


def generate(path: Path, kernels: int, per_step: int) -> None:
    """An nsys-schema .sqlite of `kernels` kernels in steps of `per_step`, written through ADBC in chunks."""
    import adbc_driver_sqlite.dbapi as adbc

    conn = sqlite3.connect(path)
    ts.create_tables(conn, {k: v for k, v in ts.TABLES.items() if k != ts.META_TABLE})
    strings = (
        [(n, f"kernel_{n}") for n in range(NAMES)]
        + [(n + NAMES, f"void kernel_{n}<float>(float*)") for n in range(NAMES)]
        + [
            (2 * NAMES, "cudaLaunchKernel_v7000"),
            (2 * NAMES + 1, "cudaMemcpyAsync_v3020"),
            (2 * NAMES + 2, "cudaStreamSynchronize_v3020"),
            (2 * NAMES + 3, "decode_step"),
        ]
    )
    conn.executemany("INSERT INTO StringIds VALUES (?, ?)", strings)
    conn.execute(
        f"INSERT INTO NVTX_EVENTS (start, eventType, text, domainId, globalTid) "
        f"VALUES (0, {ts.NVTX_DOMAIN_CREATE}, 'gapprof', 1, {ts.global_tid(PID, TID)})"
    )
    conn.commit()
    conn.close()
    rng = np.random.default_rng(0)
    steps = kernels // per_step
    with adbc.connect(str(path)) as conn:
        cursor = conn.cursor()
        for first in range(0, steps, CHUNK_STEPS):
            for table, frame in _step_chunk(first, min(CHUNK_STEPS, steps - first), per_step, rng).items():
                cursor.adbc_ingest(table, frame, mode="append")
        conn.commit()


def read_sqlite3(path: str) -> int:
    conn = sqlite3.connect(path)
    rows = 0
    for query in READ_QUERIES:
        cursor = conn.execute(query)
        columns = [c[0] for c in cursor.description]
        rows += pl.DataFrame(cursor.fetchall(), schema=columns, orient="row", infer_schema_length=None).height
    return rows


def read_adbc(path: str) -> int:
    import adbc_driver_sqlite.dbapi as adbc
    from adbc_driver_sqlite import StatementOptions

    rows = 0
    with adbc.connect(path) as conn:
        for query in READ_QUERIES:
            cursor = conn.cursor()
            # Large batches: fewer, bigger Arrow chunks (the default is 1,024 rows a batch).
            cursor.adbc_statement.set_options(**{StatementOptions.BATCH_ROWS.value: "1000000"})
            cursor.execute(query)
            rows += pl.DataFrame(cursor.fetch_arrow()).height
            cursor.close()
    return rows


def read_connectorx(path: str) -> int:
    import connectorx

    return sum(
        connectorx.read_sql(f"sqlite://{Path(path).resolve()}", query, return_type="polars").height
        for query in READ_QUERIES
    )


def _connectorx_installed() -> bool:
    return subprocess.run([sys.executable, "-c", "import connectorx"], capture_output=True).returncode == 0


READS = {"sqlite3": read_sqlite3, "adbc": read_adbc, "connectorx": read_connectorx}


def timed(command: list[str]) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of `command` run under /usr/bin/time -v, its stdout discarded."""
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    clock = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = clock.groups()
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), peak_kib / 1024


def best(command: list[str], repeat: int) -> tuple[float, float]:
    """Least time and greatest peak over `repeat` runs."""
    runs = [timed(command) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def size(text: str) -> int:
    """1M -> 1,000,000; 500k -> 500,000; 2000 -> 2,000."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def measure(kernels: int, per_step: int, repeat: int, folder: Path, reads: list[str]) -> dict:
    path = folder / f"bench-{kernels}.sqlite"
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    generate(path, kernels, per_step)
    print(
        f"{kernels:,} kernels in {kernels // per_step:,} steps: {path.stat().st_size / 2**20:,.0f} MiB, "
        f"generated in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    try:
        timed(["cat", str(path)])  # the page cache holds the file for every process after
        row = {"attribute": best([sys.executable, "-m", "gapprof", "attribute", str(path)], repeat)}
        for read in reads:
            row[read] = best([sys.executable, __file__, "--read", read, str(path)], repeat)
    finally:
        path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,2M", help="kernel counts, comma-separated (1M,2M,5M,10M)")
    parser.add_argument("--per-step", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each process: least time, greatest peak")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where traces are generated")
    parser.add_argument("--read", nargs=2, metavar=("HOW", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        return print(READS[args.read[0]](args.read[1]))
    reads = [r for r in READS if r != "connectorx" or _connectorx_installed()]
    print(
        "| kernels | attribute s | " + " | ".join(f"{r} s" for r in reads) + " | fastest read | ratio "
        "| attribute peak MiB | fastest read peak MiB |"
    )
    print("|---" * (len(reads) + 6) + "|")
    for kernels in map(size, args.sizes.split(",")):
        row = measure(kernels, args.per_step, args.repeat, args.dir, reads)
        fastest = min(reads, key=lambda r: row[r][0])
        attribute_s, attribute_peak = row["attribute"]
        print(
            f"| {kernels / 1e6:g}M | {attribute_s:.2f} | "
            + " | ".join(f"{row[r][0]:.2f}" for r in reads)
            + f" | {fastest} | {attribute_s / row[fastest][0]:.2f}x | {attribute_peak:,.0f} "
            f"| {row[fastest][1]:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
