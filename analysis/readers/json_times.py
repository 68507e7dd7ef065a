"""Events' times in µs, as the text of their JSON numbers, rounded to integer ns exactly: a point t becomes
round(1000 t), ties to even; an event's end is round(1000 (ts + dur)), so that both ends are points rounded alike.

No time is ever a float (a double near 5e12 µs cannot hold every ns). A number written plainly, with at most 16
digits before the point and 21 after (Kineto writes three), is read by polars as a Decimal(38, 21), whose 128-bit
integer counts units of 10^-21 µs exactly; sums and rounding are integer arithmetic on whole columns. The rare
number written otherwise (an exponent, more digits) takes Python's decimal arithmetic, exact too; an event whose
ts + dur spans over 1,000 digits is refused.
"""

import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, Inexact

import polars as pl

UNIT_DECIMALS = 21  # a unit is 10^-21 µs, 10^-18 ns
UNITS_PER_NS = 10**18
# What a Decimal(38, 21) holds exactly, and two of which sum inside 128 bits; any other number takes the decimal path.
PLAIN = r"^-?[0-9]{1,16}(?:\.[0-9]{1,21})?$"
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # JSON's number grammar
NS_DIGITS = 19  # an ns count of more digits is beyond 64 bits
MAX_SUM_DIGITS = 1000  # a ts + dur spanning more digits is refused, not rounded: no trace writes one


def _rounded(units: pl.Expr) -> pl.Expr:
    """round(units / 10^18) as Int64, ties to even; null beyond 64 bits."""
    per_ns = pl.lit(UNITS_PER_NS, pl.Int128)
    whole = units // per_ns  # floor, so the rest is in [0, 10^18) for negative times too
    rest = units - whole * per_ns
    half = pl.lit(UNITS_PER_NS // 2, pl.Int128)
    up = (rest > half) | ((rest == half) & (whole % pl.lit(2, pl.Int128) != 0))
    return (whole + up.cast(pl.Int128)).cast(pl.Int64, strict=False)


def _operands(ts: str, dur: str) -> tuple[Decimal, Decimal, Context] | str:
    """ts and dur as decimals (a zero without its exponent) and a context that adds them exactly; or what keeps
    them from ns."""
    if NUMBER.fullmatch(ts) is None or NUMBER.fullmatch(dur) is None:
        return "not a number"
    start, length = (Decimal(0) if number.is_zero() else number for number in (Decimal(ts), Decimal(dur)))
    # From the first digit of the larger, and a carry, down to the last digit of the finer.
    top = max(start.adjusted(), length.adjusted())
    digits = top - min(start.as_tuple()[2], length.as_tuple()[2]) + 2
    if digits > MAX_SUM_DIGITS:
        return "beyond 64 bits" if top >= NS_DIGITS - 3 else f"over {MAX_SUM_DIGITS} digits"
    return start, length, Context(prec=max(digits, 28), Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact])


def _ns(us: Decimal, context: Context) -> int | None:
    ns = int(context.scaleb(us, 3).to_integral_value(ROUND_HALF_EVEN, context))
    return ns if -(1 << 63) <= ns < 1 << 63 else None


def exact_ns(ts: str, dur: str) -> tuple[int | None, int | None]:
    """(start, end) ns of one event's ts and dur texts, in exact decimal arithmetic; None where _operands or
    64 bits refuse them."""
    operands = _operands(ts, dur)
    if isinstance(operands, str):
        return None, None
    start, length, context = operands
    return _ns(start, context), _ns(context.add(start, length), context)  # either None: times_ns drops both


def why_not_ns(ts: str, dur: str) -> str:
    """What keeps an event's ts and dur texts from ns, for the one line that refuses it."""
    operands = _operands(ts, dur)
    return operands if isinstance(operands, str) else "beyond 64 bits"


def times_ns(ts: pl.Series, dur: pl.Series) -> pl.DataFrame:
    """Columns start and end (Int64 ns) of events' ts and dur texts, both null where either end is (exact_ns)."""
    frame = pl.DataFrame({"ts": ts, "dur": dur}).with_columns(
        plain=pl.col("ts").str.contains(PLAIN) & pl.col("dur").str.contains(PLAIN),
        ts_units=pl.col("ts").cast(pl.Decimal(38, UNIT_DECIMALS), strict=False).to_physical(),
        dur_units=pl.col("dur").cast(pl.Decimal(38, UNIT_DECIMALS), strict=False).to_physical(),
    )
    times = frame.select(
        "plain", start=_rounded(pl.col("ts_units")), end=_rounded(pl.col("ts_units") + pl.col("dur_units"))
    )
    others = (~times["plain"]).arg_true()
    if len(others):
        exact = [exact_ns(t, d) for t, d in zip(ts.gather(others), dur.gather(others))]
        start, end = (pl.Series(column, dtype=pl.Int64) for column in zip(*exact))
        times = times.with_columns(times["start"].scatter(others, start), times["end"].scatter(others, end))
    placed = pl.col("start").is_not_null() & pl.col("end").is_not_null()
    return times.select(pl.when(placed).then(pl.col("start", "end")))
