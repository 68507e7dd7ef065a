"""The documented A/B and sweep tables are the shipped results: each row is rebuilt here from results/<gpu>/ab.json,
ab-static-graphs/ab.json and sweep.json (docs/results.md) and the quantised A/Bs and sweeps (docs/quantisation.md),
and must appear on its page as it is."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = (REPO / "docs" / "results.md").read_text()
QUANTISATION = (REPO / "docs" / "quantisation.md").read_text()
GPUS = {"h100-sxm": "H100", "h200": "H200"}
SWEEP_RUNTIMES = ("eager", "graphs", "lean")
QUANT_RUNTIMES = ("eager", "static", "graphs", "compile")


def _json(path: str) -> dict:
    return json.loads((REPO / "results" / path).read_text())


def ab_row(gpu: str, folder: str) -> str:
    result = _json(f"{gpu}/{folder}ab.json")
    a, b = result["arms"]["a"], result["arms"]["b"]
    label = f"{a['runtime']} ({a['attn'].removeprefix('sdpa-')})" if a["runtime"] == "eager" else a["runtime"]
    low, high = result["ci95"]
    return (
        f"| {GPUS[gpu]} | {label} vs {b['runtime']} | {a['mean_of_medians_ms']:.2f} ({a['sd_of_medians_ms']:.2f}) "
        f"| {b['mean_of_medians_ms']:.2f} ({b['sd_of_medians_ms']:.2f}) | {result['speedup']:.3f}x "
        f"({low:.3f}-{high:.3f}) | {a['floor_fraction']:.1%} / {b['floor_fraction']:.1%} |"
    )


def sweep_rows(gpu: str) -> list[str]:
    result = _json(f"{gpu}/sweep.json")
    cells = {(r["model"], r["runtime"], r["ctx"]): r["floor_fraction"] for r in result["rows"]}
    rows = []
    for model in result["grid"]["models"]:
        for runtime in SWEEP_RUNTIMES:
            fractions = [f"{cells[model, runtime, ctx]:.1%}" for ctx in result["grid"]["ctx"]]
            rows.append(f"| {GPUS[gpu]} | {model} | {runtime} | {' | '.join(fractions)} |")
    return rows


@pytest.mark.parametrize("gpu", GPUS)
@pytest.mark.parametrize("folder", ["", "ab-static-graphs/"])
def test_readme_ab_rows_are_the_shipped_results(gpu, folder):
    result = _json(f"{gpu}/{folder}ab.json")
    assert GPUS[gpu] in result["machine"]["gpu_name"]
    assert [len(arm["sessions"]) for arm in result["arms"].values()] == [10, 10]
    assert ab_row(gpu, folder) in RESULTS


@pytest.mark.parametrize("gpu", GPUS)
def test_readme_sweep_rows_are_the_shipped_sweep(gpu):
    result = _json(f"{gpu}/sweep.json")
    assert GPUS[gpu] in result["machine"]["gpu_name"]
    assert all(row["status"] == "ok" for row in result["rows"]) and len(result["rows"]) == 36
    assert {row["attn"] for row in result["rows"] if row["runtime"] == "eager"} == {"sdpa-flash"}
    for row in sweep_rows(gpu):
        assert row in RESULTS


def test_lean_stays_above_graphs_and_graphs_above_eager_in_every_sweep_cell():
    """What docs/results.md says of the sweep: at every model and context, on both GPUs, lean > graphs > eager."""
    for gpu in GPUS:
        cells = {(r["model"], r["ctx"], r["runtime"]): r["floor_fraction"] for r in _json(f"{gpu}/sweep.json")["rows"]}
        for model, ctx, _ in cells:
            assert cells[model, ctx, "lean"] > cells[model, ctx, "graphs"] > cells[model, ctx, "eager"]


QUANT_METHODS = ("int8", "int4", "nf4", "gemlite-int4")
QUANT_RESULTS = {"h100-sxm": (*QUANT_METHODS, "exllamav2-int4"), "h200": QUANT_METHODS}
GPU_METHODS = [(gpu, method) for gpu, methods in QUANT_RESULTS.items() for method in methods]


@pytest.mark.parametrize(("gpu", "method"), GPU_METHODS)
def test_readme_quantised_ab_rows_are_the_shipped_results(gpu, method):
    result = _json(f"{gpu}/ab-graphs-none-vs-graphs-{method}/ab.json")
    a, b = result["arms"]["a"], result["arms"]["b"]
    assert GPUS[gpu] in result["machine"]["gpu_name"] and (a["runtime"], b["runtime"]) == ("graphs", "graphs")
    assert b["quant"] == method and "quant" not in a
    assert [len(arm["sessions"]) for arm in result["arms"].values()] == [4, 4]
    assert "recorded at capture" in result["floor_b"]["convention"]
    floor_a, floor_b = result["floor"]["floor_bytes"], result["floor_b"]["floor_bytes"]
    low, high = result["ci95"]
    row = (
        f"| {GPUS[gpu]} | {method} | {a['mean_of_medians_ms']:.2f} ({a['sd_of_medians_ms']:.2f}) | "
        f"{b['mean_of_medians_ms']:.2f} ({b['sd_of_medians_ms']:.2f}) | "
        f"{result['speedup']:.3f}x ({low:.3f}-{high:.3f}) "
        f"| {floor_b / 1e9:.2f} ({floor_a / floor_b:.2f}x) | {b['floor_fraction']:.1%} / "
        f"{b['floor_fraction_unquantised']:.1%} |"
    )
    assert row in QUANTISATION


@pytest.mark.parametrize(("gpu", "method"), GPU_METHODS)
def test_readme_quantised_sweep_rows_are_the_shipped_sweeps(gpu, method):
    """Each cell as docs/quantisation.md shows it; every method ran under every runtime, as it says."""
    result = _json(f"{gpu}/quant-{method}/sweep.json")
    assert GPUS[gpu] in result["machine"]["gpu_name"] and result["grid"]["quant"] == method
    rows = {row["runtime"]: row for row in result["rows"]}
    assert [rows[r]["status"] for r in QUANT_RUNTIMES] == ["ok"] * len(QUANT_RUNTIMES)
    cells = [f"{rows[r]['median_ms']:.2f}" for r in QUANT_RUNTIMES]
    assert f"| {GPUS[gpu]} | {method} | {' | '.join(cells)} |" in QUANTISATION
