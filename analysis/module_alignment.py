"""Which module each op of a step belongs to, by position, for traces without module ranges (CUDA graphs: one
launch call for the whole step): the step's op sequence (short kernel names) is aligned with one step of a
module-annotated reference trace of the same model, and each aligned op takes the label of its reference op;
ops in runs that differ are labelled UNMATCHED and the differing runs are listed.
"""

import collections
import difflib

import polars as pl

from gapprof.kernel_names import short_name

UNMATCHED = "(unmatched)"


def step_sequences(named: pl.DataFrame) -> pl.DataFrame:
    """One row per op in GPU order within each step: step, position, op, short name."""
    return named.sort("step", "start", "op").with_columns(
        position=pl.int_range(pl.len()).over("step"),
        short=pl.col("name").map_elements(short_name, return_dtype=pl.String),
    )


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


DIFFERENCE_SCHEMA = {
    "steps": pl.Int64,
    "tag": pl.String,
    "reference_position": pl.Int64,
    "reference_ops": pl.String,
    "position": pl.Int64,
    "ops": pl.String,
}


def difference_frame(differences: list[tuple], steps: int) -> pl.DataFrame:
    """align's differing runs as rows, with how many steps show them and up to four op names a side."""
    shown = lambda names: ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")  # noqa: E731
    return pl.DataFrame(
        [
            dict(steps=steps, tag=tag, reference_position=i0, reference_ops=shown(ref), position=j0, ops=shown(got))
            for tag, i0, ref, j0, got in differences
        ],
        schema=DIFFERENCE_SCHEMA,
    )


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
        positions.append(
            pl.DataFrame(
                {
                    "step": [s for s in steps for _ in matched],
                    "position": list(range(len(matched))) * len(steps),
                    "ref_position": matched * len(steps),
                },
                schema={"step": pl.Int64, "position": pl.Int64, "ref_position": pl.Int64},
            )
        )
        differences.append(difference_frame(diff, len(steps)))
    labels = reference.select(ref_position="position", kind="kind", layer="layer")
    labelled = (
        seqs.join(pl.concat(positions), on=["step", "position"], how="left")
        .join(labels, on="ref_position", how="left")
        .with_columns(kind=pl.when(pl.col("ref_position").is_null()).then(pl.lit(UNMATCHED)).otherwise(pl.col("kind")))
        .drop("position", "ref_position", "short")
        .sort("op")
    )
    return labelled, pl.concat(differences)
