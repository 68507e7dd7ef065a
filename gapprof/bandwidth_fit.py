"""time = fixed + bytes / bandwidth, fitted by least squares to measured (bytes, µs) points; and the bandwidth a
transfer achieves at large sizes. numpy only: the GPU side fits what it measured, analysis reads the result.

Units: bytes, µs and GB/s (1e9 bytes/s = 1e3 bytes/µs).
"""

import numpy as np

from gapprof.errors import GapprofError

LARGE_BYTES = 256 << 20  # transfers at least this large show the DRAM bandwidth, not a fixed cost


def fit_line(nbytes, us) -> dict:
    """fixed_us and gbps of time = fixed + bytes / bandwidth over the points, with r2 (of the times) and rms_rel (the
    root mean square of the relative residuals). Each point is weighted by 1 / its time: times span orders of
    magnitude, and in absolute residuals the largest points would drown the few µs a small one tells about the
    fixed part. gbps is None when the fitted slope is not positive (the times do not grow with bytes)."""
    x, t = np.asarray(nbytes, dtype=float), np.asarray(us, dtype=float)
    if x.size < 2 or np.unique(x).size < 2:
        raise GapprofError(f"a fit of time against bytes needs points of at least two sizes; got {x.size} points")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise GapprofError("a fit of time against bytes needs positive finite times")
    design = np.column_stack([np.ones_like(x), x]) / t[:, None]
    (fixed, slope), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    fitted = fixed + slope * x
    total = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum((t - fitted) ** 2)) / total if total > 0 else 1.0
    return {
        "fixed_us": float(fixed),
        "gbps": 1e-3 / float(slope) if slope > 0 else None,
        "r2": r2,
        "rms_rel": float(np.sqrt(np.mean(((t - fitted) / t) ** 2))),
        "points": int(x.size),
    }


def achieved_gbps(nbytes, us, large: int = LARGE_BYTES) -> float:
    """The median of bytes / time over the points of at least `large` bytes (the largest point when none is)."""
    x, t = np.asarray(nbytes, dtype=float), np.asarray(us, dtype=float)
    if x.size == 0:
        raise GapprofError("no points to take an achieved bandwidth from")
    chosen = x >= large if np.any(x >= large) else x == x.max()
    return float(np.median(x[chosen] / t[chosen])) * 1e-3
