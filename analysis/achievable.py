"""The kernel model's parameters of a GPU: the bandwidth a kernel that streams DRAM achieves, and the fixed cost of a
kernel. Measured where the GPU has a profile (`gapprof calibrate`: gapprof/gpu_profiles/<key>.json, or one given
with --gpu-profile), else assumed.

- Achievable bandwidth R: measured, the profile's read bandwidth at large transfers (fit.read_gbps), capped at the
  GPU's peak (no kernel streams DRAM faster), in a projection's targets as in attribute's reference; assumed,
  ASSUMED_FRACTION x the GPU's peak (the datasheet table in gapprof/gpus.py where it has the GPU).
- Fixed cost per kernel: measured, an add on one element back to back in a CUDA graph (fit.fixed_us_graph); it is not
  assumed. A kernel's fixed part (its duration minus its bytes at R, from the trace) moves to another GPU times
  target / source fixed cost only when both GPUs have a profile and are different chips (SM counts differ);
  otherwise it is kept as the trace measured it. The same chip keeps it because what a decode kernel spends beyond
  its bytes did not follow the dispatch cost: H200 dispatches an empty kernel in a graph in 0.53 us against the
  H100's 0.80, yet the smallest decode GEMV (512 x 3584) took 7.53 and 7.55 us (the shipped profiles, 2026-11-27).
"""

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from gapprof.gpu_profile import Found
from gapprof.gpus import GpuSpec

# What the copy benchmark recorded at capture reaches on the shipped H100 traces (0.90 x the datasheet).
ASSUMED_FRACTION = 0.9
DATASHEET_TABLE = "gapprof/gpus.py"


@dataclass(frozen=True)
class Achievable:
    gpu: str  # how the output names the GPU
    peak: tuple[float, str]  # (GB/s, what it is): the peak an assumed R is a fraction of
    profile: Found | None  # the profile that measured R and the fixed cost; None: R assumed

    @property
    def capped(self) -> bool:
        """Whether the measured bandwidth is above the peak, and so capped at it."""
        return self.profile is not None and self.profile.read_gbps > self.peak[0]

    @property
    def gbps(self) -> float:
        return min(self.profile.read_gbps, self.peak[0]) if self.profile else ASSUMED_FRACTION * self.peak[0]

    @property
    def fixed_us(self) -> float | None:
        return self.profile.fixed_us_graph if self.profile else None

    def bandwidth_from(self) -> str:
        if self.profile:
            capped = ", above the peak: capped at it" if self.capped else ""
            return f"measured: read bandwidth at large transfers ({self.profile.cite()}){capped}"
        table = f", {DATASHEET_TABLE}" if self.peak[1].endswith("datasheet") else ""
        return f"assumed: {ASSUMED_FRACTION} x peak {self.peak[0]:,.0f} GB/s ({self.peak[1]}{table})"

    def fixed_from(self) -> str:
        if self.profile:
            return f"measured: an add on one element in a CUDA graph ({self.profile.cite()})"
        return "not measured: no GPU profile"


def achievable(gpu: GpuSpec | None, peak: tuple[float, str], profiles: Mapping[str, Found]) -> Achievable:
    """The parameters of `gpu` (None: a GPU the datasheet table lacks, never measured) whose peak is `peak`."""
    profile = profiles.get(gpu.key) if gpu is not None else None
    return Achievable(gpu.label if gpu else peak[1], peak, profile)


def of_target(target: GpuSpec, profiles: Mapping[str, Found]) -> Achievable:
    return achievable(target, (float(target.peak_gbps), f"{target.label} datasheet"), profiles)


@dataclass(frozen=True)
class Reference:
    """The reference bandwidth R of a trace's GPU: its achievable bandwidth, at most the primary peak so that
    shortfall >= 0."""

    gbps: float
    parameters: Achievable
    capped: bool

    @property
    def measured(self) -> bool:
        return self.parameters.profile is not None

    @property
    def label(self) -> str:
        return ("measured" if self.measured else f"{ASSUMED_FRACTION} x peak") + (
            ", capped at peak" if self.capped else ""
        )

    def says(self) -> str:
        return self.parameters.bandwidth_from()


def reference_bandwidth(result, profiles: dict) -> Reference:
    """R of an attribution.Attribution with a floor; profiles: GPU key -> gapprof.gpu_profile.Found."""
    peak = result.floor.bandwidths[result.floor.primary]
    found = achievable(result.floor.gpu, peak, profiles)
    return Reference(found.gbps, found, found.capped)


def _same_chip(source: Achievable, target: Achievable) -> bool:
    sms = (source.profile.sm_count, target.profile.sm_count)
    return None not in sms and sms[0] == sms[1]


def fixed_scale(source: Achievable, target: Achievable) -> float:
    """What a kernel's fixed part is multiplied by on the target: target / source fixed cost where both are
    measured on different chips, else 1."""
    if source.fixed_us is None or target.fixed_us is None or _same_chip(source, target):
        return 1.0
    return target.fixed_us / source.fixed_us


def _fixed_part(source: Achievable, target: Achievable) -> str:
    if source.fixed_us is not None and target.fixed_us is not None:
        if _same_chip(source, target):
            return (
                f"kept as on the source: the same chip ({source.profile.sm_count} SMs each), whose decode "
                "kernels' fixed part did not follow the measured dispatch cost"
            )
        return f"times {fixed_scale(source, target):.3f} (target / source fixed cost per kernel)"
    missing = [role for role, x in (("source", source), ("target", target)) if x.fixed_us is None]
    return f"kept as on the source (no fixed cost per kernel measured on the {' or '.join(missing)})"


def parameters(
    source: Achievable, targets: list[Achievable], source_used: tuple[float, str] | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """A table with one row per GPU of a projection (its achievable bandwidth and fixed cost per kernel, measured
    or assumed, and the factor on a kernel's fixed part) and a note per GPU saying where each comes from.
    source_used: (GB/s, where from) where the source's bandwidth in use is not its own (Reference caps it at the
    peak)."""
    gbps, said = source_used or (source.gbps, source.bandwidth_from())
    rows = [
        dict(
            gpu=source.gpu,
            role="source",
            achievable_gbps=gbps,
            bandwidth="measured" if source.profile else "assumed",
            fixed_us_per_kernel=source.fixed_us,
            fixed_part_scale=1.0,
        )
    ]
    notes = [
        f"kernel model, {source.gpu} (source): achievable bandwidth {gbps:,.0f} GB/s, {said}; fixed cost per "
        f"kernel {source.fixed_from()}; a kernel's fixed part is its duration - its bytes at that bandwidth"
    ]
    for target in targets:
        rows.append(
            dict(
                gpu=target.gpu,
                role="target",
                achievable_gbps=target.gbps,
                bandwidth="measured" if target.profile else "assumed",
                fixed_us_per_kernel=target.fixed_us,
                fixed_part_scale=fixed_scale(source, target),
            )
        )
        notes.append(
            f"kernel model, {target.gpu} (target): achievable bandwidth {target.gbps:,.0f} GB/s, "
            f"{target.bandwidth_from()}; fixed cost per kernel {target.fixed_from()}; fixed part "
            f"{_fixed_part(source, target)}"
        )
    return pl.DataFrame(rows, schema_overrides={"fixed_us_per_kernel": pl.Float64}), notes
