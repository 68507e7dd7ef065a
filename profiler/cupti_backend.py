"""The in-process CUPTI backend: activity records for kernels, memcpy, memset, runtime and driver API calls.

Step boundaries come from CUPTI's own clock (cupti.get_timestamp), the clock of the activity records, because
CUPTI delivers no NVTX marker records to a Python subscriber.
"""

import os
import threading
from pathlib import Path

from gapprof.errors import GapprofError
from gapprof.trace_schema import global_pid, global_tid

# One buffer large enough for a whole profiled phase: a buffer completing mid-run would run the Python callback
# on CUPTI's thread and stall the decode loop on the GIL for the time it takes to copy ~100k records.
BUFFER_BYTES = 256 * 1024 * 1024


def _import_cupti():
    try:
        from cupti import cupti
    except ImportError as error:
        raise GapprofError(
            f"--backend cupti needs cupti-python (`pip install -e '.[cupti]'` in the checkout): {error}"
        ) from None
    return cupti


class CuptiCollector:
    def __init__(self):
        self.cupti = _import_cupti()
        kind = self.cupti.ActivityKind
        self.kinds = [kind.CONCURRENT_KERNEL, kind.MEMCPY, kind.MEMSET, kind.RUNTIME, kind.DRIVER]
        self.enabled, self.registered = [], False
        self.kernels, self.memcpys, self.memsets, self.runtime_calls, self.driver_calls = [], [], [], [], []
        self.graphs = []
        self.pid = os.getpid()
        self.clock = self.cupti.get_timestamp

    def _gpu_op(self, a) -> dict:
        """The columns kernels, memcpys and memsets share."""
        return {
            "start": a.start,
            "end": a.end,
            "deviceId": a.device_id,
            "contextId": a.context_id,
            "streamId": a.stream_id,
            "correlationId": a.correlation_id,
            "globalPid": global_pid(self.pid),
            **({"graphNodeId": a.graph_node_id or None} if hasattr(a, "graph_node_id") else {}),
        }

    def _on_buffer(self, activities) -> None:
        # Runs on CUPTI's thread; copy out plain values, the records do not outlive the buffer.
        cupti, kind = self.cupti, self.cupti.ActivityKind
        for a in activities:
            if a.kind == kind.CONCURRENT_KERNEL:
                self.kernels.append(
                    {
                        **self._gpu_op(a),
                        "name": a.name,
                        "gridX": a.grid_x,
                        "gridY": a.grid_y,
                        "gridZ": a.grid_z,
                        "blockX": a.block_x,
                        "blockY": a.block_y,
                        "blockZ": a.block_z,
                    }
                )
            elif a.kind == kind.GRAPH_TRACE:
                # CUPTI names the graph, not its executable instance: graphExecId repeats graphId.
                self.graphs.append({**self._gpu_op(a), "graphId": a.graph_id, "graphExecId": a.graph_id})
            elif a.kind == kind.MEMCPY:
                self.memcpys.append(
                    {
                        **self._gpu_op(a),
                        "bytes": a.bytes,
                        "copyKind": a.copy_kind,
                        "srcKind": a.src_kind,
                        "dstKind": a.dst_kind,
                    }
                )
            elif a.kind == kind.MEMSET:
                self.memsets.append({**self._gpu_op(a), "value": a.value, "bytes": a.bytes, "memKind": a.memory_kind})
            elif a.kind in (kind.RUNTIME, kind.DRIVER):
                domain = cupti.CallbackDomain.RUNTIME_API if a.kind == kind.RUNTIME else cupti.CallbackDomain.DRIVER_API
                call = {
                    "start": a.start,
                    "end": a.end,
                    "globalTid": global_tid(a.process_id, a.thread_id),
                    "correlationId": a.correlation_id,
                    "name": cupti.get_callback_name(domain, a.cbid),
                    "returnValue": a.return_value,
                }
                (self.runtime_calls if a.kind == kind.RUNTIME else self.driver_calls).append(call)

    def _enable(self, kinds: list) -> None:
        import torch

        torch.cuda.synchronize()
        if not self.registered:  # once, before the first pass
            # System thread ids, so API records and the step ranges name the same thread.
            self.cupti.set_thread_id_type(self.cupti.ActivityThreadIdType.SYSTEM)
            self.cupti.activity_register_callbacks(lambda: (BUFFER_BYTES, 0), self._on_buffer)
            self.registered = True
        self.enabled = kinds
        for kind in kinds:
            self.cupti.activity_enable(kind)

    def start(self) -> None:
        self._enable(self.kinds)

    def arm_graph_level(self) -> None:
        """CUPTI records a graph's executions only if graph tracing was on when the graph was instantiated (switched
        on later, the first replay crashed: cupti-python 13.0.1, H100, 2026-11-27). So it is on, alone, through
        warm-up, where the runtimes build their graphs, and what it records there is dropped."""
        self._enable([self.cupti.ActivityKind.GRAPH_TRACE])

    def disarm(self) -> None:
        self.stop()
        self.graphs.clear()

    def start_graph_level(self) -> None:
        """One record per graph execution instead of one per kernel (CUPTI allows one of the two at a time)."""
        kind = self.cupti.ActivityKind
        self._enable([kind.GRAPH_TRACE, *(k for k in self.kinds if k != kind.CONCURRENT_KERNEL)])

    def stop(self) -> None:
        import torch

        torch.cuda.synchronize()
        for kind in self.enabled:
            self.cupti.activity_disable(kind)
        self.cupti.activity_flush_all(1)
        self.enabled = []

    def write(self, path, step_spans, meta: dict, graph_spans=()) -> None:
        import torch
        from gapprof.profiler.trace_writer import write_trace

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        gpu = {
            "id": torch.cuda.current_device(),
            "name": props.name,
            "totalMemory": props.total_memory,
            "smCount": props.multi_processor_count,
            "cuDevice": torch.cuda.current_device(),
        }
        write_trace(
            path,
            self.kernels,
            self.memcpys,
            self.memsets,
            self.runtime_calls,
            self.driver_calls,
            step_spans,
            gpu,
            meta,
            thread_id=threading.get_native_id(),
            pid=self.pid,
            graphs=self.graphs,
            graph_step_spans=graph_spans,
        )


def capture_with_cupti(request, output: Path, command: str) -> tuple[Path, dict]:
    """Run `request` in this process with CUPTI collecting; write the trace to `output`; return it and the metadata."""
    from gapprof.profiler.session import run_session  # torch

    collector = CuptiCollector()
    meta, spans = run_session(request, collector, clock=collector.clock)
    meta["command"] = command
    output.parent.mkdir(parents=True, exist_ok=True)
    collector.write(output, spans, meta, meta.pop("graph_level_spans", ()))
    return output, meta
