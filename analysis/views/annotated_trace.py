"""The annotated trace: a Chrome trace-event JSON (ui.perfetto.dev, chrome://tracing) with gapprof's tracks.

One process, "gapprof", holds per step thread a track of the step ranges, a track of the anatomy's intervals
(analysis.anatomy_intervals: head, busy, starved, latency, tail tile each step; each event named by its term, with
its step in args) and a track of the spill; per GPU stream a track of every GPU op of the trace, named, its class
as category; and the floor as a counter that holds each measured step's floor from the step's start. For a
torch.profiler trace the original events are kept as they are and these tracks added before them.

Chrome JSON counts µs: ts and dur are written with three decimals from integer ns, exactly (never through a
float), so a reader taking them as decimals gets the ns back; they sit on the trace's own timeline, that of the
torch.profiler events too (analysis.readers.kineto reads them as round(1000 ts) ns).
"""

import io
import json
import re

import polars as pl
from gapprof.analysis import anatomy_intervals, kernels
from gapprof.analysis.readers import compressed, kineto

PID = 1_000_000_000  # above any process id, so a torch.profiler trace's own processes never share it
GPU_TID = 100_000  # GPU stream tracks from here; a step thread's tracks are 3k + 1..3
TRACE_EVENTS = re.compile(rb'"traceEvents"\s*:\s*\[')


def ns_text(ns: pl.Expr) -> pl.Expr:
    """Integer ns as µs text with exactly three decimals: 1234567 -> "1234.567", -5 -> "-0.005"."""
    size = ns.abs()
    sign = pl.when(ns < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str(sign, (size // 1000).cast(pl.String), pl.lit("."), (size % 1000).cast(pl.String).str.zfill(3))


def _json_strings(values: pl.Series) -> pl.Series:
    """JSON string literals of the values, escaped once per distinct value."""
    distinct = values.unique()
    return values.replace_strict(distinct, [json.dumps(v) for v in distinct.to_list()], return_dtype=pl.String)


def _complete(events: pl.DataFrame) -> pl.Series:
    """'X' events of a frame with name (JSON text), cat, tid, start, end (ns) and args (JSON text)."""
    event = pl.concat_str(
        pl.lit('{"ph":"X","pid":' + str(PID) + ',"tid":'),
        pl.col("tid").cast(pl.String),
        pl.lit(',"ts":'),
        ns_text(pl.col("start")),
        pl.lit(',"dur":'),
        ns_text(pl.col("end") - pl.col("start")),
        pl.lit(',"name":'),
        pl.col("name"),
        pl.lit(',"cat":"'),
        pl.col("cat"),
        pl.lit('","args":'),
        pl.col("args"),
        pl.lit("}"),
    )
    return events.select(event).to_series()


def _metadata(kind: str, tid: int, name: str) -> str:
    return json.dumps({"ph": "M", "pid": PID, "tid": tid, "name": kind, "args": {"name": name}})


def _step_tracks(result) -> tuple[list[str], pl.DataFrame]:
    """Track names and (globalTid, tid base) of each step thread."""
    threads = result.steps["globalTid"].unique().sort()
    names = []
    for k, thread in enumerate(threads.to_list()):
        base = 3 * k
        names += [
            _metadata("thread_name", base + 1, f"steps (thread {thread})"),
            _metadata("thread_name", base + 2, "anatomy"),
            _metadata("thread_name", base + 3, "spill"),
        ]
    return names, pl.DataFrame({"globalTid": threads, "base": [3 * k for k in range(len(threads))]})


def step_events(result, bases: pl.DataFrame) -> pl.Series:
    terms = [*anatomy_intervals.TERMS]
    steps = result.steps.join(bases, on="globalTid")
    args = pl.concat_str(
        pl.lit('{"step":'),
        pl.col("step").cast(pl.String),
        pl.lit(',"index":'),
        pl.col("index").cast(pl.String),
        *(pl.concat_str(pl.lit(f',"{t}_ns":'), pl.col(t).cast(pl.String)) for t in terms),
        pl.lit(',"wall_ns":'),
        pl.col("wall").cast(pl.String),
        pl.lit("}"),
    )
    name = pl.concat_str(
        pl.lit('"step '),
        pl.col("index").cast(pl.String),
        pl.when("warmup").then(pl.lit(" (warm-up)")).otherwise(pl.lit("")),
        pl.lit('"'),
    )
    return _complete(
        steps.select(name=name, cat=pl.lit("gapprof step"), tid=pl.col("base") + 1, start="t0", end="t1", args=args)
    )


def interval_events(result, bases: pl.DataFrame) -> pl.Series:
    found = anatomy_intervals.intervals(result.steps, result.ops)
    anatomy_intervals.check(result.steps, found)
    steps = result.steps.select("step", "globalTid").join(bases, on="globalTid")
    term = pl.col("term").cast(pl.String)
    return _complete(
        found.join(steps, on="step").select(
            name=pl.concat_str(pl.lit('"'), term, pl.lit('"')),
            cat=pl.lit("gapprof anatomy"),
            tid=pl.col("base") + pl.when(term == "spill").then(3).otherwise(2),
            start="start",
            end="end",
            args=pl.concat_str(
                pl.lit('{"step":'),
                pl.col("step").cast(pl.String),
                pl.lit(',"ns":'),
                (pl.col("end") - pl.col("start")).cast(pl.String),
                pl.lit("}"),
            ),
        )
    )


def op_events(result) -> tuple[list[str], pl.Series]:
    """Every GPU op of the trace on a track per device and stream, named, its class as category, its step (null
    outside every step) in args."""
    gpu = result.frames.gpu
    ops = gpu.select("kind").with_row_index("op").join(result.ops.select("op", "step"), on="op", how="left")
    named = kernels.named_ops(ops, gpu, result.frames.strings, False)
    named = named.hstack(gpu.select("start", "end", "deviceId", "streamId").gather(named["op"]))
    streams = named.select("deviceId", "streamId").unique().sort("deviceId", "streamId").with_row_index("track")
    names = [
        _metadata("thread_name", GPU_TID + track, f"GPU {device} stream {stream}: ops by class")
        for track, device, stream in streams.iter_rows()
    ]
    events = named.join(streams, on=["deviceId", "streamId"])
    return names, _complete(
        events.select(
            name=_json_strings(events["name"]),
            cat=pl.col("class").cast(pl.String),
            tid=pl.col("track").cast(pl.Int64) + GPU_TID,
            start="start",
            end="end",
            args=pl.concat_str(pl.lit('{"step":'), pl.col("step").cast(pl.String).fill_null("null"), pl.lit("}")),
        )
    )


def floor_counter(result) -> pl.Series:
    """The floor of each measured step from its start, in µs, and 0 after the last step."""
    measured = result.measured.sort("t0")
    counter = pl.concat_str(
        pl.lit('{"ph":"C","pid":' + str(PID) + ',"tid":0,"name":"floor","ts":'),
        ns_text(pl.col("t0")),
        pl.lit(',"args":{"floor_us":'),
        ns_text(pl.col("floor")),
        pl.lit("}}"),
    )
    ends = measured.tail(1).select(t0="t1", floor=pl.lit(0, pl.Int64))
    return pl.concat([measured.select("t0", "floor"), ends]).select(counter).to_series()


def _lines(events: pl.Series) -> bytes:
    """The events one a line, separated by commas (polars' CSV writer, never quoting, writes them fastest)."""
    out = io.BytesIO()
    events.to_frame().write_csv(out, include_header=False, quote_style="never", line_terminator=",\n")
    return out.getvalue().removesuffix(b",\n")


class AnnotatedTrace:
    name = "trace"
    extensions = (".trace.json", ".json")
    several = False  # one trace a file: tracks sit on that trace's own timeline
    projects = False  # a projection has no timeline of the trace's own to annotate

    def render(self, viewed: list, comparison=None, projections=()) -> bytes:
        result = viewed[0].result
        names, bases = _step_tracks(result)
        gpu_names, ops = op_events(result)
        parts = [
            pl.Series([_metadata("process_name", 0, f"gapprof: {viewed[0].label}")] + names + gpu_names),
            step_events(result, bases),
            interval_events(result, bases),
            ops,
        ]
        if result.floor is not None:
            parts.append(floor_counter(result))
        events = _lines(pl.concat(parts))
        path = result.frames.trace.path
        if kineto.claims(path):
            original = compressed.contents(path)
            found = TRACE_EVENTS.search(original) or re.compile(rb"\[").search(original)
            rest = original[found.end() :]
            joiner = b",\n" if rest.lstrip()[:1] != b"]" else b"\n"
            return original[: found.end()] + b"\n" + events + joiner + rest
        return b'{"displayTimeUnit":"ns","traceEvents":[\n' + events + b"\n]}\n"
