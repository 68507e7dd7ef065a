"""The floor fraction one trace's kernel mix predicts as peak bandwidth grows: the curve `gapprof plot fraction
--ncu` draws (issue 11, item 6).

With the measured steps' mean terms at the trace's datasheet peak P (kernel_cost.step_split: floor, extra,
shortfall, fixed; busy is their sum) and its exposed time E = wall - busy (starved + latency + head + tail: GPU time
spent waiting for the CPU or for a launch), on a GPU of peak bandwidth B the bandwidth terms scale by P / B while
fixed and E stay:
    fraction(B) = floor x P/B / ((floor + extra + shortfall) x P/B + fixed + E).
At B = P it is the measured floor / wall. As B grows the step tends to fixed + E and the fraction to 0; the floor's
time equals the fixed time at B = P x floor / fixed.
"""

import statistics
from dataclasses import dataclass

import numpy as np
from gapprof.analysis.achievable import reference_bandwidth
from gapprof.analysis.attribution import Attribution
from gapprof.analysis.kernel_cost import step_split
from gapprof.analysis.projection import source_bandwidth


@dataclass(frozen=True)
class FractionModel:
    label: str
    peak_gbps: float  # P
    floor_ms: float
    bytes_ms: float  # floor + extra + shortfall at P: the bandwidth-dependent part of busy
    fixed_ms: float
    exposed_ms: float  # wall - busy

    def fraction(self, gbps: np.ndarray) -> np.ndarray:
        """Floor fraction of wall on GPUs of peak bandwidth `gbps`."""
        s = self.peak_gbps / gbps
        return self.floor_ms * s / (self.bytes_ms * s + self.fixed_ms + self.exposed_ms)

    @property
    def crossover_gbps(self) -> float:
        """Peak bandwidth at which the floor's time equals the fixed time."""
        return self.peak_gbps * self.floor_ms / self.fixed_ms


def fraction_model(label: str, analysis: Attribution, ops, profiles: dict | None = None) -> FractionModel:
    """The model of `analysis`'s measured steps; ops: its measured ops with `bytes` (kernel_bytes.KernelBytes.ops);
    profiles: GPU key -> gapprof.gpu_profile.Found, for the reference bandwidth that splits off the fixed time."""
    peak = source_bandwidth(analysis)
    split = step_split(analysis.measured, ops, peak, reference_bandwidth(analysis, profiles or {}).gbps)
    ms = lambda column: split[column].mean() / 1e6  # noqa: E731
    return FractionModel(
        label,
        peak,
        ms("floor"),
        ms("floor") + ms("extra") + ms("shortfall"),
        ms("fixed"),
        (analysis.measured["wall"].mean() - analysis.measured["busy"].mean()) / 1e6,
    )


def unprofiled_fraction(analysis: Attribution) -> float | None:
    """Mean floor (datasheet) / median unprofiled step of the capture's metadata, None without either."""
    unprofiled = analysis.frames.trace.meta.get("unprofiled_step_ms")
    if not unprofiled or "floor_datasheet" not in analysis.measured.columns:
        return None
    return analysis.measured["floor_datasheet"].mean() / (statistics.median(unprofiled) * 1e6)
