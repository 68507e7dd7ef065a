"""The period of a sequence of tokens (integer codes) and the runs where it repeats, vectorised over numpy arrays:
what analysis.step_finding finds decode in.

The period is the shift under which the sequence matches itself at the largest share of positions, the smallest
such shift on ties (its multiples match as well), or a divisor of it matching within MISMATCH_SHARE as well; the
shifts tried are the most frequent distances between a token's consecutive occurrences, and both are read in a
window in the middle of the sequence, so a trace of millions of GPU ops is searched in a fixed time. A run is a
stretch, at least MIN_PERIODS periods long, where every position matches the one a period on, or differs from it
with at most MISMATCH_SHARE of the period's positions differing around it: one loop may pick a kernel variant per
token (PyTorch's vectorised or unrolled elementwise kernel, as a tensor that grows by one each token is aligned or
not), while prefill, warm-up and another loop differ almost everywhere.
"""

import numpy as np
import polars as pl

# Fewer whole repeats than this is no decode loop (a warm-up pair, a layer pattern inside a prefill).
MIN_PERIODS = 3
# Shifts tried as the period: the most frequent distances between a token's consecutive occurrences.
CANDIDATE_PERIODS = 64
# Positions the period search reads (a 1M-op trace's period is found from a quarter of it).
PERIOD_WINDOW = 1 << 18
# Positions of a period that may differ from the period before and still be the same loop (none below 100).
MISMATCH_SHARE = 0.01


def period(codes: np.ndarray) -> int | None:
    """The shift under which the sequence matches itself at the largest share of positions, the smallest on ties (or
    its smallest divisor within MISMATCH_SHARE of it), searched in a window of PERIOD_WINDOW positions in the middle
    of the sequence."""
    window = codes[max(0, (len(codes) - PERIOD_WINDOW) // 2) :][:PERIOD_WINDOW]
    positions = pl.DataFrame({"code": window}).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
    distances = (
        positions.select(d=pl.col("i") - pl.col("i").shift(1).over("code"))
        .drop_nulls()
        .filter(pl.col("d") <= len(window) // MIN_PERIODS)["d"]
        .value_counts(sort=True)
        .head(CANDIDATE_PERIODS)
    )
    shares = {shift: float(np.mean(window[shift:] == window[:-shift])) for shift in sorted(distances["d"].to_list())}
    if not shares:
        return None
    best = max(shares, key=lambda shift: (shares[shift], -shift))
    # A kernel variant alternating per token makes two periods match better than one: a divisor within
    # MISMATCH_SHARE of the best is the period.
    return next(shift for shift in shares if best % shift == 0 and shares[shift] >= shares[best] - MISMATCH_SHARE)


def _tolerated(period: int) -> int:
    """Mismatches a period may hold and still repeat the one before."""
    return int(period * MISMATCH_SHARE)


def repeating_runs(codes: np.ndarray, period: int) -> list[tuple[int, int]]:
    """[start, end) of each stretch at least MIN_PERIODS periods long where the sequence repeats `period` on,
    a mismatch counting as a repeat where the period's positions around it hold at most _tolerated of them."""
    exact = codes[:-period] == codes[period:]
    around = pl.Series((~exact).astype(np.int32)).rolling_sum(window_size=period, min_samples=1, center=True).to_numpy()
    match = exact | (around <= _tolerated(period))
    # A run starts and ends on exact repeats: a loop's last token, followed by other work, is not tolerated into it.
    runs = (
        pl.DataFrame({"match": match, "exact": exact})
        .with_row_index("i")
        .with_columns(run=(pl.col("match") != pl.col("match").shift(1)).fill_null(True).cum_sum())
        .filter(pl.col("exact"))
        .group_by("run")
        .agg(a=pl.col("i").min(), b=pl.col("i").max())
        .with_columns(end=pl.col("b") + 1 + period)
        .filter(pl.col("end") - pl.col("a") >= MIN_PERIODS * period)
        .sort("a")
    )
    return list(zip(runs["a"].to_list(), runs["end"].to_list()))


def align(codes: np.ndarray, pattern: np.ndarray, start: int, end: int) -> int | None:
    """The first position of [start, end) where a whole `pattern` begins (at most _tolerated positions differing
    after its first), None if none does."""
    period = len(pattern)
    for j in np.flatnonzero(codes[start : min(start + period, end - period + 1)] == pattern[0]) + start:
        if np.count_nonzero(codes[j : j + period] != pattern) <= _tolerated(period):
            return int(j)
    return None
