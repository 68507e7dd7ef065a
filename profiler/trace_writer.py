"""Write collected activity records into the nsys SQLite schema subset (see trace_schema), so one loader reads
CUPTI traces and nsys exports alike. Pure Python: records come in as dicts with plain values."""

import bisect
import os
import sqlite3
import threading
from pathlib import Path

from gapprof import trace_schema
from gapprof.kernel_names import demangle, short_name
from gapprof.nvtx_names import GRAPH_LEVEL_MESSAGE

# Frequent queries that neither launch work nor synchronise; nsys leaves them out of its CUDA trace, and so does
# gapprof, so that CUPTI and nsys traces list the same calls (cudaGetDevice alone is ~10,000 calls a step).
QUERY_CALLS = frozenset(
    {
        "cudaGetDevice",
        "cudaGetLastError",
        "cudaPeekAtLastError",
        "cudaGetErrorString",
        "cudaDeviceGetAttribute",
        "cudaFuncSetAttribute",
        "cuDevicePrimaryCtxGetState",
        "cuCtxGetCurrent",
        "cuGetErrorString",
        "cuDriverGetVersion",
        "cuCtxGetLimit",
        "cuDeviceGet",
    }
)


def is_query_call(name: str) -> bool:
    return trace_schema.api_name(name) in QUERY_CALLS


def app_driver_calls(driver_calls, runtime_calls):
    """Driver calls made by the application itself, as nsys records them.

    CUPTI also reports the driver calls a runtime call makes internally; their time is already inside that
    runtime call, so they are dropped: a driver call lying wholly within a runtime call on its thread.
    """
    by_thread: dict[int, list[tuple[int, int]]] = {}
    for call in runtime_calls:
        by_thread.setdefault(call["globalTid"], []).append((call["start"], call["end"]))
    for intervals in by_thread.values():
        intervals.sort()
    kept = []
    for call in driver_calls:
        intervals = by_thread.get(call["globalTid"], [])
        i = bisect.bisect_right(intervals, (call["start"], float("inf"))) - 1
        if i < 0 or intervals[i][1] < call["end"]:
            kept.append(call)
    return kept


class _Strings:
    def __init__(self):
        self.ids: dict[str, int] = {}

    def id(self, value: str) -> int:
        return self.ids.setdefault(value, len(self.ids) + 1)


def _step_ranges(spans, message_id: int, domain_id: int, thread: int, first_payload: int = 0) -> list[dict]:
    return [
        {
            "start": start,
            "end": end,
            "eventType": trace_schema.NVTX_PUSH_POP_RANGE,
            "textId": message_id,
            "domainId": domain_id,
            "globalTid": thread,
            "int64Value": first_payload + index,
        }
        for index, (start, end) in enumerate(spans)
    ]


def write_trace(
    path: Path,
    kernels,
    memcpys,
    memsets,
    runtime_calls,
    driver_calls,
    step_spans,
    gpu: dict,
    meta: dict,
    thread_id: int | None = None,
    pid: int | None = None,
    graphs=(),
    graph_step_spans=(),
) -> None:
    """Write one trace. step_spans are (start, end) per decode step on the records' clock, each step's payload
    its index since prefill (meta's first_profiled_index first), as capture's NVTX ranges carry it; graphs and
    graph_step_spans, of a graph-level pass: its graph executions and steps (GRAPH_LEVEL_MESSAGE, payloads from
    meta's graph_level_first_index).

    The payload goes where nsys puts the payload of a Python int: int64Value."""
    path = Path(path)
    path.unlink(missing_ok=True)
    pid = os.getpid() if pid is None else pid
    tid = threading.get_native_id() if thread_id is None else thread_id
    strings = _Strings()
    with sqlite3.connect(path) as conn:
        trace_schema.create_tables(conn)

        def named_kernel(kernel):
            full = demangle(kernel["name"])
            return {
                **kernel,
                "demangledName": strings.id(full),
                "shortName": strings.id(short_name(full)),
                "mangledName": strings.id(kernel["name"]),
            }

        trace_schema.insert_rows(conn, "CUPTI_ACTIVITY_KIND_KERNEL", [named_kernel(k) for k in kernels])
        trace_schema.insert_rows(conn, "CUPTI_ACTIVITY_KIND_MEMCPY", memcpys)
        trace_schema.insert_rows(conn, "CUPTI_ACTIVITY_KIND_MEMSET", memsets)
        trace_schema.insert_rows(conn, "CUPTI_ACTIVITY_KIND_GRAPH_TRACE", graphs)
        driver = app_driver_calls(driver_calls, runtime_calls)
        for table, calls in (("CUPTI_ACTIVITY_KIND_RUNTIME", runtime_calls), ("CUPTI_ACTIVITY_KIND_DRIVER", driver)):
            trace_schema.insert_rows(
                conn,
                table,
                [
                    {**call, "nameId": strings.id(call["name"]), "eventClass": 0}
                    for call in calls
                    if not is_query_call(call["name"])
                ],
            )

        domain_id = 1
        thread = trace_schema.global_tid(pid, tid)
        nvtx = [
            {
                "start": step_spans[0][0] if step_spans else 0,
                "eventType": trace_schema.NVTX_DOMAIN_CREATE,
                "domainId": domain_id,
                "text": meta.get("range_domain", "gapprof"),
                "globalTid": thread,
            }
        ]
        message_id = strings.id(meta.get("range_message", "decode_step"))
        nvtx += _step_ranges(step_spans, message_id, domain_id, thread, meta.get("first_profiled_index", 0))
        if graph_step_spans:
            nvtx += _step_ranges(
                graph_step_spans, strings.id(GRAPH_LEVEL_MESSAGE), domain_id, thread, meta["graph_level_first_index"]
            )
        trace_schema.insert_rows(conn, "NVTX_EVENTS", nvtx)
        trace_schema.insert_rows(conn, "TARGET_INFO_GPU", [gpu])
        trace_schema.insert_rows(conn, "StringIds", [{"id": i, "value": v} for v, i in strings.ids.items()])
        trace_schema.write_meta(conn, meta)
