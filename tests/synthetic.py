"""Synthetic traces in the nsys SQLite schema subset, built event by event so every number is known; the same
events can be written as a torch.profiler (Kineto) Chrome trace too."""

import gzip
import itertools
import json
import sqlite3
from pathlib import Path

from gapprof import trace_schema as ts

PID = 100
TID = ts.global_tid(PID, 100)
# CUPTI copyKind -> the direction Kineto writes in a memcpy's name.
COPY_DIRECTIONS = {1: "HtoD", 2: "DtoH", 8: "DtoD", 10: "PtoP"}
KINETO_GPU = {
    "CUPTI_ACTIVITY_KIND_KERNEL": "kernel",
    "CUPTI_ACTIVITY_KIND_MEMCPY": "gpu_memcpy",
    "CUPTI_ACTIVITY_KIND_MEMSET": "gpu_memset",
}
# Tables an `nsys profile -t cuda,nvtx` export has even when empty; the others exist only when used.
ALWAYS = ("StringIds", "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS")


class TraceBuilder:
    """Collects rows for the trace_schema tables; `write` creates the .sqlite. Times are integer ns."""

    def __init__(self):
        self.strings: dict[str, int] = {}
        self.rows: dict[str, list[dict]] = {name: [] for name in ts.TABLES}
        self._correlation = itertools.count(1)
        self.meta: dict | None = None

    def string(self, value: str) -> int:
        return self.strings.setdefault(value, len(self.strings) + 1)

    def domain(self, name: str, domain_id: int, tid: int = TID) -> None:
        self.rows["NVTX_EVENTS"].append(
            dict(start=0, eventType=ts.NVTX_DOMAIN_CREATE, text=name, domainId=domain_id, globalTid=tid)
        )

    def range(
        self,
        t0: int,
        t1: int,
        message: str = "decode_step",
        tid: int = TID,
        domain_id: int | None = None,
        payload: int | None = None,
        event_type: int = ts.NVTX_PUSH_POP_RANGE,
    ) -> None:
        """A default-domain range keeps its message in `text`; a named domain's goes through StringIds."""
        row = dict(start=t0, end=t1, eventType=event_type, globalTid=tid, endGlobalTid=tid, uint64Value=payload)
        if domain_id is None:
            row["text"] = message
        else:
            row.update(textId=self.string(message), domainId=domain_id)
        self.rows["NVTX_EVENTS"].append(row)

    def call(
        self, start: int, end: int, name: str = "cudaLaunchKernel_v7000", tid: int = TID, driver: bool = False
    ) -> int:
        correlation = next(self._correlation)
        table = "CUPTI_ACTIVITY_KIND_DRIVER" if driver else "CUPTI_ACTIVITY_KIND_RUNTIME"
        self.rows[table].append(
            dict(
                start=start,
                end=end,
                eventClass=1,
                globalTid=tid,
                correlationId=correlation,
                nameId=self.string(name),
                returnValue=0,
            )
        )
        return correlation

    def kernel(
        self,
        start: int,
        end: int,
        correlation: int,
        name: str = "kernel",
        stream: int = 7,
        pid: int = PID,
        full_name: str | None = None,
    ) -> None:
        self.rows["CUPTI_ACTIVITY_KIND_KERNEL"].append(
            dict(
                start=start,
                end=end,
                deviceId=0,
                contextId=1,
                streamId=stream,
                correlationId=correlation,
                globalPid=ts.global_pid(pid),
                shortName=self.string(name),
                demangledName=self.string(full_name or f"void {name}<float>(int)"),
            )
        )

    def memcpy(self, start: int, end: int, correlation: int, copy_kind: int = 2, stream: int = 7) -> None:
        self.rows["CUPTI_ACTIVITY_KIND_MEMCPY"].append(
            dict(
                start=start,
                end=end,
                deviceId=0,
                contextId=1,
                streamId=stream,
                correlationId=correlation,
                globalPid=ts.global_pid(PID),
                bytes=4,
                copyKind=copy_kind,
            )
        )

    def memset(self, start: int, end: int, correlation: int, stream: int = 7) -> None:
        self.rows["CUPTI_ACTIVITY_KIND_MEMSET"].append(
            dict(
                start=start,
                end=end,
                deviceId=0,
                contextId=1,
                streamId=stream,
                correlationId=correlation,
                globalPid=ts.global_pid(PID),
                value=0,
                bytes=4,
            )
        )

    def graph(self, start: int, end: int, correlation: int, exec_id: int = 1, stream: int = 7) -> None:
        """One graph execution of a graph-level trace (its nodes untraced)."""
        self.rows["CUPTI_ACTIVITY_KIND_GRAPH_TRACE"].append(
            dict(
                start=start,
                end=end,
                deviceId=0,
                contextId=1,
                streamId=stream,
                correlationId=correlation,
                globalPid=ts.global_pid(PID),
                graphId=exec_id,
                graphExecId=exec_id,
            )
        )

    def launch(
        self, call_start: int, call_end: int, gpu_start: int, gpu_end: int, name: str = "kernel", **kernel
    ) -> int:
        """A cudaLaunchKernel call and the kernel it launched."""
        correlation = self.call(call_start, call_end)
        self.kernel(gpu_start, gpu_end, correlation, name, **kernel)
        return correlation

    def gpu_info(self, name: str, bandwidth: int | None) -> None:
        self.rows["TARGET_INFO_GPU"].append(dict(id=0, name=name, memoryBandwidth=bandwidth))

    def write(self, path: Path, skip_tables: tuple = ()) -> Path:
        """Write the tables that have rows (as nsys does), minus skip_tables, plus StringIds."""
        conn = sqlite3.connect(path)
        self.rows["StringIds"] = [dict(id=i, value=v) for v, i in self.strings.items()]
        present = {
            name: cols
            for name, cols in ts.TABLES.items()
            if (self.rows[name] or name in ALWAYS) and name not in skip_tables and name != ts.META_TABLE
        }
        ts.create_tables(conn, present)
        for name in present:
            ts.insert_rows(conn, name, self.rows[name])
        conn.commit()
        if self.meta is not None:
            ts.write_meta(conn, self.meta)
        conn.close()
        return path

    def kineto_events(self) -> list[dict]:
        """The ranges, API calls and GPU ops as Kineto writes them ('X' events, times in µs); metadata and
        domains have no Kineto form and are left out."""
        names = {i: v for v, i in self.strings.items()}
        events = []

        def event(cat, name, start, end, pid, tid, **args):
            # Test times are small integer ns, so ns / 1000 prints as Kineto's three-decimal µs exactly.
            events.append(
                dict(ph="X", cat=cat, name=name, pid=pid, tid=tid, ts=start / 1000, dur=(end - start) / 1000, args=args)
            )

        for row in self.rows["NVTX_EVENTS"]:
            if row["eventType"] != ts.NVTX_DOMAIN_CREATE and row["end"] is not None:
                event(
                    "user_annotation",
                    row.get("text") or names[row["textId"]],
                    row["start"],
                    row["end"],
                    *_pid_tid(row["globalTid"]),
                )
        for table, cat in (
            ("CUPTI_ACTIVITY_KIND_RUNTIME", "cuda_runtime"),
            ("CUPTI_ACTIVITY_KIND_DRIVER", "cuda_driver"),
        ):
            for row in self.rows[table]:
                event(
                    cat,
                    ts.api_name(names[row["nameId"]]),
                    row["start"],
                    row["end"],
                    *_pid_tid(row["globalTid"]),
                    correlation=row["correlationId"],
                )
        for table, cat in KINETO_GPU.items():
            for row in self.rows[table]:
                event(
                    cat,
                    _kineto_gpu_name(cat, row, names),
                    row["start"],
                    row["end"],
                    row["deviceId"],
                    row["streamId"],
                    device=row["deviceId"],
                    stream=row["streamId"],
                    correlation=row["correlationId"],
                )
        return events

    def write_kineto(self, path: Path) -> Path:
        """Write the events as torch.profiler's export_chrome_trace does (gzipped for a .gz path)."""
        gpus = [dict(id=row["id"], name=row["name"]) for row in self.rows["TARGET_INFO_GPU"]]
        text = json.dumps({"schemaVersion": 1, "deviceProperties": gpus, "traceEvents": self.kineto_events()})
        path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
        return path


def _pid_tid(global_tid: int) -> tuple[int, int]:
    return global_tid >> ts.TID_BITS, global_tid & ((1 << ts.TID_BITS) - 1)


def _kineto_gpu_name(cat: str, row: dict, names: dict[int, str]) -> str:
    """A GPU op's name as Kineto writes it: the demangled kernel name, or the copy direction and memory kinds."""
    if cat == "kernel":
        return names[row["demangledName"]]
    if cat == "gpu_memcpy":
        return f"Memcpy {COPY_DIRECTIONS[row['copyKind']]} (Device -> Pinned)"
    return "Memset (Device)"


# Unmarked decode, as programs that mark no step record it (analysis.step_finding finds the steps).
DECODE_KERNELS = ("embed", "gemv", "argmax")
SYNC_CALL = "cudaStreamSynchronize_v3020"
GRAPH_LAUNCH = "cudaGraphLaunch_v10000"


def _launch(b: TraceBuilder, call: int, start: int, end: int, name: str, tid: int) -> None:
    """A 10 ns cudaLaunchKernel call on thread `tid` at `call` and its kernel."""
    b.kernel(start, end, b.call(call, call + 10, tid=tid), name)


def unmarked_prefill(b: TraceBuilder, o: int, tid: int = TID) -> int:
    """A prefill of kernels no decode step runs, its token copied back and waited for; returns when the wait
    ends (o + 1000), where the first decode step begins."""
    for i, name in enumerate(("prefill_gemm", "prefill_attention")):
        _launch(b, o + 10 + 10 * i, o + 100 + 300 * i, o + 350 + 300 * i, name, tid)
    copy = b.call(o + 40, o + 45, "cudaMemcpyAsync_v3020", tid=tid)
    b.memcpy(o + 700, o + 720, copy)
    b.call(o + 50, o + 1000, SYNC_CALL, tid=tid)
    return o + 1000


def host_synced_step(b: TraceBuilder, o: int, tid: int = TID, cut: bool = False) -> int:
    """A decode step whose host waits for the token, from o (the previous wait's end); returns its end, o + 430:
    wall 430 = busy 260 + starved 20 + latency 40 + head 100 + tail 10. With `cut`, the trace ends after the
    first two launches."""
    # Kernels at 100, 200, 300 (80 ns): the gap before the third is starved (its launch began at 290 > 280).
    for i, call in enumerate((50, 70, 290)[: 2 if cut else 3]):
        _launch(b, o + call, o + 100 + 100 * i, o + 180 + 100 * i, DECODE_KERNELS[i], tid)
    if cut:
        return o
    copy = b.call(o + 300, o + 305, "cudaMemcpyAsync_v3020", tid=tid)
    b.memcpy(o + 400, o + 420, copy)  # the gaps before the second kernel and the copy: latency 20 each
    b.call(o + 310, o + 430, SYNC_CALL, tid=tid)
    return o + 430


def host_synced_decode(b: TraceBuilder, o: int, steps: int, tid: int = TID) -> int:
    """A generate() call: a prefill, then `steps` host-synced steps; returns when the last one ends."""
    o = unmarked_prefill(b, o, tid)
    for _ in range(steps):
        o = host_synced_step(b, o, tid)
    return o


# A CUDA-graph decode loop that never waits for a token: one graph launch a step (3 kernels of 80 ns, 20 ns apart),
# the host running ahead, except before step 3, launched after the GPU ran out of work: (launch call, first
# kernel's start) per step.
RUN_AHEAD = ((100, 1000), (150, 1300), (200, 1600), (1950, 2000), (1960, 2300), (1970, 2600))


def run_ahead_decode(b: TraceBuilder) -> None:
    """RUN_AHEAD's steps after an eager prefill. On the GPU timeline: step 0 wall 280 = busy 240 + latency 40;
    step 3 (1880 to 2280) 400 = 240 + starved 120 + latency 40; the others 300 = 240 + latency 60."""
    b.launch(10, 15, 20, 900, "prefill_gemm")
    for call, start in RUN_AHEAD:
        graph = b.call(call, call + 5, GRAPH_LAUNCH)
        for i in range(3):
            b.kernel(start + 100 * i, start + 100 * i + 80, graph, DECODE_KERNELS[i])
