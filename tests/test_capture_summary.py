"""capture's one-line summary: ops per step from whichever GPU op tables the trace has."""

import sqlite3

from gapprof.commands.capture_cli import summary_line
from gapprof.trace_schema import ops_per_step

META = {
    "model": "qwen2.5-7b",
    "runtime": "graphs",
    "ctx": 2048,
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "profiled_step_ms": [8.0, 8.2, 8.4],
    "unprofiled_step_ms": [8.0, 8.1, 8.3],
}


def _trace(path, tables: dict[str, int]):
    with sqlite3.connect(path) as conn:
        for table, rows in tables.items():
            conn.execute(f"CREATE TABLE {table} (start INTEGER, end INTEGER)")
            conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", [(i, i + 1) for i in range(rows)])
    return path


def test_graph_level_trace_has_no_kernel_table(tmp_path):
    path = _trace(tmp_path / "g.sqlite", {"CUPTI_ACTIVITY_KIND_GRAPH_TRACE": 24, "CUPTI_ACTIVITY_KIND_MEMCPY": 3})
    assert ops_per_step(path, 24) == (0.0, 1.0)
    line = summary_line({**META, "graph_level_step_ms": [7.9, 8.0, 8.05]}, ops_per_step(path, 24))
    assert line.endswith(
        "8.20 ms profiled, 8.10 ms unprofiled, 8.00 ms graph level, 0 kernels and 1 CUDA graph executions per step"
    )


def test_node_level_trace_counts_kernels_only(tmp_path):
    path = _trace(tmp_path / "n.sqlite", {"CUPTI_ACTIVITY_KIND_KERNEL": 48})
    assert ops_per_step(path, 24) == (2.0, 0.0)
    assert summary_line(META, ops_per_step(path, 24)).endswith("8.10 ms unprofiled, 2 kernels per step")
