"""Datasheet peak DRAM bandwidth by GPU, and matching of reported device names to it."""

import re
from dataclasses import dataclass

from gapprof.errors import GapprofError


@dataclass(frozen=True)
class GpuSpec:
    key: str
    label: str
    peak_gbps: float  # datasheet DRAM bandwidth, GB/s (1e9 bytes/s)
    memory_gib: float
    name_pattern: str  # matched against the CUDA device name, case-insensitive


# GB/s a DRAM can move, for bandwidths read from a trace, a GPU profile or an ncu CSV: from 1 (below, a step's floor
# in ns can pass 64 bits) to 100,000 (an order of magnitude above any GPU's).
DRAM_GBPS = (1.0, 100_000.0)


def dram_gbps(value) -> bool:
    """Whether `value` is a number of GB/s inside DRAM_GBPS."""
    return isinstance(value, int | float) and not isinstance(value, bool) and DRAM_GBPS[0] <= value <= DRAM_GBPS[1]


# Order matters: the first pattern that matches a device name wins, so specific variants come first.
GPUS = [
    GpuSpec("h100-nvl", "H100 NVL", 3900, 94, r"H100.*NVL"),
    GpuSpec("h100-pcie", "H100 PCIe", 2000, 80, r"H100.*PCIe"),
    GpuSpec("h100-sxm", "H100 SXM", 3350, 80, r"H100"),
    GpuSpec("h200", "H200", 4800, 141, r"H200"),
    GpuSpec("b200", "B200", 8000, 180, r"B200"),
    GpuSpec("a100-40gb", "A100 40GB", 1555, 40, r"A100.*40\s*GB"),
    GpuSpec("a100-80gb", "A100 80GB", 2039, 80, r"A100"),
    GpuSpec("l40s", "L40S", 864, 48, r"L40S"),
    GpuSpec("l4", "L4", 300, 24, r"\bL4\b"),
    GpuSpec("a10g", "A10G", 600, 24, r"A10G"),
    GpuSpec("rtx-4090", "RTX 4090", 1008, 24, r"RTX 4090"),
]
ALIASES = {"h100": "h100-sxm", "a100": "a100-80gb", "4090": "rtx-4090"}


class UnknownGpuError(GapprofError):
    pass


def known_gpus() -> list[str]:
    return [g.key for g in GPUS]


def gpu_by_key(key: str) -> GpuSpec:
    key = ALIASES.get(key.lower(), key.lower())
    for gpu in GPUS:
        if gpu.key == key:
            return gpu
    raise UnknownGpuError(f"unknown GPU {key!r}; known GPUs: {', '.join(known_gpus())}")


def gpu_for_device_name(device_name: str) -> GpuSpec | None:
    """The datasheet entry for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None."""
    for gpu in GPUS:
        if re.search(gpu.name_pattern, device_name, re.IGNORECASE):
            return gpu
    return None


def alias_note(name: str) -> str | None:
    """What a short name stands for, where the table has other GPUs by that name too (a100: 80 GB or 40 GB)."""
    key = ALIASES.get(name.lower())
    if key is None:
        return None
    others = [g.key for g in GPUS if g.key != key and g.key.startswith(name.lower())]
    return f"{name} means {key}" + (f" (name {', '.join(others)} for the other)" if others else "")


def resolve_gpu(name: str) -> GpuSpec:
    """A table key, an alias or a device name."""
    try:
        return gpu_by_key(name)
    except UnknownGpuError:
        gpu = gpu_for_device_name(name)
        if gpu is None:
            raise
        return gpu
