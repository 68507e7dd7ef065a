"""Prediction (no GPU): the lean runtime's decode step on H100 and H200, per term, from shipped files only.

    python benchmarks/predict_lean.py [--trace traces/h100-graphs.sqlite.xz] [--ncu traces/h100-graphs-ncu.csv.gz]
        [--measured h100-sxm=traces/h100-lean.sqlite.xz] [--measured-ncu h100-sxm=traces/h100-lean-ncu.csv] ...

The step is PLAN's kernels (per layer and per step, from the lean runtime's design), each moving the analytic bytes
of gapprof.step_bytes (a projection its weights; attention its layer's K and V at the step's context, read once, and
the new K and V written). A kernel takes fixed + bytes / bandwidth from the GPU profiles gapprof ships
(gapprof/gpu_profiles/<key>.json, `gapprof calibrate`): a matrix product the GEMV fit (fit.gemv: fixed_us, gbps),
any other kernel fit.fixed_us_graph (an add in a CUDA graph) + bytes at fit.read_gbps. The model and context, and
what a CUDA-graph step adds beyond its kernels, come from TRACE (a graphs step of the same model and context):
latency = one gap per op after the first (the lean step's ops: its kernels and the token's copy to the host) at
TRACE's mean gap, head and tail as TRACE's (the graph launch and the token's copy, CPU-side), kept for every GPU as
`gapprof project` keeps them. Terms: floor (analytic bytes at the datasheet peak), bytes (each kernel's bytes at its
bandwidth), fixed (the sum of the fixed parts), busy = bytes + fixed, wall = busy + latency + head + tail.

Back-test: the same per-kernel model on TRACE's own kernels, per class, with their bytes from the ncu CSV (one GEMV
per linear of the model, every other op a fixed_us_graph): how far the model is from kernels that ran.
--measured GPU=TRACE (and --measured-ncu GPU=CSV, for the bytes and fixed terms) adds a lean trace's terms beside.
"""

import argparse
import statistics

from gapprof.analysis.achievable import reference_bandwidth
from gapprof.analysis.kernel_cost import cost_sections

import gapprof
from gapprof.gpu_profile import shipped
from gapprof.gpus import gpu_by_key
from gapprof.step_bytes import module_bytes

GPUS = ("h100-sxm", "h200")
# (kernel, "matmul" (GEMV fit) | "other" (fixed_us_graph) | None (no kernel of its own), the bytes it moves).
PLAN_LAYER = (
    ("residual add + RMSNorm (the embedding row in layer 0)", "other", "input_norm"),
    ("q, k, v: one GEMV (with Qwen2's bias)", "matmul", "qkv"),
    ("rotary on q and k", "other", None),
    ("new K and V written to the static cache", "other", "kv_write"),
    ("scores: q K^T, each K head read once for its query group", "matmul", "k_read"),
    ("mask + softmax (float32)", "other", None),
    ("probs V, each V head read once", "matmul", "v_read"),
    ("o GEMV", "matmul", "o_proj"),
    ("residual add + RMSNorm", "other", "post_attention_norm"),
    ("gate and up: one GEMV", "matmul", "gate_up"),
    ("SiLU(gate) x up", "other", None),
    ("down GEMV (split-K, as cuBLAS runs this shape in h100-graphs and h100-compile)", "matmul", "down_proj"),
    ("split-K reduce of down", "other", None),
)
PLAN_STEP = (
    ("embedding row (inside layer 0's first norm)", None, "embed"),
    ("residual add + final RMSNorm", "other", "final_norm"),
    ("lm_head GEMV", "matmul", "lm_head"),
    ("argmax, token written", "other", None),
    ("position + 1", "other", None),
)


def plan_bytes(spec, ctx: float, dtype_bytes: int) -> dict:
    """Bytes each PLAN item moves at (mean) context ctx: step_bytes' module bytes, regrouped as the lean step fuses."""
    kinds = module_bytes(spec, 0, dtype_bytes)
    kv_write = kinds["attention"]
    kv_read = 2 * spec.kv_heads * spec.head_dim * ctx * dtype_bytes
    return {
        **kinds,
        "qkv": kinds["q_proj"] + kinds["k_proj"] + kinds["v_proj"],
        "gate_up": kinds["gate_proj"] + kinds["up_proj"],
        "kv_write": kv_write,
        "k_read": kv_read / 2,
        "v_read": kv_read / 2,
        None: 0,
    }


def kernel_us(kind: str | None, nbytes: float, fit: dict) -> tuple[float, float]:
    """(fixed µs, bytes µs) of one kernel on a GPU whose profile's fit is `fit`."""
    if kind == "matmul":
        return fit["gemv"]["fixed_us"], nbytes / fit["gemv"]["gbps"] / 1e3
    return (fit["fixed_us_graph"] if kind else 0.0), nbytes / fit["read_gbps"] / 1e3


def predict(spec, ctx: float, dtype_bytes: int, fit: dict, peak_gbps: float, exposed: dict) -> dict:
    sizes = plan_bytes(spec, ctx, dtype_bytes)
    items = [(item, spec.layers) for item in PLAN_LAYER] + [(item, 1) for item in PLAN_STEP]
    terms = dict(kernels=0, matmuls=0, bytes_ms=0.0, fixed_ms=0.0, analytic_bytes=0.0)
    for (_, kind, size), count in items:
        fixed, moved = kernel_us(kind, sizes[size], fit)
        terms["kernels"] += count if kind else 0
        terms["matmuls"] += count if kind == "matmul" else 0
        terms["fixed_ms"] += count * fixed / 1e3
        terms["bytes_ms"] += count * moved / 1e3
        terms["analytic_bytes"] += count * sizes[size]
    terms["floor_ms"] = terms["analytic_bytes"] / peak_gbps / 1e6
    terms["busy_ms"] = terms["bytes_ms"] + terms["fixed_ms"]
    terms["latency_ms"] = terms["kernels"] * exposed["latency_per_gap_us"] / 1e3  # kernels + 1 ops: kernels gaps
    terms["head_tail_ms"] = exposed["head_tail_ms"]
    terms["wall_ms"] = terms["busy_ms"] + terms["latency_ms"] + terms["head_tail_ms"]
    terms["floor_fraction"] = terms["floor_ms"] / terms["wall_ms"]
    return terms


def trace_terms(report) -> dict:
    measured = report.attribution.measured
    mean = lambda c: float(measured[c].mean())  # noqa: E731
    meta = report.attribution.frames.trace.meta
    unprofiled = meta.get("unprofiled_step_ms") or [float("nan")]
    return dict(
        kernels=mean("kernels"),
        busy_ms=mean("busy") / 1e6,
        floor_ms=mean("floor") / 1e6,
        latency_ms=mean("latency") / 1e6,
        head_tail_ms=(mean("head") + mean("tail")) / 1e6,
        wall_ms=mean("wall") / 1e6,
        latency_per_gap_us=mean("latency") / mean("latency_gaps") / 1e3,
        floor_fraction=mean("floor") / mean("wall"),
        unprofiled_median_ms=statistics.median(unprofiled),
    )


def split_terms(report, ncu_csv: str, profiles: dict) -> dict:
    """bytes_ms (moved bytes at R) and fixed_ms of a trace's busy time, from its ncu CSV (attribute --ncu)."""
    sections, notes = cost_sections(report.attribution, ncu_csv, profiles=profiles)
    if "cost" not in dict(sections):
        print(f"{ncu_csv}: {notes[0]}")
        return {}
    total = dict(sections)["cost"].row(0, named=True)
    return dict(bytes_ms=(total["at_peak_us"] + total["shortfall_us"]) / 1e3, fixed_ms=total["fixed_us"] / 1e3)


def back_test(report, ncu_csv: str, profiles: dict, fit: dict) -> list[tuple]:
    """Per class of TRACE: (class, ops a step, measured µs, model µs): one GEMV per linear, the rest
    fixed_us_graph."""
    spec = report.attribution.floor.spec
    linears = 7 * spec.layers + 1  # q, k, v, o, gate, up, down per layer, and lm_head
    sections, _ = cost_sections(report.attribution, ncu_csv, profiles=profiles)
    read_gbps = reference_bandwidth(report.attribution, profiles).gbps
    rows = []
    for row in dict(sections)["cost"].iter_rows(named=True):
        if row["class"] == "all (busy)":
            continue
        ops, mb = row["ops_per_step"], row["mb_per_step"]
        gemvs = min(ops, linears) if row["class"] == "gemv/gemm" else 0
        model = gemvs * fit["gemv"]["fixed_us"] + (ops - gemvs) * fit["fixed_us_graph"]
        model += mb * 1e3 / (fit["gemv"]["gbps"] if gemvs else read_gbps)
        rows.append((row["class"], ops, row["time_us"], model))
    return rows


def _pairs(values: list[str]) -> dict:
    return dict(value.split("=", 1) for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default="traces/h100-graphs.sqlite.xz")
    parser.add_argument("--ncu", default="traces/h100-graphs-ncu.csv.gz")
    parser.add_argument("--measured", action="append", default=[], metavar="GPU=TRACE")
    parser.add_argument("--measured-ncu", action="append", default=[], metavar="GPU=CSV")
    args = parser.parse_args()
    profiles = shipped()
    source = gapprof.attribute(args.trace)
    floor = source.attribution.floor
    exposed = trace_terms(source)
    ctx = float(source.attribution.measured["ctx"].mean())
    print(
        f"lean step of {floor.spec.name}, mean context {ctx:.1f}, exposed terms from {args.trace}: latency "
        f"{exposed['latency_per_gap_us']:.3f} us a gap, head + tail {exposed['head_tail_ms']:.3f} ms"
    )
    sizes = plan_bytes(floor.spec, ctx, floor.dtype_bytes)
    print(f"\nplanned kernels ({floor.spec.layers} layers): kind, MB each")
    for (name, kind, size), count in [(i, "per layer") for i in PLAN_LAYER] + [(i, "per step") for i in PLAN_STEP]:
        print(f"  {count:9}  {kind or '-':6}  {sizes[size] / 1e6:9.3f}  {name}")
    measured = {key: gapprof.attribute(path) for key, path in _pairs(args.measured).items()}
    ncus = _pairs(args.measured_ncu)
    keys = (
        "kernels",
        "matmuls",
        "floor_ms",
        "bytes_ms",
        "fixed_ms",
        "busy_ms",
        "latency_ms",
        "head_tail_ms",
        "wall_ms",
        "floor_fraction",
        "unprofiled_median_ms",
    )
    columns = {}
    for key in GPUS:
        fit = profiles[key].doc["fit"]
        columns[f"{key} predicted"] = predict(
            floor.spec, ctx, floor.dtype_bytes, fit, gpu_by_key(key).peak_gbps, exposed
        )
        if key in measured:
            terms = trace_terms(measured[key])
            if key in ncus:
                terms.update(split_terms(measured[key], ncus[key], profiles))
            columns[f"{key} measured"] = terms
    print(f"\n{'term':<22}" + "".join(f"{name:>20}" for name in columns))
    for key in keys:
        cells = [column.get(key) for column in columns.values()]
        print(f"{key:<22}" + "".join(f"{'-' if v is None else format(v, ',.3f'):>20}" for v in cells))
    print(f"\nfits used ({', '.join(f'{profiles[k].where}, {profiles[k].date[:10]}' for k in GPUS)}):")
    for key in GPUS:
        fit = profiles[key].doc["fit"]
        print(
            f"  {key}: GEMV {fit['gemv']['fixed_us']:.3f} us + bytes at {fit['gemv']['gbps']:,.0f} GB/s; other "
            f"kernels {fit['fixed_us_graph']:.3f} us + bytes at {fit['read_gbps']:,.0f} GB/s"
        )
    if args.ncu:
        rows = back_test(source, args.ncu, profiles, profiles[floor.gpu.key].doc["fit"])
        print(f"\nback-test on {args.trace} with {args.ncu}:\n  class, ops a step, measured us, model us, model error")
        for name, ops, time_us, model in rows + [
            ("all", sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows))
        ]:
            print(f"  {name:<14}{ops:>9,.0f}{time_us:>12,.1f}{model:>12,.1f}{(model / time_us - 1) * 100:>+9.1f}%")


if __name__ == "__main__":
    main()
