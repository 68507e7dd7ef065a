"""`gapprof calibrate`'s microbenchmarks on the GPU at hand (profiler.calibration_plan says what they measure):
the fixed cost of a kernel (an empty kernel and an add on one element, back to back in a CUDA graph and launched
from the host), read and copy bandwidth against transfer size, and bf16 GEMVs (M = 1) at the shipped models'
decode shapes. Timed with CUDA events around graph replays; each point is the median over repeats, after warm-up.
The workloads are built by device so that their code runs on CPU tensors too."""

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from gapprof.profiler import calibration_plan as plan
from gapprof.profiler.environment import driver_version
from gapprof.profiler.fresh_sessions import gpu_key

from gapprof import gpus
from gapprof.log import progress as default_progress

FLOAT32 = 4


@dataclass(frozen=True)
class Workload:
    body: Callable[[int], object]  # launches op i, on buffer i % copies
    count: int  # ops per graph replay (or per host loop)
    copies: int = 1


def tiny_kernels(device: torch.device, count: int) -> dict[str, Workload]:
    """The smallest kernels there are: an empty one (a 0-cycle spin, CUDA only) and an add on a 1-element tensor."""
    one = torch.zeros(1, device=device)
    kernels = {}
    if device.type == "cuda":
        kernels["empty"] = Workload(lambda i: torch.cuda._sleep(0), count)
    kernels["add"] = Workload(lambda i: one.add_(1.0), count)
    return kernels


def read_workload(size: int, reuse: int, device: torch.device) -> Workload:
    """A sum over `size` bytes of float32, each op on the next of copies buffers spanning `reuse` bytes."""
    copies, count = plan.layout(size, reuse)
    views = list(torch.ones(copies, size // FLOAT32, device=device).unbind(0))
    out = torch.empty((), device=device)
    return Workload(lambda i: torch.sum(views[i % copies], dim=0, out=out), count, copies)


def copy_workload(size: int, reuse: int, device: torch.device) -> Workload:
    """A device-to-device copy of `size` bytes (2 x size move), buffers as read_workload's."""
    copies, count = plan.layout(size, reuse)
    src = list(torch.ones(copies, size // FLOAT32, device=device).unbind(0))
    dst = list(torch.empty(copies, size // FLOAT32, device=device).unbind(0))
    return Workload(lambda i: dst[i % copies].copy_(src[i % copies]), count, copies)


def gemv_workload(gemv: plan.Gemv, reuse: int, device: torch.device) -> Workload:
    """y = x @ W^T, bf16, M = 1, as F.linear runs a decode step's projection without bias."""
    copies, count = plan.layout(gemv.bytes, reuse)
    weights = list(torch.randn(copies, gemv.n, gemv.k, dtype=torch.bfloat16, device=device).unbind(0))
    x = torch.randn(1, gemv.k, dtype=torch.bfloat16, device=device)
    out = torch.empty(1, gemv.n, dtype=torch.bfloat16, device=device)
    return Workload(lambda i: torch.mm(x, weights[i % copies].t(), out=out), count, copies)


def _elapsed_us(run: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3


def in_graph(work: Workload, settings: plan.Settings) -> list[float]:
    """µs per op of each timed replay of one graph holding the workload's ops back to back."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # lazy initialisation (cuBLAS handles, workspaces) must not land in the capture
        for i in range(min(work.count, 3)):
            work.body(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(work.count):
            work.body(i)
    for _ in range(settings.warmup):
        graph.replay()
    torch.cuda.synchronize()
    return [_elapsed_us(graph.replay) / work.count for _ in range(settings.repeats)]


def from_host(work: Workload, settings: plan.Settings) -> list[float]:
    """µs per launch of the workload's ops issued one by one from Python: the CPU's launch cost where it exceeds
    the kernel's time on the GPU."""

    def loop():
        for i in range(work.count):
            work.body(i)

    for _ in range(settings.warmup):
        loop()
    torch.cuda.synchronize()
    return [_elapsed_us(loop) / work.count for _ in range(settings.repeats)]


def point(samples_us: list[float], **facts) -> dict:
    return {**facts, "us": statistics.median(samples_us), "samples_us": [round(s, 4) for s in samples_us]}


def _bandwidth(kind: str, make, settings, reuse, device, progress) -> list[dict]:
    points = []
    for size in settings.sizes:
        work = make(size, reuse, device)
        moved = 2 * size if kind == "copy" else size
        points.append(point(in_graph(work, settings), bytes=moved, size=size, count=work.count, copies=work.copies))
        del work  # its buffers go before the next size's are allocated
        torch.cuda.empty_cache()
        progress(f"{kind} {size:,} bytes: {moved / points[-1]['us'] / 1e3:,.0f} GB/s")
    return points


def measure(settings: plan.Settings, progress=default_progress) -> dict:
    """Every point (profile section `points`) on the current CUDA device."""
    device = torch.device("cuda", torch.cuda.current_device())
    reuse = plan.reuse_bytes(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None))
    launch = []
    for name, work in tiny_kernels(device, settings.launch_count).items():
        for mode, timer in (("graph", in_graph), ("host", from_host)):
            launch.append(point(timer(work, settings), kernel=name, mode=mode, count=work.count))
            progress(f"{name} kernel, {mode}: {launch[-1]['us']:.2f} us per kernel")
    points = {
        "launch": launch,
        "read": _bandwidth("read", read_workload, settings, reuse, device, progress),
        "copy": _bandwidth("copy", copy_workload, settings, reuse, device, progress),
        "gemv": [],
    }
    for gemv in plan.gemv_shapes():
        work = gemv_workload(gemv, reuse, device)
        points["gemv"].append(
            point(
                in_graph(work, settings),
                n=gemv.n,
                k=gemv.k,
                bytes=gemv.bytes,
                used_by=list(gemv.used_by),
                count=work.count,
                copies=work.copies,
            )
        )
        del work
        torch.cuda.empty_cache()
        progress(f"gemv {gemv.n}x{gemv.k}: {points['gemv'][-1]['us']:.2f} us")
    return points


def gpu_facts() -> dict:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    spec = gpus.gpu_for_device_name(props.name)
    return {
        "name": props.name,
        "key": gpu_key([{"gpu_name": props.name}]),
        "datasheet_gbps": float(spec.peak_gbps) if spec else None,
        "memory_bytes": props.total_memory,
        "sm_count": props.multi_processor_count,
        "l2_bytes": getattr(props, "L2_cache_size", None),
    }


def run(settings: plan.Settings, progress=default_progress) -> dict:
    """The profile's gpu, versions, settings and points (gapprof.gpu_profile.document takes them with the date and
    command)."""
    gpu = gpu_facts()
    progress(f"calibrating {gpu['name']}")
    started = time.monotonic()
    points = measure(settings, progress)
    reuse = plan.reuse_bytes(gpu["l2_bytes"])
    return {
        "gpu": gpu,
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "driver": driver_version(),
            "python": platform.python_version(),
        },
        "settings": {
            **asdict(settings),
            "reuse_bytes": reuse,
            "seconds": round(time.monotonic() - started, 1),
            "timing": "CUDA events around each replay of a CUDA graph holding `count` ops back to back "
            "(host: around a Python loop of `count` launches); us = median over `repeats` "
            "of time / count, after `warmup` untimed replays; op i uses buffer i % copies, "
            "the copies spanning reuse_bytes so that DRAM, not L2, serves them",
        },
        "points": points,
    }
