"""Whether a trace fits the memory at hand, asked before it is read: a trace too large fails in one line naming its
size, where reading it would end in a MemoryError half-way, an abort inside a native library or the system's
out-of-memory killer.

The estimate is the peak of `gapprof attribute` per row of GPU ops and API calls, measured by
benchmarks/bench_attribute.py (docs/performance.md); the memory at hand is the least of what the system has
available, what the process's address-space limit (RLIMIT_AS) leaves and what its cgroup allows.
"""

from pathlib import Path

from gapprof.errors import GapprofError

# Peak resident bytes of attribute per GPU op or API call, rounded up from those measured at 1M-10M kernels (180 at
# 10M to 330 at 1M, where start-up weighs most; docs/performance.md).
BYTES_PER_ROW = 350
MEMINFO = Path("/proc/meminfo")
STATUS = Path("/proc/self/status")
CGROUP = Path("/sys/fs/cgroup")


def _meminfo_kib(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space_left() -> int | None:
    """What RLIMIT_AS leaves the process beyond the address space it already holds; None without a limit."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    held = _meminfo_kib(STATUS, "VmSize")
    if soft == resource.RLIM_INFINITY or held is None:
        return None
    return soft - held * 1024


def _cgroup_left() -> int | None:
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((CGROUP / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """The memory this process can still take, or None where the system does not say."""
    available = _meminfo_kib(MEMINFO, "MemAvailable")
    known = [
        b
        for b in (available * 1024 if available is not None else None, _address_space_left(), _cgroup_left())
        if b is not None
    ]
    return min(known) if known else None


def check_fits(path: Path, rows: int, what: str) -> None:
    """Refuse, in one line naming its size, a trace of `rows` GPU ops and API calls (`what` says which) that the
    memory at hand cannot attribute."""
    needed, available = rows * BYTES_PER_ROW, available_bytes()
    if available is not None and needed > available:
        raise GapprofError(
            f"{path}: {rows:,} rows ({what}) need about {needed / 2**30:.1f} GiB to attribute and "
            f"{max(available, 0) / 2**30:.1f} GiB is free here: attribute it on a machine with more memory, or "
            f"capture fewer steps"
        )
