"""compare: the explanation on synthetic pairs, the match check, and the command end to end."""

import pytest
from click.testing import CliRunner
from conftest import gpu_bound, with_meta
from gapprof.analysis import comparison
from synthetic import TraceBuilder

from gapprof.cli import main
from gapprof.errors import GapprofError


def col(label, bw, floor, excess, starved, latency=0.0, head=0.0, tail=0.0, replayed=False) -> comparison.Column:
    wall = floor + excess + starved + latency + head + tail
    values = {r: None for r in comparison.ROWS}
    values.update(
        {
            "peak GB/s": bw,
            "floor ms": floor,
            "excess ms": excess,
            "busy ms": floor + excess,
            "starved ms": starved,
            "latency ms": latency,
            "head ms": head,
            "tail ms": tail,
            "wall ms": wall,
            "floor fraction": floor / wall,
        }
    )
    return comparison.Column(label, values, replayed)


def test_cpu_bound_pair_starved_follows_the_cpu_and_carries_the_fall():
    a = col("slow", 1000, floor=4.0, excess=2.0, starved=30.0, head=1.0)
    b = col("fast", 2000, floor=2.0, excess=1.0, starved=30.0, head=1.0)
    frame, lines = comparison.explain(a, b)
    verdict = dict(zip(frame["term"], frame["verdict"]))
    assert verdict["floor"] == verdict["excess"] == "scaled with 1/bandwidth"
    # CPU time is never said to scale or stay constant with the bandwidth: it follows the host's CPU.
    assert verdict["starved"] == verdict["head"] == "follows the host CPU"
    change = b.values["floor fraction"] - a.values["floor fraction"]
    assert frame["floor fraction change pp"].sum() == pytest.approx(100 * change)
    assert "CPU time, which follows the host CPU and not the bandwidth: starved x1.00, head x1.00." in lines
    assert not any(line.startswith("Stayed constant") for line in lines)


def test_a_term_that_doubles_over_a_tenfold_bandwidth_step_is_not_called_constant():
    """H100 -> L4 (x0.09 bandwidth): excess 4.52 -> 9.12 ms is an exponent of 0.29, yet twice the time."""
    a = col("h100", 3350, floor=4.26, excess=4.52, starved=0.0, latency=0.8)
    b = col("l4", 300, floor=47.57, excess=9.12, starved=0.0, latency=0.8)
    frame, lines = comparison.explain(a, b)
    verdict = dict(zip(frame["term"], frame["verdict"]))
    assert verdict["excess"] == "partly scaled" and verdict["latency"] == "constant"
    assert "Partly scaled with 1/bandwidth: excess x2.02." in lines
    assert not any("excess" in line for line in lines if line.startswith("Stayed constant"))


def test_a_projection_holds_cpu_time_so_its_cpu_terms_do_not_follow_a_host_cpu():
    """The replay keeps the source's CPU time: starved vanishing on a slower GPU is the GPU's doing."""
    a = col("h100", 3350, floor=4.26, excess=3.67, starved=30.9, head=1.0, tail=1.0)
    b = col("h100 on l4 (projected)", 300, floor=47.5, excess=41.0, starved=0.0001, head=1.0, tail=1.0, replayed=True)
    frame, lines = comparison.explain(a, b)
    verdict = dict(zip(frame["term"], frame["verdict"]))
    assert verdict["starved"] == "CPU time held by the replay"
    assert not any("follows the host CPU" in line for line in lines)
    assert "follows the host CPU" not in set(frame["verdict"])


def test_gpu_bound_pair_keeps_its_fraction():
    a = col("slow", 1000, floor=4.0, excess=2.0, starved=0.0, latency=0.5)
    b = col("fast", 2000, floor=2.0, excess=1.0, starved=0.0, latency=0.25)
    frame, _ = comparison.explain(a, b)
    assert b.values["floor fraction"] == pytest.approx(a.values["floor fraction"])
    assert frame["floor fraction change pp"].abs().max() < 1e-9
    assert dict(zip(frame["term"], frame["exponent"]))["latency"] == pytest.approx(1.0)


def test_term_that_grows_with_bandwidth_is_named():
    a = col("slow", 1000, floor=4.0, excess=2.0, starved=10.0, latency=1.0)
    b = col("fast", 2000, floor=2.0, excess=1.0, starved=20.0, latency=2.0)
    frame, lines = comparison.explain(a, b)
    assert dict(zip(frame["term"], frame["verdict"]))["latency"] == "moved against 1/bandwidth"
    assert "Grew although bandwidth rose: latency." in lines
    assert "CPU time, which follows the host CPU and not the bandwidth: starved x2.00." in lines


def test_mismatched_traces_are_refused_unless_forced():
    metas = {
        "a": {"model": "m", "ctx": 2048, "runtime": "eager"},
        "b": {"model": "m", "ctx": 1024, "runtime": "graphs"},
    }
    with pytest.raises(GapprofError, match=r"ctx differs \(a: 2048, b: 1024\); runtime differs"):
        comparison.check_match(metas, force=False)
    assert len(comparison.check_match(metas, force=True)) == 2


def test_compare_command(pair, tmp_path):
    result = CliRunner().invoke(main, ["compare", *map(str, pair)])
    assert result.exit_code == 0, result.output
    assert "explanation h100 -> h200" in result.stdout
    assert "peak bandwidth x1.43" in result.stdout
    other = with_meta(TraceBuilder(), runtime="graphs")
    gpu_bound(other)
    path = other.write(tmp_path / "graphs.sqlite")
    refused = CliRunner().invoke(main, ["compare", str(pair[0]), str(path)])
    assert refused.exit_code == 1 and "runtime differs" in refused.stderr
    forced = CliRunner().invoke(main, ["compare", "--force", str(pair[0]), str(path), "--format", "json"])
    assert forced.exit_code == 0, forced.output
    assert "compared anyway (--force)" in forced.stdout


def test_project_command(pair):
    result = CliRunner().invoke(
        main,
        [
            "project",
            str(pair[0]),
            "--to",
            "h200",
            "--to",
            "l4",
            "--kernel-scale",
            "other=2",
            "--launch-cost-scale",
            "1.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("project\n")
    assert "h100 on h200 (projected)" in result.stdout and "h100 on l4 (projected)" in result.stdout
    assert "CPU time x1.5" in result.stdout
    bad = CliRunner().invoke(main, ["project", str(pair[0]), "--to", "h200", "--graphs"])
    assert bad.exit_code == 1 and "--graph-launch-us" in bad.stderr
    unknown = CliRunner().invoke(main, ["project", str(pair[0]), "--to", "z9000"])
    assert unknown.exit_code == 1 and "unknown GPU" in unknown.stderr
