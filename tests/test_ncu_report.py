"""The ncu CSV parser and report on a constructed CSV in the export's format (tests/data/README.md), and on
any real export committed under traces/."""

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import annotated_trace
from gapprof.analysis import module_alignment, modules, ncu_bytes
from gapprof.analysis.attribution import Options, analyze
from gapprof.analysis.readers import ncu

from gapprof import models
from gapprof.cli import main
from gapprof.errors import GapprofError
from gapprof.step_bytes import kind_bytes

DATA = Path(__file__).parent / "data"
CONSTRUCTED = DATA / "ncu-raw-constructed.csv"
TRACES = Path(__file__).parent.parent / "traces"
REAL = sorted([*TRACES.glob("*-ncu.csv"), *TRACES.glob("*-ncu.csv.gz")])


def test_units_separators_and_na_are_parsed():
    rows = ncu.read_ncu_csv(CONSTRUCTED)
    assert rows.height == 14 and rows["id"].to_list() == list(range(14))
    gemv = rows.row(2, named=True)
    assert gemv["name"].startswith("void gemv<")
    assert gemv["bytes_read"] == pytest.approx(0.01e9)  # Gbyte
    assert gemv["bytes_write"] == pytest.approx(12_500)  # Kbyte
    assert gemv["duration_ns"] == pytest.approx(4_000)  # us
    sdpa = rows.row(3, named=True)
    assert sdpa["bytes_write"] == pytest.approx(1e6) and sdpa["duration_ns"] == pytest.approx(1_024_500)
    assert rows.row(4, named=True)["bytes_read"] is None  # n/a


def test_a_gzipped_export_reads_as_the_csv_with_its_sidecar(tmp_path):
    import gzip
    import json

    packed = tmp_path / "t-ncu.csv.gz"
    packed.write_bytes(gzip.compress(CONSTRUCTED.read_bytes()))
    (tmp_path / "t-ncu.json").write_text(json.dumps({"gpu_name": "NVIDIA H200"}))
    assert ncu.read_ncu_csv(packed).equals(ncu.read_ncu_csv(CONSTRUCTED))
    assert ncu.read_sidecar(packed) == {"gpu_name": "NVIDIA H200"}
    broken = tmp_path / "broken-ncu.csv.gz"
    broken.write_bytes(gzip.compress(CONSTRUCTED.read_bytes())[:40])
    with pytest.raises(GapprofError, match="not an ncu CSV"):
        ncu.read_ncu_csv(broken)


def test_kernel_and_class_tables_split_time_into_dram_at_peak_and_rest():
    by_kernel, by_class, totals = ncu_bytes.kernel_tables(ncu.read_ncu_csv(CONSTRUCTED), 3350.0)
    gemv = by_kernel.filter(pl.col("name") == "gemv").row(0, named=True)
    moved = 2 * (0.01e9 + 12_500)
    assert gemv["kernels"] == 2 and gemv["time_us"] == pytest.approx(8)
    assert gemv["achieved_gbps"] == pytest.approx(moved / 8_000)
    assert gemv["dram_at_peak_us"] == pytest.approx(moved / 3350 / 1e3)
    assert gemv["rest_us"] == pytest.approx(8 - moved / 3350 / 1e3)
    assert gemv["class"] == "gemv/gemm"
    assert set(by_class["class"]) >= {"gemv/gemm", "attention", "norm"}
    assert by_kernel["time_us"].sum() == pytest.approx(totals["kernel time, us"])
    assert by_class["time_share_pct"].sum() == pytest.approx(100)


def test_measured_bytes_per_module_over_complete_steps(tmp_path):
    ref = analyze(annotated_trace(tmp_path), Options())
    labelled, _ = modules.labelled_by_time(ref)
    spec = models.get_spec("tiny-qwen2")
    analytic = kind_bytes(spec, 100, 2)
    table, differences, complete = ncu_bytes.module_comparison(
        ncu.read_ncu_csv(CONSTRUCTED), module_alignment.reference_step(labelled), analytic, 3350.0
    )
    assert complete == 2 and differences.is_empty()  # 14 kernels: two 6-op steps and a partial third
    rows = {r["kind"]: r for r in table.iter_rows(named=True)}
    assert rows["q_proj"]["kernels"] == 1
    assert rows["q_proj"]["measured_mb"] == pytest.approx((0.01e9 + 12_500) / 1e6)
    assert rows["q_proj"]["analytic_mb"] == pytest.approx(analytic["q_proj"] / 1e6)
    assert rows["q_proj"]["measured_over_analytic"] == pytest.approx((0.01e9 + 12_500) / analytic["q_proj"])
    assert rows["embed"]["time_us"] == pytest.approx(2)  # the third step's embed is not counted


def test_fewer_kernels_than_a_step_is_refused(tmp_path):
    ref = analyze(annotated_trace(tmp_path), Options())
    labelled, _ = modules.labelled_by_time(ref)
    with pytest.raises(GapprofError, match="less than one complete step"):
        ncu_bytes.module_comparison(
            ncu.read_ncu_csv(CONSTRUCTED).head(4), module_alignment.reference_step(labelled), {}, 3350.0
        )


def test_missing_metric_and_unknown_unit_are_clear_errors(tmp_path):
    lines = CONSTRUCTED.read_text().splitlines()
    dropped = tmp_path / "dropped.csv"
    dropped.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    with pytest.raises(GapprofError, match="no column gpu__time_duration.sum"):
        ncu.read_ncu_csv(dropped)
    odd = tmp_path / "odd.csv"
    odd.write_text("\n".join([lines[0], lines[1].replace('"us"', '"fortnight"'), *lines[2:]]) + "\n")
    with pytest.raises(GapprofError, match="unknown unit 'fortnight'"):
        ncu.read_ncu_csv(odd)
    with pytest.raises(GapprofError, match="not an `ncu --csv --page raw` export"):
        ncu.read_ncu_csv(DATA / "README.md")


def test_ncu_report_cli(tmp_path):
    folder = tmp_path / "report"
    out = CliRunner().invoke(
        main, ["ncu-report", str(CONSTRUCTED), "--gpu", "h100", "--format", "csv", "-o", str(folder)]
    )
    assert out.exit_code == 0, out.output
    assert "gemv" in (folder / "classes.csv").read_text()
    trace = annotated_trace(tmp_path)
    out = CliRunner().invoke(
        main,
        [
            "ncu-report",
            str(CONSTRUCTED),
            "--gpu",
            "h100",
            "--reference",
            str(trace),
            "--model",
            "tiny-qwen2",
            "--ctx",
            "100",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "modules (per step)" in out.output
    out = CliRunner().invoke(main, ["ncu-report", str(CONSTRUCTED)])
    assert out.exit_code == 1 and "pass --gpu" in out.output


@pytest.mark.skipif(not REAL, reason="no real ncu export under traces/ yet")
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_exports_parse(path):
    rows = ncu.read_ncu_csv(path)
    meta = ncu.read_sidecar(path)
    # At most the kernels asked for, and at least a whole decode step (the fewest a step: 623, compile on the H100).
    assert 623 <= rows.height <= meta["launch_count"]
    assert rows["duration_ns"].min() > 0 and rows["bytes_read"].drop_nulls().min() >= 0
    _, _, totals = ncu_bytes.kernel_tables(rows, 3350.0 if "H100" in meta.get("gpu_name", "H100") else 4800.0)
    assert totals["kernels profiled"] == rows.height


@pytest.mark.parametrize(
    "flags, found",
    [
        (["--model", "tiny-qwen2", "--ctx", str(2**63)], "more than 2,147,483,647 tokens"),
        (["--model", "CONFIG", "--ctx", "100"], "beyond 64-bit counts"),
    ],
)
def test_analytic_module_bytes_beyond_64_bits_are_refused(tmp_path, flags, found):
    config = {**models.load_config("tiny-qwen2"), "vocab_size": 10**30}
    (tmp_path / "config.json").write_text(json.dumps(config))
    flags = [str(tmp_path / "config.json") if flag == "CONFIG" else flag for flag in flags]
    trace = annotated_trace(tmp_path)
    out = CliRunner().invoke(main, ["ncu-report", str(CONSTRUCTED), "--gpu", "h100", "--reference", str(trace), *flags])
    assert out.exit_code == 1 and out.exception.__class__ is SystemExit, out.output
    assert found in out.output.splitlines()[-1]
