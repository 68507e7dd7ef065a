"""Per-module attribution (`gapprof attribute --by module`): which module of the model each kernel belongs to,
and per module kind and per layer its CPU time, kernels, GPU busy time, analytic bytes and bandwidth.

Two ways to label kernels:
- by time, in a trace captured with `capture --modules`: a kernel belongs to the innermost `module:<kind>`
  range (profiler.module_ranges) around its launch call on the step's thread;
- by position, for traces without module ranges (CUDA graphs: one launch call for the whole step): the step's
  op sequence (short names) is aligned with one step of a module-annotated reference trace of the same model,
  and each aligned op takes the label of its reference op; ops in runs that differ stay unlabelled and the
  differences are listed.
Labelling lives in module_labels (by time) and module_alignment (by position), the tables in module_tables.
"""

import polars as pl
from gapprof.analysis import kernels
from gapprof.analysis.module_alignment import UNMATCHED, label_by_position, reference_step
from gapprof.analysis.module_labels import label_by_time, module_ranges
from gapprof.analysis.module_tables import module_tables

from gapprof.errors import GapprofError
from gapprof.nvtx_names import MODULE_PREFIX


class NoModuleRanges(GapprofError):
    """Module labels were needed from a trace (role "trace" or "reference") whose steps hold no module ranges."""

    def __init__(self, path, role: str):
        super().__init__(f"{path}: no `{MODULE_PREFIX}` ranges in its steps")
        self.path, self.role = path, role


def _weights(meta: dict) -> str:
    """The quantisation a capture's metadata records (`quant`), "none" where it records none."""
    quant = meta.get("quant") or {}
    return quant.get("method", "none") + (" with lm_head" if quant.get("lm_head") else "")


def check_same_model(meta: dict, reference_meta: dict) -> None:
    """Kernel positions and bytes map only between captures of one model with one quantisation of its weights."""
    if meta.get("model") and reference_meta.get("model") and meta["model"] != reference_meta["model"]:
        raise GapprofError(
            f"the reference is a {reference_meta['model']} trace but this is {meta['model']}: "
            "kernel positions only map within one model"
        )
    if _weights(meta) != _weights(reference_meta):
        raise GapprofError(
            f"the two captures quantise their weights differently ({_weights(meta)} and "
            f"{_weights(reference_meta)}): kernel positions only map within one method"
        )


def name_ops(ops: pl.DataFrame, gpu: pl.DataFrame, strings: pl.DataFrame) -> pl.DataFrame:
    """ops with `name` (short) and `class`, and their GPU kind as kind_op (kind becomes the module kind)."""
    return kernels.named_ops(
        ops.rename({"kind": "kind_op"}).with_columns(kind=pl.col("kind_op")), gpu, strings, False
    ).drop("kind")


def _measured(result) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(measured steps, their ops named) of an attribution.Attribution."""
    return result.measured, name_ops(result.measured_only(result.ops), result.frames.gpu, result.frames.strings)


def labelled_by_time(result) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An attribution.Attribution's measured ops labelled by its module ranges, and those ranges (empty: none)."""
    measured, named = _measured(result)
    modules = module_ranges(result.frames.ranges, measured)
    if modules.is_empty():
        return named, modules
    return label_by_time(named.join(measured.select("step", "globalTid"), on="step"), modules), modules


def module_labels(result, reference=None) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, dict]:
    """An attribution.Attribution's measured ops labelled with module kind and layer: by its own module ranges, else
    by position from a module-annotated `reference` of the same model (else NoModuleRanges). Returns (labelled ops,
    the module ranges or None when labelled by position, the differing runs or None when labelled by time, facts)."""
    labelled, modules = labelled_by_time(result)
    if not modules.is_empty():
        return labelled, modules, None, {}
    if reference is None:
        raise NoModuleRanges(result.frames.trace.path, "trace")
    check_same_model(result.frames.trace.meta, reference.frames.trace.meta)
    ref_labelled, ref_modules = labelled_by_time(reference)
    if ref_modules.is_empty():
        raise NoModuleRanges(reference.frames.trace.path, "reference")
    ref_step = reference_step(ref_labelled)
    labelled, differences = label_by_position(_measured(result)[1], ref_step)
    facts = {
        "kernels mapped by position from": str(reference.frames.trace.path),
        "reference ops per step": ref_step.height,
        "unmatched ops per step": labelled.filter(pl.col("kind") == UNMATCHED).height / result.measured.height,
    }
    return labelled, None, differences, facts


def by_module(result, reference=None) -> tuple[list, list[str]]:
    """Sections (title, table) and notes per module, from attribution.Attribution results: `result` and, for a
    trace without module ranges, a module-annotated `reference` of the same model (else NoModuleRanges)."""
    measured, _ = _measured(result)
    labelled, modules, differences, facts = module_labels(result, reference)
    notes, sections = [], []
    if differences is not None and differences.height:
        notes.append(
            f"the op sequence differs from the reference in {differences.height} runs (table "
            "'sequence differences'); their ops are counted as (unmatched)"
        )
    meta = result.frames.trace.meta
    if modules is not None and "module_range_cost_ms" in meta:
        facts["module ranges per step"] = meta["module_ranges"]["ranges_per_step"]
        facts["module range cost, ms/step (unprofiled, with - without hooks)"] = meta["module_range_cost_ms"]
    by_kind, by_layer = module_tables(labelled, modules, measured, result.floor)
    sections += [("modules", by_kind), ("layers", by_layer), ("module facts", facts)]
    if differences is not None and differences.height:
        sections.append(("sequence differences", differences))
    if result.floor is None:
        notes.append("no bytes or bandwidth per module: the trace has no floor")
    return sections, notes
