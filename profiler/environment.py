"""Facts about the capture machine that a trace carries: versions, GPU, CPU, measured copy bandwidth.

torch is imported by the functions that need it: `gapprof profile` reads the CPU and driver in a torch-free parent.
"""

import platform
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def versions() -> dict:
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def device_facts(device) -> dict:
    """Name, memory and SM count of a CUDA device (a torch.device or its name)."""
    import torch

    props = torch.cuda.get_device_properties(device)
    return {"gpu_name": props.name, "gpu_memory_bytes": props.total_memory, "gpu_sm_count": props.multi_processor_count}


def gpu_facts(device: str) -> dict:
    if not device.startswith("cuda"):
        return {"gpu_name": "cpu", "driver": None}
    return {**device_facts(device), "driver": driver_version()}


def copy_bandwidth_gbps(device: str, nbytes: int = 1 << 30, repeats: int = 20) -> float | None:
    """Achievable DRAM bandwidth: a device-to-device copy reads and writes nbytes each, so 2*nbytes move.

    Best of `repeats`, timed with CUDA events; None off the GPU.
    """
    if not device.startswith("cuda"):
        return None
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best_ms = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best_ms = min(best_ms, start.elapsed_time(end))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / (best_ms / 1e3) / 1e9
