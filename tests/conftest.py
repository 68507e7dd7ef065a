"""Helpers and fixtures that several test modules share: synthetic steps whose every number is known, built with
tests/synthetic.py's TraceBuilder."""

import gzip
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic import TID, TraceBuilder

from gapprof import models

H100 = "NVIDIA H100 80GB HBM3"
SHIPPED_TRACES = Path(__file__).resolve().parents[1] / "traces"


def invoke_recorded(*args):
    """`gapprof ARGS` in-process, with sys.argv set to it: what result files record as the command."""
    from gapprof.cli import main

    argv = [*map(str, args)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["gapprof", *argv])
        return CliRunner().invoke(main, argv)


def shipped_ncu_lines(name: str) -> list[str]:
    """The lines of a shipped ncu export (traces/NAME, gzipped)."""
    return gzip.decompress((SHIPPED_TRACES / name).read_bytes()).decode().splitlines()


SYNC = "cudaStreamSynchronize_v3020"
# The kernels of one annotated step, in launch order.
SEQUENCE = ["embedding_kernel", "rms_norm", "gemv", "sdpa_kernel", "add_kernel", "argmax_kernel"]


def basic_step(b: TraceBuilder, offset: int = 0, tid: int = TID) -> None:
    """wall 1000 = busy 260 + starved 150 + latency 50 + head 100 + tail 440."""
    o = offset
    b.range(o, o + 1000, tid=tid)
    c1 = b.call(o + 10, o + 20, tid=tid)
    b.kernel(o + 100, o + 200, c1, "gemv_a")  # head 100
    c2 = b.call(o + 30, o + 40, tid=tid)
    b.kernel(o + 250, o + 300, c2, "gemv_b")  # gap 200-250, call began at 30: latency 50
    c3 = b.call(o + 400, o + 410, tid=tid)
    b.kernel(o + 420, o + 500, c3, "flash_attn")  # gap 300-420, call began at 400 > 300: starved 120
    c4 = b.call(o + 510, o + 520, "cudaMemcpyAsync_v3020", tid=tid)
    b.memcpy(o + 530, o + 560, c4)  # gap 500-530, call began at 510 > 500: starved 30
    b.call(o + 520, o + 900, SYNC, tid=tid)  # tail 440


def with_meta(b: TraceBuilder, gpu_name: str = H100, runtime: str = "eager") -> TraceBuilder:
    b.meta = {"model": "qwen2.5-7b", "ctx": 2048, "warmup": 0, "runtime": runtime, "gpu_name": gpu_name}
    b.gpu_info(gpu_name, None)
    return b


def gpu_bound(b: TraceBuilder, o: int = 0, kernel: int = 100) -> None:
    """10 launches 5 ns apart, kernels of `kernel` ns queued back to back from 20, then a sync.
    With kernel=100: last kernel ends at 1020, the sync returns at 1026, the step ends at 1030."""
    b.range(o, o + 1030)
    for i in range(10):
        start = o + 20 + kernel * i
        b.launch(o + 10 + 5 * i, o + 14 + 5 * i, start, start + kernel)
    b.call(o + 64, o + 20 + 10 * kernel + 6, SYNC)


def cpu_bound(b: TraceBuilder, o: int = 0) -> None:
    """10 launches 100 ns apart, 10 ns kernels 10 ns after each call; a sync at 1000 that finds the GPU idle."""
    b.range(o, o + 1010)
    for i in range(10):
        b.launch(o + 100 * i + 10, o + 100 * i + 14, o + 100 * i + 20, o + 100 * i + 30)
    b.call(o + 1000, o + 1005, SYNC)


@pytest.fixture
def pair(tmp_path):
    """The same CPU-bound step on an H100 and (kernels 0.7x as long) on an H200."""
    paths = []
    for name, gpu in (("h100", H100), ("h200", "NVIDIA H200")):
        b = with_meta(TraceBuilder(), gpu_name=gpu)
        for i in range(3):
            cpu_bound(b, o=2000 * i)
        paths.append(b.write(tmp_path / f"{name}.sqlite"))
    return paths


def module_meta(b: TraceBuilder, **extra) -> None:
    """Metadata as `capture` writes it for tiny-qwen2 on an H100 (warm-up 1), plus `extra`."""
    b.gpu_info(H100, 3_352_320_000_000)
    b.meta = dict(
        model="tiny-qwen2",
        config=models.load_config("tiny-qwen2"),
        dtype="bfloat16",
        dtype_bytes=2,
        ctx=100,
        steps=2,
        warmup=1,
        gpu_name=H100,
        unprofiled_step_ms=[0.001, 0.001],
        **extra,
    )


def _module(b: TraceBuilder, t0: int, t1: int, kind: str, layer: int | None = None) -> None:
    b.range(t0, t1, f"module:{kind}", domain_id=1, payload=layer)


def annotated_trace(tmp_path, steps=3):
    """Steps as `capture --modules` records them; each kernel's launch sits in a known innermost range."""
    b = TraceBuilder()
    b.domain("gapprof", 1)
    for i in range(steps):
        t = 1000 * i
        b.range(t, t + 1000, "decode_step", domain_id=1, payload=i)
        _module(b, t + 10, t + 60, "embed")
        b.launch(t + 20, t + 25, t + 30, t + 40, SEQUENCE[0])
        _module(b, t + 100, t + 500, "layer", 0)
        _module(b, t + 110, t + 160, "input_norm", 0)
        b.launch(t + 120, t + 125, t + 130, t + 150, SEQUENCE[1])
        _module(b, t + 200, t + 400, "attention", 0)
        _module(b, t + 210, t + 260, "q_proj", 0)
        b.launch(t + 220, t + 225, t + 230, t + 270, SEQUENCE[2])
        b.launch(t + 300, t + 305, t + 300 + 50, t + 360, SEQUENCE[3])  # attention, after q_proj closed
        b.launch(t + 450, t + 455, t + 460, t + 470, SEQUENCE[4])  # the layer's own (residual add)
        b.launch(t + 600, t + 605, t + 610, t + 620, SEQUENCE[5])  # outside every module
    module_meta(b, module_ranges={"ranges_per_step": 5}, module_range_cost_ms=0.25)
    return b.write(tmp_path / "modules.sqlite")


def gpu_profile_points(read_gbps: float, fixed_us: float) -> dict:
    """Points as `gapprof calibrate` measures them: large reads achieve exactly `read_gbps`, the tiny kernel takes
    `fixed_us` in a CUDA graph, GEMVs 2 us + their bytes at 0.8 x read_gbps."""
    at = lambda nbytes, gbps: nbytes / (gbps * 1e3)  # noqa: E731  µs
    sizes = [1 << 20, 16 << 20, 256 << 20, 1 << 30]
    return {
        "launch": [
            dict(kernel="add", mode="graph", count=10, us=fixed_us, samples_us=[fixed_us]),
            dict(kernel="add", mode="host", count=10, us=fixed_us + 3, samples_us=[fixed_us + 3]),
        ],
        "read": [dict(bytes=s, size=s, count=4, copies=1, us=at(s, read_gbps), samples_us=[]) for s in sizes],
        "copy": [
            dict(bytes=2 * s, size=s, count=4, copies=1, us=at(2 * s, 0.9 * read_gbps), samples_us=[]) for s in sizes
        ],
        "gemv": [
            dict(n=n, k=4096, bytes=2 * n * 4096, us=2 + at(2 * n * 4096, 0.8 * read_gbps), samples_us=[])
            for n in (1024, 4096, 14336)
        ],
    }


def gpu_profile_doc(key: str, name: str, read_gbps: float, fixed_us: float, sm_count: int | None = None) -> dict:
    """A GPU profile as `gapprof calibrate` writes it, of gpu_profile_points (gapprof.gpu_profile.document fits
    them)."""
    from gapprof import gpu_profile

    return gpu_profile.document(
        gpu=dict(name=name, key=key, datasheet_gbps=None, sm_count=sm_count),
        date="2026-12-01T10:00:00+00:00",
        command="gapprof calibrate",
        versions=dict(torch="2.11", cuda="13.0"),
        settings=dict(repeats=1),
        points=gpu_profile_points(read_gbps, fixed_us),
    )


def write_gpu_profile(path, key: str, name: str, read_gbps: float, fixed_us: float, sm_count: int | None = None):
    from gapprof import gpu_profile

    return gpu_profile.write(gpu_profile_doc(key, name, read_gbps, fixed_us, sm_count), path)


GRAPH_LAUNCH = "cudaGraphLaunch_v10000"


def launch_mix_step(b: TraceBuilder, o: int = 0, slower: int = 0) -> None:
    """A step of 1,000 ns with one launch of each kind, each call `slower` ns longer and its work as much later:
    cudaLaunchKernel (cpu 10, delay 20), driver-API cuLaunchKernelEx (cpu 15, delay 40), a graph launch of three
    nodes (cpu 70, nodes 80, 110 and 140 after it), a memset (cpu 5, delay 10), a memcpy (cpu 20, delay 30), each
    plus `slower`."""
    s = slower
    b.range(o, o + 1000)
    b.kernel(o + 30 + s, o + 50 + s, b.call(o + 10, o + 20 + s))
    b.kernel(o + 100 + s, o + 120 + s, b.call(o + 60, o + 75 + s, "cuLaunchKernelEx", driver=True), "gemv")
    graph = b.call(o + 130, o + 200 + s, GRAPH_LAUNCH)
    for start, name in ((210, "gemv"), (240, "flash_attn"), (270, "add_kernel")):
        b.kernel(o + start + s, o + start + 20 + s, graph, name)
    b.memset(o + 320 + s, o + 330 + s, b.call(o + 310, o + 315 + s, "cudaMemsetAsync_v3020"))
    b.memcpy(o + 370 + s, o + 380 + s, b.call(o + 340, o + 360 + s, "cudaMemcpyAsync_v3020"))
