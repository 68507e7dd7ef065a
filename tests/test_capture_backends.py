"""The nsys command line, nsys discovery, the CUPTI trace writer against the loader, and capture's CLI errors."""

import sqlite3
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from gapprof.profiler import nsys_capture as nsys
from gapprof.profiler import profiled_session
from gapprof.profiler.trace_writer import app_driver_calls, is_query_call, write_trace

from gapprof import nsight, trace_schema
from gapprof.cli import main
from gapprof.commands import options
from gapprof.errors import GapprofError
from gapprof.kernel_names import demangle, short_name


def test_profile_command_traces_cuda_and_nvtx_only_within_the_profiled_phase(tmp_path):
    argv = nsys.profile_command("/x/nsys", tmp_path / "run")
    assert argv[:2] == ["/x/nsys", "profile"]
    joined = " ".join(argv)
    for flag in (
        "-t cuda,nvtx",
        "-s none",
        "--cpuctxsw=none",
        "--cuda-graph-trace=node",
        "--capture-range=cudaProfilerApi",
        f"-o {tmp_path / 'run'}",
    ):
        assert flag in joined
    assert argv[-2:] == ["-o", str(tmp_path / "run")]
    child = profiled_session.session_argv(tmp_path / "req.json", tmp_path / "meta.json")
    assert child == [
        sys.executable,
        "-m",
        "gapprof.profiler.session",
        str(tmp_path / "req.json"),
        str(tmp_path / "meta.json"),
    ]
    assert nsight.nsys_export_command("/x/nsys", Path("a.nsys-rep"), Path("a.sqlite")) == [
        "/x/nsys",
        "export",
        "--type",
        "sqlite",
        "--force-overwrite=true",
        "-o",
        "a.sqlite",
        "a.nsys-rep",
    ]


def test_nsys_is_found_through_gapprof_nsys_then_path(tmp_path, monkeypatch):
    fake = tmp_path / "nsys"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("GAPPROF_NSYS", str(fake))
    assert nsight.find_nsys() == str(fake)
    monkeypatch.delenv("GAPPROF_NSYS")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nsight.find_nsys() == str(fake)


def test_missing_nsys_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GAPPROF_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(nsight, "NSYS_GLOBS", [str(tmp_path / "none" / "nsys")])
    with pytest.raises(GapprofError, match="nsys not found"):
        nsight.find_nsys()
    monkeypatch.setenv("GAPPROF_NSYS", str(tmp_path / "missing"))
    with pytest.raises(GapprofError, match="not an executable nsys"):
        nsight.find_nsys()


def test_kernel_names_are_demangled_and_shortened_as_nsys_does():
    mangled = "_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_11FillFunctorIfEESt5arrayIPcLm1EEEEviT0_T1_"
    full = demangle(mangled)
    assert full.startswith("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>")
    assert short_name(full) == "vectorized_elementwise_kernel"
    assert demangle("nvjet_sm90_tst_64x8_64x16_2x1_v_bz_splitK_TNT") == "nvjet_sm90_tst_64x8_64x16_2x1_v_bz_splitK_TNT"
    assert (
        short_name(
            "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8>"
            "(cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2_tn_align8::Params)"
        )
        == "Kernel2"
    )


def test_driver_calls_inside_runtime_calls_and_query_calls_are_dropped():
    runtime = [{"globalTid": 1, "start": 10, "end": 20}, {"globalTid": 1, "start": 30, "end": 40}]
    driver = [
        {"globalTid": 1, "start": 12, "end": 18},
        {"globalTid": 1, "start": 21, "end": 22},
        {"globalTid": 2, "start": 12, "end": 13},
        {"globalTid": 1, "start": 35, "end": 45},
    ]
    assert [(c["globalTid"], c["start"]) for c in app_driver_calls(driver, runtime)] == [(1, 21), (2, 12), (1, 35)]
    assert is_query_call("cudaGetDevice_v3020") and is_query_call("cuCtxGetCurrent")
    assert not is_query_call("cudaLaunchKernel_v7000")


PID, TID = 4242, 4243


def _call(start, end, correlation, name="cudaLaunchKernel_v7000"):
    return {
        "start": start,
        "end": end,
        "globalTid": trace_schema.global_tid(PID, TID),
        "correlationId": correlation,
        "name": name,
        "returnValue": 0,
    }


def _kernel(start, end, correlation, name="_Z6gemv_kPfS_"):
    return {
        "start": start,
        "end": end,
        "deviceId": 0,
        "contextId": 1,
        "streamId": 7,
        "correlationId": correlation,
        "globalPid": trace_schema.global_pid(PID),
        "name": name,
        "gridX": 1,
        "gridY": 1,
        "gridZ": 1,
        "blockX": 128,
        "blockY": 1,
        "blockZ": 1,
    }


def test_cupti_trace_has_the_schema_the_loader_reads_and_attributes_exactly(tmp_path):
    pytest.importorskip("polars")
    from gapprof.analysis.attribution import Options, analyze, kernel_table

    # Two steps of [0, 100) and [200, 300): launch at 10 -> kernel 20..50, launch at 60 -> kernel 70..80, then
    # a sync 80..95 whose memcpy runs 82..90. Step 2 is step 1 shifted by 200.
    calls, kernels, memcpys = [], [], []
    for base, corr in ((0, 1), (200, 10)):
        calls += [
            _call(base + 10, base + 15, corr),
            _call(base + 60, base + 65, corr + 1),
            _call(base + 80, base + 95, corr + 2, "cudaMemcpyAsync_v3020"),
        ]
        kernels += [_kernel(base + 20, base + 50, corr), _kernel(base + 70, base + 80, corr + 1)]
        memcpys.append(
            {
                "start": base + 82,
                "end": base + 90,
                "deviceId": 0,
                "contextId": 1,
                "streamId": 7,
                "correlationId": corr + 2,
                "globalPid": trace_schema.global_pid(PID),
                "bytes": 8,
                "copyKind": 2,
            }
        )
    driver = [_call(11, 12, 99, "cuLaunchKernel"), _call(500, 501, 98, "cuCtxGetCurrent")]
    path = tmp_path / "cupti.sqlite"
    meta = {
        "model": "tiny-qwen2",
        "ctx": 16,
        "warmup": 0,
        "range_message": "decode_step",
        "range_domain": "gapprof",
        "dtype_bytes": 4,
        "dtype": "float32",
    }
    write_trace(
        path,
        kernels,
        memcpys,
        [],
        calls,
        driver,
        [(0, 100), (200, 300)],
        {"id": 0, "name": "NVIDIA H100 80GB HBM3", "totalMemory": 1},
        meta,
        thread_id=TID,
        pid=PID,
    )

    with sqlite3.connect(path) as conn:
        for table in trace_schema.TABLES:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            assert columns == trace_schema.column_names(table), table
        (driver_rows,) = conn.execute("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_DRIVER").fetchone()
        assert driver_rows == 0  # one call inside a runtime call, one query call
        assert trace_schema.read_meta_text(conn)["model"] == '"tiny-qwen2"'

    result = analyze(path, Options(skip=0))
    steps = result.steps.sort("t0")
    assert steps["wall"].to_list() == [100, 100]
    assert steps["busy"].to_list() == [48, 48]  # 30 + 10 + 8
    assert steps["head"].to_list() == [20, 20]
    assert steps["tail"].to_list() == [10, 10]  # memcpy ends at 90, range at 100
    assert steps["starved"].to_list() == [20, 20]  # 50..70: its kernel was launched at 60 > 50
    assert steps["latency"].to_list() == [2, 2]  # 80..82: the memcpy was submitted at 80
    assert steps["kernels"].to_list() == [2, 2]
    short = set(kernel_table(result)["name"].to_list())
    assert short == {"gemv_k", "[memcpy DtoH]"}


def test_capture_errors_are_one_line(monkeypatch):
    monkeypatch.setattr(options, "check_session_device", lambda *_: None)  # as on a machine with a GPU
    runner = CliRunner()
    unknown = runner.invoke(main, ["capture", "--model", "gpt-5"])
    assert unknown.exit_code == 1 and "unknown model 'gpt-5'" in unknown.output and "qwen2.5-7b" in unknown.output
    too_long = runner.invoke(main, ["capture", "--model", "tiny-qwen2", "--ctx", "600"])
    assert too_long.exit_code == 1 and "positions; tiny-qwen2 has 512" in too_long.output
    assert "Traceback" not in unknown.output + too_long.output


def test_capture_without_a_gpu_says_so(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(main, ["capture", "--model", "tiny-qwen2", "--ctx", "16"])
    assert result.exit_code == 1
    assert "needs a CUDA GPU" in result.output
    # The missing GPU is said first, not a complaint about options that would not help.
    too_long = CliRunner().invoke(main, ["capture", "--model", "tiny-qwen2", "--ctx", "600"])
    assert "needs a CUDA GPU" in too_long.output and "positions" not in too_long.output


def test_models_lists_parameter_bytes(tmp_path):
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    assert "qwen2.5-7b" in result.output and "15,231,233,024" in result.output
    written = CliRunner().invoke(main, ["models", "-o", str(tmp_path / "models.txt")])
    assert written.exit_code == 0 and (tmp_path / "models.txt").read_text() == result.output


@pytest.mark.parametrize("command", ["capture", "ncu", "ab", "sweep"])
def test_session_commands_without_torch_say_what_to_install(monkeypatch, command):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError, as on an analysis-only install
    # Imported afresh, as in a new process.
    for module in ("profiler.session", "profiler.runtimes", "profiler.timing_child"):
        monkeypatch.delitem(sys.modules, f"gapprof.{module}", raising=False)
    result = CliRunner().invoke(main, [command])
    assert result.exit_code == 1
    assert "needs torch and transformers: `pip install -e '.[capture]'` in the gapprof checkout" in result.output
    assert "Traceback" not in result.output


def test_cupti_records_become_trace_rows(monkeypatch):
    import enum
    import types

    from gapprof.profiler.cupti_backend import CuptiCollector

    # A stand-in for cupti-python's module: just the names the collector's buffer callback reads.
    kinds = enum.IntEnum("ActivityKind", "CONCURRENT_KERNEL MEMCPY MEMSET RUNTIME DRIVER GRAPH_TRACE")
    domains = enum.IntEnum("CallbackDomain", "RUNTIME_API DRIVER_API")
    fake = types.SimpleNamespace(
        ActivityKind=kinds,
        CallbackDomain=domains,
        get_timestamp=lambda: 0,
        get_callback_name=lambda domain, cbid: f"{domain.name}:{cbid}",
    )
    monkeypatch.setitem(sys.modules, "cupti", types.SimpleNamespace(cupti=fake))
    gpu = dict(start=10, end=20, device_id=0, context_id=1, stream_id=7, correlation_id=5, graph_node_id=0)
    records = [
        types.SimpleNamespace(
            kind=kinds.CONCURRENT_KERNEL,
            name="_Z4gemvv",
            grid_x=1,
            grid_y=2,
            grid_z=3,
            block_x=4,
            block_y=5,
            block_z=6,
            **gpu,
        ),
        types.SimpleNamespace(
            kind=kinds.MEMCPY, bytes=8, copy_kind=2, src_kind=3, dst_kind=1, **{**gpu, "graph_node_id": 9}
        ),
        types.SimpleNamespace(kind=kinds.MEMSET, value=0, bytes=16, memory_kind=3, **gpu),
        types.SimpleNamespace(
            kind=kinds.RUNTIME,
            start=1,
            end=2,
            process_id=PID,
            thread_id=TID,
            correlation_id=5,
            cbid=211,
            return_value=0,
        ),
        types.SimpleNamespace(
            kind=kinds.DRIVER, start=3, end=4, process_id=PID, thread_id=TID, correlation_id=6, cbid=307, return_value=0
        ),
        types.SimpleNamespace(
            kind=kinds.GRAPH_TRACE, graph_id=12, **{k: v for k, v in gpu.items() if k != "graph_node_id"}
        ),
    ]
    collector = CuptiCollector()
    collector.pid = PID
    collector._on_buffer(records)
    common = {
        "start": 10,
        "end": 20,
        "deviceId": 0,
        "contextId": 1,
        "streamId": 7,
        "correlationId": 5,
        "globalPid": trace_schema.global_pid(PID),
    }
    assert collector.kernels == [
        {
            **common,
            "graphNodeId": None,
            "name": "_Z4gemvv",
            "gridX": 1,
            "gridY": 2,
            "gridZ": 3,
            "blockX": 4,
            "blockY": 5,
            "blockZ": 6,
        }
    ]
    assert collector.memcpys == [{**common, "graphNodeId": 9, "bytes": 8, "copyKind": 2, "srcKind": 3, "dstKind": 1}]
    assert collector.memsets == [{**common, "graphNodeId": None, "value": 0, "bytes": 16, "memKind": 3}]
    assert collector.graphs == [{**common, "graphId": 12, "graphExecId": 12}]
    thread = trace_schema.global_tid(PID, TID)
    assert collector.runtime_calls == [
        {"start": 1, "end": 2, "globalTid": thread, "correlationId": 5, "name": "RUNTIME_API:211", "returnValue": 0}
    ]
    assert collector.driver_calls == [
        {"start": 3, "end": 4, "globalTid": thread, "correlationId": 6, "name": "DRIVER_API:307", "returnValue": 0}
    ]


def test_graph_tracing_is_armed_through_warm_up_and_its_records_dropped(monkeypatch):
    """CUPTI traces only the graphs instantiated while graph tracing is on (switched on later, the first replay
    crashed), so a two-pass capture arms it, alone, for warm-up and drops what warm-up recorded."""
    import enum
    import types

    from gapprof.profiler.cupti_backend import CuptiCollector

    torch = pytest.importorskip("torch")
    kinds = enum.IntEnum("ActivityKind", "CONCURRENT_KERNEL MEMCPY MEMSET RUNTIME DRIVER GRAPH_TRACE")
    enabled, collector = set(), None

    def flush_all(_):  # delivers one graph execution while graph tracing was on
        if kinds.GRAPH_TRACE in enabled:
            collector._on_buffer(
                [
                    types.SimpleNamespace(
                        kind=kinds.GRAPH_TRACE,
                        graph_id=3,
                        start=1,
                        end=2,
                        device_id=0,
                        context_id=1,
                        stream_id=7,
                        correlation_id=4,
                    )
                ]
            )
        enabled.clear()

    fake = types.SimpleNamespace(
        ActivityKind=kinds,
        ActivityThreadIdType=types.SimpleNamespace(SYSTEM=1),
        get_timestamp=lambda: 0,
        set_thread_id_type=lambda _: None,
        activity_register_callbacks=lambda *_: None,
        activity_enable=enabled.add,
        activity_disable=lambda _: None,
        activity_flush_all=flush_all,
    )
    monkeypatch.setitem(sys.modules, "cupti", types.SimpleNamespace(cupti=fake))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    collector = CuptiCollector()
    collector.arm_graph_level()
    assert enabled == {kinds.GRAPH_TRACE}
    collector.disarm()
    assert collector.graphs == [] and enabled == set()
    collector.start_graph_level()
    assert kinds.GRAPH_TRACE in enabled and kinds.CONCURRENT_KERNEL not in enabled
    collector.stop()
    assert [g["graphId"] for g in collector.graphs] == [3]
