"""Per-kernel and per-class tables over the measured steps' GPU ops.

Each row: calls and µs per step, share of the steps' busy time, mean and median duration, and the gap time
that precedes the kernel (starved: it waited for the CPU to launch it; latency: it was queued). Shares use
raw durations, so with overlapping streams they can sum past 100%.
"""

import re

import polars as pl

CLASSES = (
    "gemv/gemm",
    "attention",
    "norm",
    "rope",
    "elementwise",
    "reduction",
    "copy/cat",
    "memcpy/memset",
    "sampling",
    "other",
    "cuda graph",
)

# First match wins, tested against the demangled name (template arguments say what a generic kernel does).
_RULES = [
    ("sampling", r"argmax|argmin|topk|top_k|sort|multinomial|sampl|gumbel"),
    ("attention", r"flash|fmha|attention|attn|sdpa|softmax|mha_|decode_kernel"),
    ("gemv/gemm", r"gemm|gemv|cublas|cutlass|nvjet|xmma|matmul|splitk|dot_kernel|marlin|wgmma"),
    ("norm", r"norm|^triton_\w*_mean_\w*rsqrt"),  # inductor's RMSNorm: mean of squares, then rsqrt
    ("rope", r"rope|rotary"),
    ("copy/cat", r"copy|cat_?array|concat|index|scatter|gather|vector_set"),  # vector_set: ExLlamaV2's bias fill
    ("reduction", r"reduce|reduction|triton_red|triton_per"),
    ("elementwise", r"elementwise|triton_poi|pointwise|silu|gelu|act_and_mul|pow|rsqrt|\bmul|\badd"),
]
_COMPILED = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in _RULES]

COPY_KINDS = {
    1: "HtoD",
    2: "DtoH",
    3: "HtoA",
    4: "AtoH",
    5: "AtoA",
    6: "AtoD",
    7: "DtoA",
    8: "DtoD",
    9: "HtoH",
    10: "PtoP",
}


def classify(name: str) -> str:
    """The kernel class of a kernel name (demangled preferred)."""
    if name.startswith("triton_"):  # inductor names a kernel after its ops; its aten::_to_copy is a dtype cast
        name = name.replace("_to_copy", "_cast")
    for cls, pattern in _COMPILED:
        if pattern.search(name):
            return cls
    return "other"


# What tells one kernel (or copy, memset, graph) from another: the op's kind and its name ids in `gpu`.
KEY = ("kind", "shortName", "demangledName", "copyKind", "graphExecId")


def names(keys: pl.DataFrame, strings: pl.DataFrame, full_names: bool) -> pl.DataFrame:
    """keys (distinct KEY rows) with their `name` and `class`, resolved in Python once per distinct kernel."""
    lookup = dict(zip(strings["id"].to_list(), strings["value"].to_list()))
    rows = []
    for kind, short, full, copy_kind, graph_exec in keys.select(KEY).iter_rows():
        if kind == "kernel":
            full_name = lookup.get(full, f"<string {full}>")
            name = full_name if full_names else lookup.get(short, f"<string {short}>")
            cls = classify(full_name if full in lookup else name)
        elif kind == "memcpy":
            name, cls = f"[memcpy {COPY_KINDS.get(copy_kind, copy_kind)}]", "memcpy/memset"
        elif kind == "graph":
            name, cls = f"[CUDA graph exec {graph_exec}]", "cuda graph"
        else:
            name, cls = "[memset]", "memcpy/memset"
        rows.append((kind, short, full, copy_kind, graph_exec, name, cls))
    return pl.DataFrame(
        rows, schema={**keys.select(KEY).schema, "name": pl.String, "class": pl.Enum(CLASSES)}, orient="row"
    )


def _keyed(ops: pl.DataFrame, gpu: pl.DataFrame) -> pl.DataFrame:
    return ops.hstack(gpu.select(KEY[1:]).gather(ops["op"]))


def named_ops(ops: pl.DataFrame, gpu: pl.DataFrame, strings: pl.DataFrame, full_names: bool) -> pl.DataFrame:
    """ops with `name` and `class` columns, resolved once per distinct kernel rather than per op."""
    ops = _keyed(ops, gpu)
    return ops.join(names(ops.select(KEY).unique(), strings, full_names), on=list(KEY), how="left", nulls_equal=True)


def per_kernel(ops: pl.DataFrame, gpu: pl.DataFrame) -> pl.DataFrame:
    """Per distinct kernel (KEY) of `ops` (the measured steps' ops, whose `op` indexes rows of `gpu`): calls, total
    ns, the starved and latency gap ns before it, and its durations, kept for the medians. Aggregated on integer
    ids before any name is looked up, and shared by the kernel and class tables."""
    duration = pl.col("end") - pl.col("start")
    gap, starved = pl.col("gap"), pl.col("starved")
    return (
        _keyed(ops.select("op", "kind", "start", "end", "gap", "starved"), gpu)
        .group_by(KEY)
        .agg(
            calls=pl.len(),
            total=duration.sum(),
            starved=gap.filter(starved).sum(),
            latency=gap.filter(~starved).sum(),
            durations=duration,
        )
    )


def _table(kernels: pl.DataFrame, by: list[str], n_steps: int, busy_total: int) -> pl.DataFrame:
    """kernels: per_kernel with its names; the rows of one `by` group summed, their durations pooled."""
    per_step = 1000.0 * n_steps  # ns totals -> µs per step
    durations = pl.col("durations").list.explode(keep_nulls=False, empty_as_null=False)
    return (
        kernels.group_by(*by)
        .agg(
            pl.col("calls", "total", "starved", "latency").sum(),
            mean_us=durations.mean() / 1000,
            median_us=durations.median() / 1000,
        )
        .select(
            *by,
            calls_per_step=pl.col("calls") / n_steps,
            us_per_step=pl.col("total") / per_step,
            busy_share_pct=100.0 * pl.col("total") / max(busy_total, 1),
            mean_us="mean_us",
            median_us="median_us",
            starved_before_us_per_step=pl.col("starved") / per_step,
            latency_before_us_per_step=pl.col("latency") / per_step,
        )
        .sort(["us_per_step", *by], descending=[True] + [False] * len(by))
    )


def kernel_table(
    kernels: pl.DataFrame, strings: pl.DataFrame, n_steps: int, busy_total: int, full_names: bool = False
) -> pl.DataFrame:
    """Per kernel (and memcpy, memset) name over `kernels` (per_kernel of the measured steps' ops)."""
    named = kernels.join(names(kernels, strings, full_names), on=list(KEY), how="left", nulls_equal=True)
    return _table(named, ["name", "class"], n_steps, busy_total).with_columns(pl.col("class").cast(pl.String))


def class_table(kernels: pl.DataFrame, strings: pl.DataFrame, n_steps: int, busy_total: int) -> pl.DataFrame:
    """Per kernel class over `kernels`, as kernel_table."""
    named = kernels.join(names(kernels, strings, False), on=list(KEY), how="left", nulls_equal=True)
    return _table(named, ["class"], n_steps, busy_total).with_columns(pl.col("class").cast(pl.String))
