"""`gapprof sweep-merge`: parts of one grid join into one sweep; parts that are not comparable are refused."""

import json

import pytest
from conftest import invoke_recorded

from gapprof.errors import GapprofError
from gapprof.sweep_merge import merge_sweeps

MACHINE = {
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "driver": "580",
    "torch": "2.11",
    "transformers": "5.17",
    "cuda": "13.0",
    "copy_bandwidth_gbps": 3000.0,
}


def _row(model, ctx, runtime, median):
    return {
        "model": model,
        "ctx": ctx,
        "runtime": runtime,
        "attn": "sdpa",
        "status": "ok",
        "reason": "",
        "median_ms": median,
        "p10_ms": median,
        "p90_ms": median,
        "floor_ms": 4.0,
        "floor_ms_copy": 4.4,
        "floor_fraction": 4.0 / median,
        "floor_fraction_copy": 4.4 / median,
        "step_ms": [median],
    }


def _sweep(models, rows, finished, copy_gbps=3000.0, **grid):
    return {
        "command": f"gapprof sweep --models {','.join(models)}",
        "finished_at": finished,
        "grid": {
            "models": models,
            "ctx": [2048],
            "runtimes": ["eager", "graphs"],
            "steps": 16,
            "warmup": 4,
            "dtype": "bfloat16",
            "attn": "auto",
            "seed": 0,
            "device": "cuda",
        }
        | grid,
        "floor_convention": " | ".join(f"floor of {m}" for m in models),
        "timing": "fresh process per model",
        "machine": MACHINE | {"copy_bandwidth_gbps": copy_gbps},
        "rows": rows,
    }


A = _sweep(["m1", "m2"], [_row("m1", 2048, "eager", 20.0), _row("m2", 2048, "graphs", 9.0)], "2026-11-27T20:11:00")
B = _sweep(["m3"], [_row("m3", 2048, "graphs", 10.0)], "2026-11-27T20:17:00", copy_gbps=3010.0)


def test_rows_grid_and_parts_of_the_joined_sweep():
    merged = merge_sweeps([A, B])
    assert [(r["model"], r["median_ms"]) for r in merged["rows"]] == [("m1", 20.0), ("m2", 9.0), ("m3", 10.0)]
    assert merged["grid"]["models"] == ["m1", "m2", "m3"] and merged["grid"]["steps"] == 16
    assert merged["floor_convention"] == "floor of m1 | floor of m2 | floor of m3"
    assert merged["finished_at"] == "2026-11-27T20:17:00"
    assert [p["machine"]["copy_bandwidth_gbps"] for p in merged["parts"]] == [3000.0, 3010.0]
    assert merged["command"] == "gapprof sweep --models m1,m2 ; gapprof sweep --models m3"


@pytest.mark.parametrize(
    "other, message",
    [
        (_sweep(["m3"], [_row("m3", 2048, "eager", 1.0)], "t", steps=32), "sweeps differ in grid steps: 16, 32"),
        (
            _sweep(["m3"], [_row("m3", 2048, "eager", 1.0)], "t", quant="int4"),
            "sweeps differ in grid quant: None, int4",
        ),
        (_sweep(["m1"], [_row("m1", 2048, "eager", 1.0)], "t"), "cell m1 2048 eager appears in more than one sweep"),
    ],
)
def test_parts_that_do_not_join_are_refused(other, message):
    with pytest.raises(GapprofError, match=message):
        merge_sweeps([A, other])


def test_another_gpu_is_refused():
    other = B | {"machine": MACHINE | {"gpu_name": "NVIDIA H200"}}
    with pytest.raises(GapprofError, match="machine gpu_name: NVIDIA H100 80GB HBM3, NVIDIA H200"):
        merge_sweeps([A, other])


def test_one_sweep_is_not_a_merge():
    with pytest.raises(GapprofError, match="at least two"):
        merge_sweeps([A])


def _cli(*args):
    return invoke_recorded(*args)


def test_cli_writes_the_joined_outputs(tmp_path):
    pytest.importorskip("matplotlib")
    for name, part in (("a", A), ("b", B)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.json").write_text(json.dumps(part))
    result = _cli("sweep-merge", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "joined 3 cells from 2 sweeps" in result.output
    markdown = (tmp_path / "out" / "sweep.md").read_text()
    assert "Joined from 2 sweeps" in markdown and "| m3 | 2,048 | graphs |" in markdown
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["merged_with"].startswith("gapprof sweep-merge")
    assert (tmp_path / "out" / "sweep.csv").read_text().count("\n") == 4


def test_cli_folder_without_a_sweep_is_one_line(tmp_path):
    (tmp_path / "a").mkdir()
    result = _cli("sweep-merge", tmp_path / "a", tmp_path / "a", "-o", tmp_path / "out")
    assert result.exit_code != 0 and result.output.count("\n") == 1
    assert "sweep.json: not found" in result.output


@pytest.mark.parametrize(
    "text, message",
    [("{", "sweep.json: not JSON"), ('{"rows": []}', "not a gapprof sweep result (no command, finished_at")],
)
def test_cli_sweep_json_that_is_not_a_sweep_is_one_line(tmp_path, text, message):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sweep.json").write_text(text)
    result = invoke_recorded("sweep-merge", tmp_path / "a", tmp_path / "a", "-o", tmp_path / "out")
    assert result.exit_code != 0 and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert message in result.output


@pytest.mark.parametrize(
    "change",
    [
        {"rows": 5},
        {"grid": "all"},
        {"machine": None},
        {"rows": [_row("m1", "2048", "eager", 20.0)]},
        {"rows": [_row("m1", True, "eager", 20.0)]},
        {"rows": [[1]]},
    ],
)
def test_cli_sweep_json_of_the_wrong_shape_is_one_line(tmp_path, change):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sweep.json").write_text(json.dumps(A | change))
    for command in ("sweep-merge", "sweep-attribute"):
        folders = [tmp_path / "a", tmp_path / "a"] if command == "sweep-merge" else [tmp_path / "a"]
        result = invoke_recorded(command, *folders, "-o", tmp_path / "out")
        assert result.exit_code == 1 and result.exception.__class__ is SystemExit, result.output
        assert "not a gapprof sweep result (grid and machine are objects, rows a list of cells" in result.output
