"""benchmarks/predict_lean.py on the shipped traces: the planned step adds up, its bytes are the floor's, and a
measured trace's terms come out beside it."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("polars")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "predict_lean.py"
TRACE, NCU = REPO / "traces" / "h100-graphs.sqlite.xz", REPO / "traces" / "h100-graphs-ncu.csv.gz"


def _script():
    spec = importlib.util.spec_from_file_location("predict_lean", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_planned_step_moves_the_floors_bytes_and_adds_up():
    import gapprof
    from gapprof.gpu_profile import shipped

    script = _script()
    report = gapprof.attribute(TRACE)
    measured, floor = report.attribution.measured, report.attribution.floor
    exposed = script.trace_terms(report)
    fit = shipped()["h100-sxm"].doc["fit"]
    terms = script.predict(floor.spec, float(measured["ctx"].mean()), floor.dtype_bytes, fit, 3350.0, exposed)
    assert terms["kernels"] == 13 * 28 + 4 and terms["matmuls"] == 6 * 28 + 1
    assert terms["analytic_bytes"] == pytest.approx(measured["bytes"].mean())
    assert terms["floor_ms"] == pytest.approx(measured["floor"].mean() / 1e6)
    assert terms["busy_ms"] == pytest.approx(terms["bytes_ms"] + terms["fixed_ms"])
    assert terms["fixed_ms"] == pytest.approx((169 * fit["gemv"]["fixed_us"] + 199 * fit["fixed_us_graph"]) / 1e3)
    assert terms["wall_ms"] == pytest.approx(terms["busy_ms"] + terms["latency_ms"] + terms["head_tail_ms"])


def test_measured_columns_and_the_back_test():
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--trace",
            str(TRACE),
            "--ncu",
            str(NCU),
            "--measured",
            f"h100-sxm={TRACE}",
            "--measured-ncu",
            f"h100-sxm={NCU}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "h100-sxm predicted   h100-sxm measured      h200 predicted" in out
    busy = next(line for line in out.splitlines() if line.startswith("busy_ms")).split()
    bytes_ms = next(line for line in out.splitlines() if line.startswith("bytes_ms")).split()
    fixed = next(line for line in out.splitlines() if line.startswith("fixed_ms")).split()
    assert float(busy[2]) == pytest.approx(float(bytes_ms[2]) + float(fixed[2]), abs=2e-3)  # measured: at R
    assert "  all               1,516     9,098.3" in out  # the back-test covers every op of the graphs step


@pytest.mark.parametrize("baseline", ["graphs", "compile"])
def test_readme_lean_goal_is_the_shipped_ab(baseline):
    """docs/lean-runtime.md's lean A/B lines are the shipped results, and the lean arm is within the goal (<= 6.1 ms,
    70% of the H100's datasheet floor)."""
    ab = json.loads((REPO / f"results/h100-sxm/ab-{baseline}-lean/ab.json").read_text())
    lean, base = ab["arms"]["b"], ab["arms"]["a"]
    assert (base["runtime"], lean["runtime"]) == (baseline, "lean")
    line = (
        f"lean {lean['mean_of_medians_ms']:.2f}"
        + (" ms" if baseline == "graphs" else "")
        + f" against {baseline} {base['mean_of_medians_ms']:.2f}, {ab['speedup']:.3f}x "
        f"({'95% CI ' if baseline == 'graphs' else ''}{ab['ci95'][0]:.3f}-{ab['ci95'][1]:.3f}), "
        f"{lean['floor_fraction']:.1%}"
    )
    assert line in " ".join((REPO / "docs" / "lean-runtime.md").read_text().split())
    assert lean["mean_of_medians_ms"] <= 6.1 and lean["floor_fraction"] >= 0.70


@pytest.mark.parametrize("baseline", ["graphs", "compile"])
def test_readme_h200_lean_lines_are_the_shipped_abs(baseline):
    ab = json.loads((REPO / f"results/h200/ab-{baseline}-lean/ab.json").read_text())
    lean, base = ab["arms"]["b"], ab["arms"]["a"]
    assert ab["machine"]["gpu_name"] == "NVIDIA H200" and (base["runtime"], lean["runtime"]) == (baseline, "lean")
    line = (
        f"lean {lean['mean_of_medians_ms']:.2f} ms against {baseline} {base['mean_of_medians_ms']:.2f}, "
        f"{ab['speedup']:.3f}x (95% CI {ab['ci95'][0]:.3f}-{ab['ci95'][1]:.3f}), {lean['floor_fraction']:.1%}"
    )
    assert line in " ".join((REPO / "docs" / "lean-runtime.md").read_text().split())
    assert lean["mean_of_medians_ms"] > 4.2  # docs/lean-runtime.md says the H200 goal is missed


def test_readme_h200_lean_split_is_the_scripts():
    """docs/lean-runtime.md's prediction table: the H200 lean step's measured bytes and fixed time, from its ncu CSV."""
    trace, ncu = REPO / "traces" / "h200-lean.sqlite.xz", REPO / "traces" / "h200-lean-ncu.csv.gz"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--measured", f"h200={trace}", "--measured-ncu", f"h200={ncu}"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    readme = (REPO / "docs" / "lean-runtime.md").read_text()
    for term in ("bytes", "fixed"):
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"{term}_ms"))
        predicted_h100, predicted_h200, measured_h200 = row.split()[1:]
        assert f"| {term} | {predicted_h100} | - | " in readme
        assert f" | {predicted_h200} | {measured_h200} | - |" in readme
