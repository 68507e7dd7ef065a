"""docs/quantisation.md's table of where a quantised graphs step's GPU time goes by module: each cell is what
`attribute --by module --reference` gives on the shipped H100 traces, the module kinds summed as the table groups
them."""

from pathlib import Path

import pytest

pytest.importorskip("polars")

from gapprof.analysis import modules  # noqa: E402
from gapprof.analysis.attribution import Options, analyze  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"
README = (REPO / "docs" / "quantisation.md").read_text()
METHODS = {
    "bf16": "",
    "int8": "-int8",
    "int4": "-int4",
    "nf4": "-nf4",
    "gemlite-int4": "-gemlite-int4",
    "exllamav2-int4": "-exllamav2-int4",
}
GROUPS = {
    "gate, up, down": ("gate_proj", "up_proj", "down_proj"),
    "q, k, v, o": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "lm_head": ("lm_head",),
    "attention": ("attention",),
    "norms": ("input_norm", "post_attention_norm", "final_norm"),
    "the rest": ("embed", "rotary", "layer", "mlp", "act", "(outside modules)"),
}


def module_rows(suffix: str) -> dict[str, dict]:
    result = analyze(TRACES / f"h100-graphs{suffix}.sqlite.xz", Options())
    reference = analyze(TRACES / f"h100-static-modules{suffix}.sqlite.xz", Options())
    sections, _ = modules.by_module(result, reference)
    found = dict(sections)
    assert found["module facts"]["unmatched ops per step"] == 0
    return {row["kind"]: row for row in found["modules"].iter_rows(named=True)}


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, dict]]:
    return {method: module_rows(suffix) for method, suffix in METHODS.items()}


def cell(rows: dict[str, dict], kinds: tuple[str, ...]) -> str:
    busy = sum(rows[kind]["busy_us"] for kind in kinds) / 1000
    floor = sum(rows[kind]["floor_us"] for kind in kinds) / 1000
    return f"{busy:.2f} ({floor:.2f})"


def test_every_module_kind_is_in_one_group(tables):
    grouped = [kind for kinds in GROUPS.values() for kind in kinds]
    assert len(grouped) == len(set(grouped))
    for rows in tables.values():
        assert set(rows) == set(grouped)


@pytest.mark.parametrize("group", GROUPS)
def test_readme_module_rows_are_the_shipped_traces(tables, group):
    cells = " | ".join(cell(rows, GROUPS[group]) for rows in tables.values())
    assert f"| {group} | {cells} |" in README


def test_readme_busy_row_adds_up_every_module(tables):
    every = tuple(kind for kinds in GROUPS.values() for kind in kinds)
    assert f"| busy | {' | '.join(cell(rows, every) for rows in tables.values())} |" in README
