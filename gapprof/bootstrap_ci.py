"""Percentile bootstrap of a ratio of arm means, for A/B runs over independent sessions.

numpy only (no polars): `gapprof ab` computes its interval on the GPU image.
"""

from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
SEED = 0


@dataclass(frozen=True)
class RatioInterval:
    ratio: float  # mean(a) / mean(b)
    low: float
    high: float
    level: float
    resamples: int
    seed: int


def ratio_of_means_ci(a, b, level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED) -> RatioInterval:
    """mean(a) / mean(b) with its percentile bootstrap interval: each resample draws len(a) values of a and
    len(b) values of b with replacement (sessions within each arm), independently of each other."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise ValueError("each arm needs at least two sessions")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(b > 0)):
        raise ValueError("arm values must be finite and arm b's positive")
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means_a / means_b, [tail, 100 - tail])
    return RatioInterval(float(a.mean() / b.mean()), float(low), float(high), level, resamples, seed)
