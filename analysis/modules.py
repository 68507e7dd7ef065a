"""Per-module attribution (`gapprof attribute --by module`): which module of the model each kernel belongs to,
and per module kind and per layer its CPU time, kernels, GPU busy time, analytic bytes and bandwidth.

Two ways to label kernels:
- by time, in a trace captured with `capture --modules`: a kernel belongs to the innermost `module:<kind>`
  range (profiler.module_ranges) around its launch call on the step's thread;
- by position, for traces without module ranges (CUDA graphs: one launch call for the whole step): the step's
  op sequence (short names) is aligned with one step of a module-annotated reference trace of the same model,
  and each aligned op takes the label of its reference op; ops in runs that differ stay unlabelled and the
  differences are listed.

Busy time here is the sum of op durations (one stream in these runtimes); bytes are what the module instance
must move at the step's context (gapprof.step_bytes.module_bytes).
"""
import collections
import difflib

import polars as pl

from gapprof.analysis import kernels
from gapprof.analysis.floor import Floor
from gapprof.errors import GapprofError
from gapprof.kernel_names import short_name
from gapprof.nvtx_names import KINDS, MODULE_PREFIX
from gapprof.step_bytes import module_bytes

OUTSIDE = "(outside modules)"
UNMATCHED = "(unmatched)"
MODEL_KINDS = ("embed", "rotary", "final_norm", "lm_head")
LABEL_SCHEMA = {"kind": pl.String, "layer": pl.Int64}


def module_ranges(ranges: pl.DataFrame, steps: pl.DataFrame) -> pl.DataFrame:
    """The `module:` ranges inside step ranges: range, step, globalTid, start, end, kind, layer, parent (the
    enclosing module range, or null)."""
    modules = (ranges.filter(pl.col("message").str.starts_with(MODULE_PREFIX))
               .select("globalTid", "start", "end", kind=pl.col("message").str.strip_prefix(MODULE_PREFIX),
                       layer="payload")
               .sort("globalTid", "start", pl.col("end"), descending=[False, False, True]))
    modules = (modules.join_asof(steps.select("globalTid", "step", "t0", "t1").sort("t0"), left_on="start",
                                 right_on="t0", by="globalTid", check_sortedness=False)
               .filter(pl.col("end") <= pl.col("t1")).drop("t0", "t1")
               .sort("globalTid", "start", pl.col("end"), descending=[False, False, True])
               .with_row_index("range").with_columns(pl.col("range").cast(pl.Int64)))
    # NVTX push/pop ranges nest properly on a thread: a stack walk in start order finds each one's parent.
    parents, stack = [], []
    for index, tid, start, end in modules.select("range", "globalTid", "start", "end").iter_rows():
        while stack and (stack[-1][1] != tid or stack[-1][2] < end):
            stack.pop()
        parents.append(stack[-1][0] if stack else None)
        stack.append((index, tid, end))
    return modules.with_columns(parent=pl.Series(parents, dtype=pl.Int64))


def _innermost(modules: pl.DataFrame) -> pl.DataFrame:
    """Points where the innermost open range changes: at a start it is that range, at an end its parent."""
    starts = modules.select("globalTid", time="start", range="range", order=pl.lit(1))
    ends = modules.select("globalTid", time="end", range="parent", order=pl.lit(0))
    # At equal times the start wins (it is applied after the end), and one row per instant is kept.
    return (pl.concat([starts, ends]).sort("globalTid", "time", "order")
            .unique(["globalTid", "time"], keep="last", maintain_order=True).drop("order").sort("time"))


def label_by_time(ops: pl.DataFrame, modules: pl.DataFrame) -> pl.DataFrame:
    """ops (with launch_start and the step's globalTid, the thread that launched them) plus kind and layer of the innermost module range around the launch."""
    points = _innermost(modules)
    labelled = (ops.sort("launch_start")
                .join_asof(points, left_on="launch_start", right_on="time", by="globalTid", strategy="backward",
                           check_sortedness=False)
                .join(modules.select("range", "kind", "layer"), on="range", how="left"))
    return labelled.with_columns(pl.col("kind").fill_null(OUTSIDE)).drop("time", "range").sort("op")


def step_sequences(named: pl.DataFrame) -> pl.DataFrame:
    """One row per op in GPU order within each step: step, position, op, short name."""
    return (named.sort("step", "start", "op")
            .with_columns(position=pl.int_range(pl.len()).over("step"),
                          short=pl.col("name").map_elements(short_name, return_dtype=pl.String)))


def reference_step(labelled: pl.DataFrame) -> pl.DataFrame:
    """The reference's most common step sequence: position, short, kind, layer (labelled, named, measured ops)."""
    seqs = step_sequences(labelled)
    by_step = seqs.group_by("step", maintain_order=True).agg("short")
    counts = collections.Counter(tuple(names) for names in by_step["short"].to_list())
    common = counts.most_common(1)[0][0]
    step = by_step.filter(pl.col("short").list.len() == len(common))
    step = next(s for s, names in step.iter_rows() if tuple(names) == common)
    return seqs.filter(pl.col("step") == step).select("position", "short", "kind", "layer")


def align(reference: list[str], target: list[str]) -> tuple[list[int | None], list[tuple]]:
    """For each target position the aligned reference position (None where the sequences differ), and the
    differing runs as (tag, reference start, reference names, target start, target names)."""
    if reference == target:
        return list(range(len(target))), []
    matched: list[int | None] = [None] * len(target)
    differences = []
    # autojunk off: kernel names repeat hundreds of times a step, and popular names must still match.
    matcher = difflib.SequenceMatcher(None, reference, target, autojunk=False)
    for tag, i0, i1, j0, j1 in matcher.get_opcodes():
        if tag == "equal":
            matched[j0:j1] = range(i0, i1)
        else:
            differences.append((tag, i0, reference[i0:i1], j0, target[j0:j1]))
    return matched, differences


DIFFERENCE_SCHEMA = {"steps": pl.Int64, "tag": pl.String, "reference_position": pl.Int64,
                     "reference_ops": pl.String, "position": pl.Int64, "ops": pl.String}


def difference_frame(differences: list[tuple], steps: int) -> pl.DataFrame:
    """align's differing runs as rows, with how many steps show them and up to four op names a side."""
    shown = lambda names: ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")  # noqa: E731
    return pl.DataFrame([dict(steps=steps, tag=tag, reference_position=i0, reference_ops=shown(ref), position=j0,
                              ops=shown(got)) for tag, i0, ref, j0, got in differences], schema=DIFFERENCE_SCHEMA)


def label_by_position(named: pl.DataFrame, reference: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """named ops (with `name`) labelled from the reference step by alignment, and the differing runs (one
    row per run and distinct step sequence, with how many steps have that sequence)."""
    seqs = step_sequences(named)
    ref_names = reference["short"].to_list()
    positions, differences = [], []
    by_step = seqs.group_by("step", maintain_order=True).agg("short")
    groups = collections.defaultdict(list)
    for step, names in by_step.iter_rows():
        groups[tuple(names)].append(step)
    for names, steps in groups.items():
        matched, diff = align(ref_names, list(names))
        positions.append(pl.DataFrame({"step": [s for s in steps for _ in matched],
                                       "position": list(range(len(matched))) * len(steps),
                                       "ref_position": matched * len(steps)},
                                      schema={"step": pl.Int64, "position": pl.Int64, "ref_position": pl.Int64}))
        differences.append(difference_frame(diff, len(steps)))
    labels = reference.select(ref_position="position", kind="kind", layer="layer")
    labelled = (seqs.join(pl.concat(positions), on=["step", "position"], how="left")
                .join(labels, on="ref_position", how="left")
                .with_columns(kind=pl.when(pl.col("ref_position").is_null()).then(pl.lit(UNMATCHED))
                              .otherwise(pl.col("kind")))
                .drop("position", "ref_position", "short").sort("op"))
    return labelled, pl.concat(differences)


def _cpu_times(modules: pl.DataFrame) -> pl.DataFrame:
    """Per module range: its length (cpu) and its length less its children's (self_cpu)."""
    length = pl.col("end") - pl.col("start")
    children = modules.group_by("parent").agg(child=length.sum())
    return (modules.join(children, left_on="range", right_on="parent", how="left")
            .select("step", "kind", "layer", cpu=length, self_cpu=length - pl.col("child").fill_null(0)))


def _op_bytes(labelled: pl.DataFrame, steps: pl.DataFrame, floor: Floor | None) -> pl.DataFrame:
    """Per (step, kind, layer) that has ops: the analytic bytes of that module instance at the step's ctx (0 for
    ops outside modules or unmatched)."""
    instances = labelled.select("step", "kind", "layer").unique()
    if floor is None:
        return instances.with_columns(bytes=pl.lit(None, pl.Int64))
    per_instance = pl.DataFrame(
        [(ctx, kind, b) for ctx in steps["ctx"].unique()
         for kind, b in module_bytes(floor.spec, ctx, floor.dtype_bytes, floor.count_embedding).items()],
        schema={"ctx": pl.Int64, "kind": pl.String, "bytes": pl.Int64}, orient="row")
    return (instances.join(steps.select("step", "ctx"), on="step", how="left")
            .join(per_instance, on=["ctx", "kind"], how="left")
            .with_columns(pl.col("bytes").fill_null(0)).drop("ctx"))


def module_tables(labelled: pl.DataFrame, modules: pl.DataFrame | None, steps: pl.DataFrame,
                  floor: Floor | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-kind table summed over layers, per-layer table), per measured step.

    labelled: the measured steps' ops with kind and layer; modules: their module ranges (None when labelled by
    position: no CPU times); steps: the measured steps with busy and, with a floor, ctx and excess.
    """
    n_steps = steps.height
    duration = pl.col("end") - pl.col("start")
    gpu = labelled.group_by("step", "kind", "layer").agg(
        kernels=(pl.col("kind_op") == "kernel").sum(), busy=duration.sum())
    gpu = gpu.join(_op_bytes(labelled, steps, floor), on=["step", "kind", "layer"], how="left", nulls_equal=True)
    if modules is not None:
        cpu = _cpu_times(modules).group_by("step", "kind", "layer").agg(
            ranges=pl.len(), cpu=pl.col("cpu").sum(), self_cpu=pl.col("self_cpu").sum())
        rows = cpu.join(gpu, on=["step", "kind", "layer"], how="full", coalesce=True, nulls_equal=True)
    else:
        rows = gpu.with_columns(ranges=pl.lit(None, pl.Int64), cpu=pl.lit(None, pl.Int64),
                                self_cpu=pl.lit(None, pl.Int64))
    rows = rows.with_columns(pl.col("kernels", "busy").fill_null(0), pl.col("bytes").fill_null(0))
    excess_total = int(steps["excess"].sum()) if "excess" in steps.columns else None
    peak = floor.bandwidths[floor.primary][0] if floor is not None else None
    return (_summarise(rows, ["kind"], n_steps, peak, excess_total, floor is not None),
            _summarise(rows.with_columns(layer=_layer_label()), ["layer"], n_steps, peak, excess_total,
                       floor is not None))


def _layer_label() -> pl.Expr:
    return (pl.when(pl.col("layer").is_not_null()).then(pl.col("layer").cast(pl.String))
            .when(pl.col("kind").is_in(MODEL_KINDS)).then(pl.lit("model"))
            .otherwise(pl.col("kind")))


def _summarise(rows: pl.DataFrame, by: list[str], n_steps: int, peak: float | None, excess_total: int | None,
               has_bytes: bool) -> pl.DataFrame:
    per_step = 1000.0 * n_steps  # ns totals -> µs per step
    # Null, not 0, where no range was recorded (outside modules, or labels by position).
    recorded = lambda column: pl.when(pl.col(column).is_not_null().any()).then(pl.col(column).sum())  # noqa: E731
    table = rows.group_by(*by).agg(
        recorded("ranges") / n_steps, recorded("cpu") / per_step, recorded("self_cpu") / per_step,
        pl.col("kernels").sum() / n_steps, pl.col("busy").sum(), pl.col("bytes").sum())
    table = table.select(
        *by, ranges_per_step="ranges", cpu_us="cpu", self_cpu_us="self_cpu", kernels_per_step="kernels",
        busy_us=pl.col("busy") / per_step,
        mbytes=pl.when(has_bytes).then(pl.col("bytes") / (1e6 * n_steps)),
        # bytes per ns is GB/s.
        achieved_gbps=pl.when(has_bytes & (pl.col("busy") > 0)).then(pl.col("bytes") / pl.col("busy")),
        floor_us=pl.col("bytes") / (peak * per_step) if peak else pl.lit(None, pl.Float64),
    )
    if peak:
        table = table.with_columns(peak_pct=100.0 * pl.col("achieved_gbps") / peak,
                                   excess_us=pl.col("busy_us") - pl.col("floor_us"))
        table = table.with_columns(
            excess_share_pct=100.0 * pl.col("excess_us") * per_step / excess_total if excess_total else None)
    order = {k: i for i, k in enumerate((*KINDS, OUTSIDE, UNMATCHED))}
    key = (pl.col("kind").replace_strict(order, default=len(order), return_dtype=pl.Int64) if by == ["kind"]
           else pl.col("layer").cast(pl.Int64, strict=False).fill_null(10**9))
    return table.sort(key, *by)


def check_same_model(meta: dict, reference_meta: dict) -> None:
    if meta.get("model") and reference_meta.get("model") and meta["model"] != reference_meta["model"]:
        raise GapprofError(f"--reference is a {reference_meta['model']} trace but this is {meta['model']}: "
                           "kernel positions only map within one model")


def name_ops(ops: pl.DataFrame, gpu: pl.DataFrame, strings: pl.DataFrame) -> pl.DataFrame:
    """ops with `name` (short) and `class`, and their GPU kind as kind_op (kind becomes the module kind)."""
    return kernels.named_ops(ops.rename({"kind": "kind_op"}).with_columns(kind=pl.col("kind_op")), gpu, strings,
                             False).drop("kind")


def _measured(result) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(measured steps, their ops named) of an attribution.Attribution."""
    return result.measured, name_ops(result.measured_only(result.ops), result.frames.gpu, result.frames.strings)


def labelled_by_time(result) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A attribution.Attribution's measured ops labelled by its module ranges, and those ranges (empty: none)."""
    measured, named = _measured(result)
    modules = module_ranges(result.frames.ranges, measured)
    if modules.is_empty():
        return named, modules
    return label_by_time(named.join(measured.select("step", "globalTid"), on="step"), modules), modules


def by_module(result, reference=None) -> tuple[list, list[str]]:
    """Sections (title, table) for `attribute --by module` and notes, from attribution.Attribution results: `result`
    and, for a trace without module ranges, a module-annotated `reference` of the same model."""
    measured, _ = _measured(result)
    labelled, modules = labelled_by_time(result)
    notes, sections = [], []
    facts = {}
    if modules.is_empty():
        if reference is None:
            raise GapprofError(f"{result.frames.trace.path}: no `{MODULE_PREFIX}` ranges in its steps; capture with "
                               "`gapprof capture --modules` (eager or static), or pass --reference with such a "
                               "trace of the same model to map kernels by position")
        check_same_model(result.frames.trace.meta, reference.frames.trace.meta)
        ref_labelled, ref_modules = labelled_by_time(reference)
        if ref_modules.is_empty():
            raise GapprofError(f"--reference {reference.frames.trace.path}: no `{MODULE_PREFIX}` ranges in its steps "
                               "(capture it with --modules)")
        ref_step = reference_step(ref_labelled)
        labelled, differences = label_by_position(_measured(result)[1], ref_step)
        modules = None
        facts["kernels mapped by position from"] = str(reference.frames.trace.path)
        facts["reference ops per step"] = ref_step.height
        facts["unmatched ops per step"] = labelled.filter(pl.col("kind") == UNMATCHED).height / measured.height
        if differences.height:
            notes.append(f"the op sequence differs from the reference in {differences.height} runs (table "
                         "'sequence differences'); their ops are counted as (unmatched)")
    else:
        differences = None
        meta = result.frames.trace.meta
        if "module_range_cost_ms" in meta:
            facts["module ranges per step"] = meta["module_ranges"]["ranges_per_step"]
            facts["module range cost, ms/step (unprofiled, with - without hooks)"] = meta["module_range_cost_ms"]
    by_kind, by_layer = module_tables(labelled, modules, measured, result.floor)
    sections += [("modules", by_kind), ("layers", by_layer), ("module facts", facts)]
    if differences is not None and differences.height:
        sections.append(("sequence differences", differences))
    if result.floor is None:
        notes.append("no bytes or bandwidth per module: no floor (pass --model and --ctx)")
    return sections, notes
