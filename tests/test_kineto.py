"""torch.profiler (Kineto) Chrome traces as input: the same events as an nsys export give the same tables, times
round to integer ns exactly, and a file that cannot be attributed is refused in one line."""

import gzip
import json
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import H100, basic_step, cpu_bound, gpu_bound
from gapprof.analysis import attribution
from gapprof.analysis.attribution import Options
from gapprof.analysis.readers import json_stream, json_times, kineto, nsys
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import PID, TID, TraceBuilder

from gapprof.cli import main
from gapprof.errors import GapprofError
from gapprof.trace_schema import TID_BITS, api_name

TABLES = ("summary_table", "facts_table", "class_table", "kernel_table", "api_table")


def mixed_step(b: TraceBuilder, o: int = 0) -> None:
    """A driver launch, two overlapping streams, a memset and a kernel that runs past the range's end."""
    b.range(o, o + 1000)
    b.kernel(o + 50, o + 300, b.call(o + 10, o + 20, "cuLaunchKernel", driver=True), "gemv_a")
    b.kernel(o + 100, o + 200, b.call(o + 30, o + 40), "rms_norm", stream=8)
    b.memset(o + 350, o + 360, b.call(o + 320, o + 330, "cudaMemsetAsync_v3020"))
    b.kernel(o + 900, o + 1100, b.call(o + 800, o + 810), "argmax_kernel")


def graph_step(b: TraceBuilder, o: int = 0) -> None:
    """One cudaGraphLaunch whose three nodes carry its correlation id (per-node tracing), then a sync."""
    b.range(o, o + 1000)
    graph = b.call(o + 10, o + 30, "cudaGraphLaunch_v10000")
    for start in (100, 300, 420):
        b.kernel(o + start, o + start + 50, graph, "gemv_a")
    b.call(o + 40, o + 480, "cudaStreamSynchronize_v3020")


SHAPES = {
    "basic": basic_step,
    "graph": graph_step,
    "gpu_bound": lambda b, o: gpu_bound(b, o),
    "cpu_bound": lambda b, o: cpu_bound(b, o),
    "mixed": mixed_step,
}


def pair(tmp_path, shape, suffix=".json"):
    b = TraceBuilder()
    b.gpu_info(H100, None)
    for i in range(4):
        SHAPES[shape](b, 3000 * i)
    return b.write(tmp_path / "t.sqlite"), b.write_kineto(tmp_path / f"t{suffix}")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_same_events_give_the_same_tables_as_the_nsys_trace(tmp_path, shape):
    options = Options(model="qwen2.5-7b", ctx=2048)  # a trace without metadata: the floor from options
    nsys, torch_trace = (attribution.analyze(path, options) for path in pair(tmp_path, shape))
    assert torch_trace.steps.equals(nsys.steps)
    assert torch_trace.device_name == nsys.device_name == H100
    for table in TABLES:
        expected, got = getattr(attribution, table)(nsys), getattr(attribution, table)(torch_trace)
        assert got == expected if isinstance(got, dict) else got.equals(expected), table


def test_a_gzipped_trace_reads_as_the_json(tmp_path):
    nsys, zipped = pair(tmp_path, "basic", ".json.gz")
    assert attribution.analyze(zipped).steps.equals(attribution.analyze(nsys).steps)


@pytest.mark.parametrize("pack", [bytes, gzip.compress])
def test_a_trace_after_a_utf8_byte_order_mark_reads_as_without_it(tmp_path, pack):
    nsys, torch_trace = pair(tmp_path, "basic")
    marked = tmp_path / "marked.json"
    marked.write_bytes(pack(b"\xef\xbb\xbf" + torch_trace.read_bytes()))
    assert attribution.analyze(marked).steps.equals(attribution.analyze(nsys).steps)


@pytest.mark.parametrize("pack", [bytes, gzip.compress])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_trace_is_refused_in_one_line_naming_its_encoding(tmp_path, pack, encoding):
    _, torch_trace = pair(tmp_path, "basic")
    text = torch_trace.read_text(encoding="utf-8")
    utf16 = tmp_path / "utf16.json"
    utf16.write_bytes(pack(text.encode(encoding) if encoding == "utf-16" else b"\xfe\xff" + text.encode(encoding)))
    result = CliRunner().invoke(main, ["attribute", str(utf16)])
    assert result.exit_code == 1 and not isinstance(result.exception, AssertionError)
    assert result.output.splitlines()[-1] == f"Error: {utf16}: UTF-16 text; gapprof reads Chrome traces in UTF-8: " + (
        "save the trace as UTF-8"
    )


def test_the_command_line_reads_a_torch_trace(tmp_path):
    nsys, torch_trace = pair(tmp_path, "basic")
    outputs = [
        CliRunner().invoke(main, ["attribute", str(path), "--tables", "summary,classes,kernels,api"])
        for path in (nsys, torch_trace)
    ]
    assert outputs[0].exit_code == outputs[1].exit_code == 0
    assert outputs[1].stdout == outputs[0].stdout


@pytest.mark.parametrize(
    "ts, dur, start, end",
    [
        ("4921650408244.786", "2.5", 4921650408244786, 4921650408247286),  # beyond a double's ns
        ("0.0004", "0", 0, 0),
        ("0.0005", "0.001", 0, 2),  # ties to even: 0.5 -> 0, 1.5 -> 2
        ("0.0015", "0.001", 2, 2),  # 1.5 -> 2, 2.5 -> 2
        ("1.0006", "0.0004", 1001, 1001),  # the end rounds ts + dur, not each
        ("7", "3", 7000, 10000),
        ("-0.0015", "0.003", -2, 2),  # negative times round alike: -1.5 -> -2
        ("1e-3", "2.5E-3", 1, 4),  # exponents: 1 and 3.5 -> 4
        ("1.5e+3", "1e-25", 1500000, 1500000),  # 10^-22 ns breaks no tie
        ("0.0005", "1e-25", 0, 1),  # but here it does: 0.5000...1 -> 1
        ("9223372036854775.807", "0", (1 << 63) - 1, (1 << 63) - 1),
        ("9223372036854775.807", "0.001", None, None),  # the end beyond 64 bits: neither end is placed
        ("1e16", "0", None, None),
        ("0e-999999", "1", 0, 1000),  # a zero's exponent does not count
        ("1e-999", "1", None, None),  # a sum of over 1,000 digits is refused, not rounded
        ('"3"', "0", None, None),  # a string
        ("", "0", None, None),  # absent
    ],
)
def test_microseconds_round_to_the_nearest_ns_ties_to_even(ts, dur, start, end):
    times = json_times.times_ns(pl.Series([ts]), pl.Series([dur]))
    assert times.row(0) == (start, end)


def _reference_ns(us: Decimal) -> int | None:
    ns = int(us.scaleb(3, Context(prec=100)).to_integral_value(ROUND_HALF_EVEN))
    return ns if -(1 << 63) <= ns < 1 << 63 else None


NUMBER_TEXTS = st.one_of(
    st.decimals(-(10**16), 10**16, places=3, allow_nan=False, allow_infinity=False).map(str),  # as Kineto writes
    st.integers(0, 90).flatmap(lambda places: st.decimals(-(10**13), 10**13, places=places)).map(lambda d: f"{d:f}"),
    st.tuples(st.integers(-(10**20), 10**20), st.integers(-40, 12)).map(lambda p: f"{p[0]}e{p[1]}"),  # exponents
    st.integers(-(10**17), 10**17).map(str),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NUMBER_TEXTS, NUMBER_TEXTS), min_size=1, max_size=20))
def test_times_are_exact_against_decimal_arithmetic(texts):
    times = json_times.times_ns(pl.Series([t for t, _ in texts]), pl.Series([d for _, d in texts]))
    ends = [(_reference_ns(Decimal(t)), _reference_ns(Context(prec=200).add(Decimal(t), Decimal(d)))) for t, d in texts]
    assert times.rows() == [(None, None) if None in pair else pair for pair in ends]


def _events_file(tmp_path, events, name="t.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"traceEvents": events}))
    return path


def _x(cat, name, ts, dur, pid=PID, tid=100, **args):
    return dict(ph="X", cat=cat, name=name, pid=pid, tid=tid, ts=ts, dur=dur, args=args)


def test_each_end_is_rounded_as_a_point_so_the_identity_holds(tmp_path):
    # In ns: the range [0.4, 1000.6] -> [0, 1001], the call [10.4, 20.5] -> [10, 20], the kernel [100.5, 200.5]
    # -> [100, 200] (ties to even): a length is the difference of rounded ends, not a rounded duration.
    events = [
        _x("user_annotation", "decode_step", 0.0004, 1.0002),
        _x("cuda_runtime", "cudaLaunchKernel", 0.0104, 0.0101, correlation=1),
        _x("kernel", "void k<float>(int)", 0.1005, 0.1, 0, 7, device=0, stream=7, correlation=1),
    ]
    result = attribution.analyze(_events_file(tmp_path, events), Options(skip=0))
    step = result.steps.row(0, named=True)
    assert (step["t0"], step["t1"], step["g0"], step["g1"]) == (0, 1001, 100, 200)
    assert (step["wall"], step["busy"], step["head"], step["tail"]) == (1001, 100, 100, 801)
    assert step["globalTid"] == TID


@pytest.mark.parametrize(
    "content, says",
    [
        ('{"traceEvents": [', "not a Chrome trace: unreadable JSON"),
        ('{"schemaVersion": 1}', "JSON but not a Chrome trace (no traceEvents list)"),
    ],
)
def test_json_that_is_no_chrome_trace_is_refused(tmp_path, content, says):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(GapprofError, match=f"^{path}: {says.replace('(', '.').replace(')', '.')}"):
        attribution.analyze(path)


@pytest.mark.parametrize(
    "name, content",
    [("t.json", b""), ("t.json", b" \n"), ("t.json.gz", gzip.compress(b'{"traceEvents": []}', mtime=0)[:20])],
    ids=["empty", "spaces", "gzip cut"],
)
def test_a_file_named_json_whose_start_says_nothing_is_refused_as_json(tmp_path, name, content):
    # Empty, or a gzip stream cut in its first block: a Chrome trace cut short, not a damaged SQLite file.
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(GapprofError, match=f"^{path}: not a Chrome trace: unreadable JSON"):
        attribution.analyze(path)


def test_a_trace_without_kernels_says_it_is_cpu_only(tmp_path):
    path = _events_file(tmp_path, [_x("user_annotation", "decode_step", 0, 10), _x("cpu_op", "aten::mm", 1, 5)])
    result = CliRunner().invoke(main, ["attribute", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {path}: a torch.profiler trace with no GPU kernels (a CPU-only trace?); profile with "
        "activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] on a GPU"
    )


def test_a_trace_without_ranges_or_cpu_events_or_of_several_processes_is_refused(tmp_path):
    launch = [
        _x("cuda_runtime", "cudaLaunchKernel", 1, 1, correlation=1),
        _x("kernel", "k", 3, 1, 0, 7, device=0, stream=7, correlation=1),
    ]
    with pytest.raises(GapprofError, match="no closed NVTX ranges; no periodic decode work found"):
        attribution.analyze(_events_file(tmp_path, launch))
    with pytest.raises(GapprofError, match="GPU events but no CPU events"):
        attribution.analyze(_events_file(tmp_path, launch[1:]))
    other = _x("user_annotation", "decode_step", 0, 10, pid=PID + 1)
    with pytest.raises(GapprofError, match="CPU events of 2 processes"):
        attribution.analyze(_events_file(tmp_path, [*launch, other, _x("user_annotation", "decode_step", 0, 10)]))


@pytest.mark.parametrize("pid, tid", [(1 << 39, 100), (-1, 100), (PID, 1 << TID_BITS), (PID, -1)])
def test_a_process_or_thread_id_beyond_the_thread_numbering_is_refused(tmp_path, pid, tid):
    # globalTid = pid << TID_BITS | tid: beyond 64 bits, or two threads sharing one, were it not refused.
    events = [
        _x("user_annotation", "decode_step", 0, 10),
        _x("cuda_runtime", "cudaLaunchKernel", 1, 1, pid, tid, correlation=1),
        _x("kernel", "k", 3, 1, 0, 7, device=0, stream=7, correlation=1),
    ]
    says = f"a CPU event of process {pid}, thread {tid}: ids outside nsys's numbering of threads"
    with pytest.raises(GapprofError, match=says):
        kineto.read(_events_file(tmp_path, events))


def test_tids_quoted_as_older_kineto_releases_write_them_read_as_their_integers(tmp_path):
    # Their cuda_runtime and user_annotation events: "tid": "100"; a GPU op: "tid": "stream 7", its stream in args.
    nsys, torch_trace = pair(tmp_path, "mixed")
    events = json.loads(torch_trace.read_text())["traceEvents"]
    for event in events:
        event["tid"] = f"stream {event['tid']}" if event["cat"] in ("kernel", "gpu_memset") else str(event["tid"])
    quoted = _events_file(tmp_path, events, "quoted.json")
    assert attribution.analyze(quoted).steps.equals(attribution.analyze(nsys).steps)
    events[0]["tid"] = "main"
    with pytest.raises(
        GapprofError, match=r"event 0 \(user_annotation 'decode_step'\) lacks a numeric ts, dur, pid, tid"
    ):
        attribution.analyze(_events_file(tmp_path, events, "named.json"))


def _real_cpu_trace(tmp_path):
    """A torch.profiler trace of three scheduled steps of a tiny Qwen2 forward on CPU, with record_function."""
    torch = pytest.importorskip("torch")
    from gapprof.profiler.build import build_model
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    model, _ = build_model("tiny-qwen2", "float32", "sdpa", "cpu", seed=0)
    path = tmp_path / "cpu.json"
    with profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=0, warmup=1, active=3, repeat=1),
        on_trace_ready=lambda p: p.export_chrome_trace(str(path)),
    ) as prof:
        for _ in range(5):
            with record_function("decode_step"), torch.no_grad():
                model(torch.tensor([[1, 2, 3]]))
            prof.step()
    return path


def test_a_real_cpu_trace_is_refused_as_cpu_only_and_parses_with_gpu_events_added(tmp_path):
    path = _real_cpu_trace(tmp_path)
    with pytest.raises(GapprofError, match="no GPU kernels"):
        attribution.analyze(path)
    data = json.loads(path.read_text())
    steps = [e for e in data["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")]
    assert len(steps) == 3 and {e["cat"] for e in steps} == {"user_annotation"}
    for i, step in enumerate(steps):  # one launch 1 µs into each step, on the step's own thread
        data["traceEvents"] += [
            _x("cuda_runtime", "cudaLaunchKernel", step["ts"] + 1, 1, step["pid"], step["tid"], correlation=i + 1),
            _x("kernel", "void gemv<float>(int)", step["ts"] + 3, 2, 0, 7, device=0, stream=7, correlation=i + 1),
        ]
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    result = attribution.analyze(path, Options(range_pattern=r"ProfilerStep#\d+", skip=0))
    assert result.steps["kernels"].to_list() == [1, 1, 1]
    # The added times went through doubles near 5e12 µs here, so a ns either way.
    assert all(abs(head - 3000) <= 1 for head in result.steps["head"])


def test_a_damaged_event_is_refused_in_one_line(tmp_path):
    events = [_x("user_annotation", "decode_step", 0, 10), dict(ph="X", cat="kernel", name="k", pid=0, tid=7)]
    with pytest.raises(GapprofError, match=r"event 1 \(kernel 'k'\) lacks a numeric ts, dur, pid, tid or correlation"):
        attribution.analyze(_events_file(tmp_path, events))


@pytest.mark.parametrize(
    "kernel, says",
    [
        (dict(ts="3", dur=1), r"event 2 \(kernel 'k'\) lacks a numeric ts, dur, pid, tid or correlation"),
        (dict(ts=3, dur=1, args=dict(correlation="1")), r"event 2 \(kernel 'k'\) lacks a numeric ts, dur, pid"),
        (dict(ts=3, dur=1, args=dict(correlation=1 << 64)), r"event 2 \(kernel 'k'\) has a number beyond 64 bits"),
        (dict(ts=1 << 62, dur=1), r"event 2 \(kernel 'k'\) has a number beyond 64 bits"),
    ],
)
def test_a_string_or_a_number_beyond_64_bits_is_refused_in_one_line(tmp_path, kernel, says):
    events = [
        _x("user_annotation", "decode_step", 0, 10),
        _x("cuda_runtime", "cudaLaunchKernel", 1, 1, correlation=1),
        dict(ph="X", cat="kernel", name="k", pid=0, tid=7, **kernel),
    ]
    with pytest.raises(GapprofError, match=says):
        attribution.analyze(_events_file(tmp_path, events))


def test_json_nested_deeper_than_the_parser_takes_is_refused_in_one_line(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"traceEvents": [{"args": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}]}")
    with pytest.raises(GapprofError, match="JSON nested deeper than a trace event ever is"):
        attribution.analyze(path)


def test_an_event_of_the_wrong_shape_is_refused_by_its_index(tmp_path):
    events = [_x("user_annotation", "decode_step", 0, 10), 5]
    with pytest.raises(GapprofError, match=r"event 1 is damaged \(Expected `object`, got `int`\)"):
        attribution.analyze(_events_file(tmp_path, events))


@pytest.mark.parametrize("block", [5, 6, 7, 64, 200])
def test_events_are_read_across_blocks_of_text_exactly(tmp_path, monkeypatch, block):
    # Small blocks cut every value, the numbers between the object's keys too: each must come out as in one read.
    nsys, torch_trace = pair(tmp_path, "mixed")
    whole = attribution.analyze(torch_trace, Options(skip=0))
    trace = json.loads(torch_trace.read_text())
    torch_trace.write_text(json.dumps({"schemaVersion": 1234567, **trace, "baseTimeNanoseconds": 1234567890123}))
    monkeypatch.setattr(json_stream, "BLOCK_BYTES", block)
    assert attribution.analyze(torch_trace, Options(skip=0)).steps.equals(whole.steps)


def _tricky_events() -> list[dict]:
    """Events whose names hold '},' and whose args nest objects, so that a batch's candidate cut often falls
    inside an event."""
    events = []
    for i in range(30):
        nested = {"a": {"b": {"c": [{"d": 1}, {"e": "},{"}]}, "f": 2}, "g": "}, {"}
        events.append(_x("cpu_op", f'aten::op}},\n{{"x": {i}}}', i, 1, **nested))
        events.append(_x("cuda_runtime", "cudaLaunchKernel", i + 0.25, 0.125, correlation=i + 1, **nested))
        kernel = _x("kernel", f"k}}, {i}", i + 0.5, 0.25, 0, 7, device=0, stream=7, correlation=i + 1, **nested)
        events.append(kernel)
    return events


@pytest.mark.parametrize("indent", [None, 2])
def test_a_cut_inside_a_string_or_a_nested_object_backs_off_to_a_whole_event(tmp_path, monkeypatch, indent):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"deviceProperties": [], "traceEvents": _tricky_events(), "x": [{"y": 1}]}, indent=indent)
    )
    whole = kineto.read(path)
    monkeypatch.setattr(json_stream, "_FIRST_BACK_OFF", 1)
    backed_off = []
    monkeypatch.setattr(json_stream, "_PREFIX", _Counted(json_stream._PREFIX, backed_off))
    for block in range(40, 400, 19):  # every batch ends at another place in an event
        monkeypatch.setattr(json_stream, "BLOCK_BYTES", block)
        cut = kineto.read(path)
        assert cut.gpu.equals(whole.gpu) and cut.calls.equals(whole.calls) and cut.strings.equals(whole.strings)
    assert len(whole.gpu) == len(whole.calls) == 30 and len(backed_off) > 10


class _Counted:
    """A decoder whose calls are counted: each is a cut that did not decode."""

    def __init__(self, decoder, calls: list):
        self.decoder, self.calls = decoder, calls

    def decode(self, text):
        self.calls.append(1)
        return self.decoder.decode(text)


def test_a_shipped_torch_trace_reads_alike_in_small_batches(monkeypatch):
    path = SHIPPED / "h100-graphs-torch.json.gz"
    whole = kineto.read(path)
    monkeypatch.setattr(json_stream, "BLOCK_BYTES", 1 << 16)
    small = kineto.read(path)
    for frame in ("ranges", "calls", "gpu", "strings", "gpu_info"):
        assert getattr(small, frame).equals(getattr(whole, frame)), frame


def test_the_event_list_is_the_top_level_key_and_device_properties_may_follow_it(tmp_path):
    decoy = {"note": '"traceEvents": [', "nested": {"traceEvents": [5]}}
    after = {"traceEvents": _tricky_events(), "deviceProperties": [{"id": 0, "name": H100}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({**decoy, **after}))
    trace = kineto.read(path)
    assert len(trace.gpu) == 30 and trace.gpu_info["name"].to_list() == [H100]


def test_device_properties_whose_id_is_no_integer_name_no_device(tmp_path):
    damaged = [{"id": "x"}, {"id": None}, {"id": 1 << 70, "name": "big"}, {"id": 1.5}, {"id": True}]
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"deviceProperties": [*damaged, {"id": 0, "name": H100}], "traceEvents": _tricky_events()})
    )
    assert kineto.read(path).gpu_info.select("id", "name").rows() == [(0, H100)]


def test_keys_after_the_event_list_read_alike_wherever_a_block_of_text_ends(tmp_path, monkeypatch):
    # A cut after the list's end, between two devices' properties, is no cut of the list.
    properties = [{"id": i, "name": H100, "limits": {"x": 1}} for i in range(8)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": _tricky_events(), "deviceProperties": properties, "traceName": "t"}))
    whole = kineto.read(path)
    for block in range(64, 4000, 37):
        monkeypatch.setattr(json_stream, "BLOCK_BYTES", block)
        cut = kineto.read(path)
        assert cut.gpu.equals(whole.gpu) and cut.gpu_info.equals(whole.gpu_info) and len(cut.gpu_info) == 8


@pytest.mark.parametrize(
    "tid, says",
    [
        ('?"tid": 100', r"not a Chrome trace: unreadable JSON \(JSON is malformed"),
        ('"tid": [100]', r"event 3 is damaged \(Expected `int \| str \| null`, got `array` in tid\)"),
    ],
)
def test_damaged_text_is_refused_at_once_not_read_to_the_end(tmp_path, monkeypatch, tid, says):
    text = json.dumps({"traceEvents": _tricky_events()})
    third = text.index('"tid": 100', text.index('"tid": 100', text.index('"tid": 100') + 1) + 1)
    damaged = text[:third] + tid + text[third + len('"tid": 100') :]  # early in the first block of text
    path = tmp_path / "t.json"
    path.write_text(damaged)
    monkeypatch.setattr(json_stream, "BLOCK_BYTES", 4000)
    reads = []
    monkeypatch.setattr(
        json_stream._Text, "more", lambda self, more=json_stream._Text.more: reads.append(1) or more(self)
    )
    with pytest.raises(GapprofError, match=says):
        kineto.read(path)
    assert len(reads) <= 2 < len(damaged) // 4000


SHIPPED = Path(__file__).resolve().parents[1] / "traces"
ANATOMY = (
    "step",
    "wall",
    "busy",
    "starved",
    "latency",
    "head",
    "tail",
    "spill",
    "overlap",
    "kernels",
    "memcpys",
    "memsets",
    "launch_calls",
    "launch_cpu",
    "api_calls",
    "streams",
    "starved_gaps",
    "latency_gaps",
)
COPY_NAMES = {kind: name for name, kind in kineto.COPY_KINDS.items()}


def kineto_copy(path: Path, out: Path) -> Path:
    """The ranges, the step threads' API calls and the GPU ops of an nsys trace, written as Kineto writes them:
    times relative to the trace's first ns (the CUPTI backend's are epoch ns, beyond a double's ns at µs)."""
    trace = nsys.read(path)
    names = dict(trace.strings.iter_rows())
    ranges, gpu = trace.ranges, trace.gpu
    calls = trace.calls.filter(pl.col("globalTid").is_in(ranges["globalTid"].unique().implode()))
    base = min(ranges["start"].min(), calls["start"].min(), gpu["start"].min())

    # Exact three-decimal µs: these differences from base are far below 2**53 / 1000 ns.
    def times(row):
        return dict(ts=(row["start"] - base) / 1000, dur=(row["end"] - row["start"]) / 1000)

    def split(gtid):
        return dict(pid=gtid >> TID_BITS, tid=gtid & ((1 << TID_BITS) - 1))

    events = [
        dict(ph="X", cat="user_annotation", name=r["message"], **times(r), **split(r["globalTid"]))
        for r in ranges.iter_rows(named=True)
    ]
    events += [
        dict(
            ph="X",
            cat=f"cuda_{c['source']}",
            name=api_name(names[c["nameId"]]),
            **times(c),
            args={"correlation": c["correlationId"]},
            **split(c["globalTid"]),
        )
        for c in calls.iter_rows(named=True)
    ]
    gpu_names = {
        "kernel": lambda g: names[g["demangledName"]],
        "memset": lambda g: "Memset (Device)",
        "memcpy": lambda g: f"Memcpy {COPY_NAMES[g['copyKind']]} (Device -> Device)",
    }
    events += [
        dict(
            ph="X",
            cat="kernel" if g["kind"] == "kernel" else f"gpu_{g['kind']}",
            name=gpu_names[g["kind"]](g),
            pid=g["deviceId"],
            tid=g["streamId"],
            **times(g),
            args={"device": g["deviceId"], "stream": g["streamId"], "correlation": g["correlationId"]},
        )
        for g in gpu.iter_rows(named=True)
    ]
    out.write_text(json.dumps({"traceEvents": events}))
    return out


@pytest.mark.parametrize("name", ["h100-graphs.sqlite.xz", "h100-cupti.sqlite.xz"])  # nsys graphs, CUPTI eager
def test_a_shipped_trace_written_as_kineto_gives_the_same_anatomy(tmp_path, name):
    nsys = attribution.analyze(SHIPPED / name)
    options = Options(range_pattern=nsys.frames.meta.get("range_message", "decode_step"), skip=nsys.frames.skip)
    torch_trace = attribution.analyze(kineto_copy(SHIPPED / name, tmp_path / "t.json"), options)
    assert torch_trace.steps.select(ANATOMY).equals(nsys.steps.select(ANATOMY))
    for table in ("class_table", "kernel_table", "api_table"):  # short names derived as nsys writes them
        assert getattr(attribution, table)(torch_trace).equals(getattr(attribution, table)(nsys)), table
