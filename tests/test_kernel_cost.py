"""The busy split busy = floor + extra + shortfall + fixed (analysis.kernel_cost) with each kernel's bytes joined
from an ncu CSV (analysis.kernel_bytes): synthetic kernels with known bytes and fixed parts, every measured step of
the shipped traces that have an ncu CSV, and CSVs or steps whose kernels do not match."""

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import SYNC, shipped_ncu_lines, with_meta
from gapprof.analysis.achievable import ASSUMED_FRACTION
from gapprof.analysis.attribution import Options, analyze
from gapprof.analysis.kernel_bytes import measured_bytes
from gapprof.analysis.kernel_cost import cost_sections
from synthetic import TraceBuilder

from gapprof.cli import main

TRACES = Path(__file__).resolve().parents[1] / "traces"
SHIPPED = [
    ("h100-graphs.sqlite.xz", "h100-graphs-ncu.csv.gz"),
    ("h200-graphs.sqlite.xz", "h200-graphs-ncu.csv.gz"),
    ("h100-eager-cudnn.sqlite.xz", "h100-eager-cudnn-ncu.csv.gz"),
    ("h100-compile.sqlite.xz", "h100-compile-ncu.csv.gz"),
    ("h200-compile.sqlite.xz", "h200-compile-ncu.csv.gz"),
    ("h100-graphs-int4.sqlite.xz", "h100-graphs-int4-ncu.csv.gz"),
    ("h100-graphs-nf4.sqlite.xz", "h100-graphs-nf4-ncu.csv.gz"),
]
PEAK = 3350.0  # H100 SXM datasheet, GB/s = bytes/ns
REFERENCE = ASSUMED_FRACTION * PEAK
# name, bytes read, bytes written, fixed ns: each kernel lasts fixed + bytes / (0.9 x peak), a whole number of ns.
KERNELS = [("gemv_a", 2_412_000, 603_000, 700), ("add_kernel", 0, 0, 1500), ("flash_attn", 1_206_000, 0, 2000)]


def duration(read: int, write: int, fixed: int) -> int:
    return fixed + round((read + write) / REFERENCE)


def known_steps(steps: int = 3, extra_in_last: bool = False) -> TraceBuilder:
    """Steps whose kernels run back to back from 100 ns after the range starts, launched ahead of them."""
    b = with_meta(TraceBuilder())
    for i in range(steps):
        o, t = 20_000 * i, 20_000 * i + 100
        b.range(o, o + 10_000)
        kernels = KERNELS + ([("extra_kernel", 0, 0, 100)] if extra_in_last and i == steps - 1 else [])
        for k, (name, read, write, fixed) in enumerate(kernels):
            b.launch(o + 10 + 5 * k, o + 14 + 5 * k, t, t + duration(read, write, fixed), name)
            t += duration(read, write, fixed)
        b.call(o + 50, t + 10, SYNC)
    return b


def write_ncu(path: Path, kernels: list[tuple]) -> Path:
    """An `ncu --csv --page raw` export holding only the columns gapprof reads."""
    lines = [
        '"ID","Kernel Name","dram__bytes_read.sum","dram__bytes_write.sum","gpu__time_duration.sum"',
        '"","","byte","byte","nsecond"',
    ]
    lines += [
        f'"{i}","{name}","{read}","{write}","{duration(read, write, fixed)}"'
        for i, (name, read, write, fixed) in enumerate(kernels)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def sections(result, csv: Path) -> dict:
    return dict(cost_sections(result, csv, per_step=True)[0])


def test_known_bytes_and_fixed_parts_are_recovered(tmp_path):
    result = analyze(known_steps().write(tmp_path / "t.sqlite"), Options())
    # ncu profiled one step and the first kernel of the next: the partial step is left out.
    csv = write_ncu(tmp_path / "t-ncu.csv", KERNELS + KERNELS[:1])
    found = measured_bytes(result, csv)
    assert found.unmatched.is_empty() and found.facts["ncu rows past the last complete step (left out)"] == 1
    kernels = found.ops.filter(pl.col("kind") == "kernel").sort("step", "position")
    assert kernels["bytes"].to_list() == [read + write for _, read, write, _ in KERNELS] * 3
    split = sections(result, csv)["cost per step"]
    moved = sum(read + write for _, read, write, _ in KERNELS)
    assert split["fixed"].to_list() == [sum(k[3] for k in KERNELS)] * 3
    assert split["shortfall"].to_list() == [round(moved / REFERENCE) - round(moved / PEAK)] * 3
    assert split["extra"].to_list() == [round(moved / PEAK) - f for f in split["floor"]]
    assert (split["floor"] + split["extra"] + split["shortfall"] + split["fixed"] == split["busy"]).all()


def test_fixed_per_kernel_and_per_class(tmp_path):
    result = analyze(known_steps().write(tmp_path / "t.sqlite"), Options())
    found = sections(result, write_ncu(tmp_path / "t-ncu.csv", KERNELS))
    table = {row["class"]: row for row in found["cost"].iter_rows(named=True)}
    assert table["gemv/gemm"]["fixed_us"] == pytest.approx(0.7)
    assert table["attention"]["fixed_per_op_median_us"] == pytest.approx(2.0)
    assert table["attention"]["at_peak_us"] == pytest.approx(1_206_000 / PEAK / 1000)
    assert found["cost facts"]["fixed per kernel, us: median"] == pytest.approx(1.5)
    assert found["cost facts"]["kernels faster than their bytes at the reference bandwidth, per step"] == 0


@pytest.mark.parametrize("trace, csv", SHIPPED)
def test_split_adds_up_on_every_measured_step_of_the_shipped_traces(trace, csv):
    result = analyze(TRACES / trace, Options())
    found = sections(result, TRACES / csv)
    split = found["cost per step"]
    assert split.height == result.measured.height
    assert split["busy"].to_list() == result.measured["busy"].to_list()
    assert (split["floor"] + split["extra"] + split["shortfall"] + split["fixed"] == split["busy"]).all()
    assert found["cost facts"]["kernels without bytes (all steps)"] == 0


def test_graphs_trace_gives_the_figures_design_md_quotes():
    result = analyze(TRACES / "h100-graphs.sqlite.xz", Options())
    facts = sections(result, TRACES / "h100-graphs-ncu.csv.gz")["cost facts"]
    assert facts["kernels per step"] == 1484
    assert facts["bytes moved per step, GB (mean)"] == pytest.approx(15.1, abs=0.05)
    assert facts["fixed time per step, ms (mean)"] == pytest.approx(4.1, abs=0.05)


def test_ncu_csv_with_a_missing_and_an_extra_kernel_reports_them(tmp_path):
    lines = shipped_ncu_lines("h100-eager-cudnn-ncu.csv.gz")
    header, rows = lines[:2], lines[2:]
    dropped = rows[500]
    altered = tmp_path / "altered-ncu.csv"
    # Kernel 500 left out, kernel 700 profiled twice (IDs numbered again, as ncu numbers its rows).
    kept = rows[:500] + rows[501:701] + rows[700:]
    renumbered = [f'"{i}"' + row[row.index(",") :] for i, row in enumerate(kept)]
    altered.write_text("\n".join(header + renumbered) + "\n")
    found = measured_bytes(analyze(TRACES / "h100-eager-cudnn.sqlite.xz", Options()), altered)
    assert found.ops is None
    assert found.unmatched["against"].unique().to_list() == ["ncu rows"]
    assert sorted(found.unmatched["tag"]) == ["delete", "insert"]
    missing = found.unmatched.filter(pl.col("tag") == "delete").row(0, named=True)
    assert missing["reference_ops"].split("(")[0].split("<")[0].strip() in dropped
    result = CliRunner().invoke(
        main, ["attribute", str(TRACES / "h100-eager-cudnn.sqlite.xz"), "--ncu", str(altered), "--tables", "summary"]
    )
    assert result.exit_code == 0, result.output
    assert "unmatched kernels" in result.output and "no cost split" in result.output


def test_ncu_kernel_without_bytes_is_reported(tmp_path):
    result = analyze(known_steps().write(tmp_path / "t.sqlite"), Options())
    csv = write_ncu(tmp_path / "t-ncu.csv", KERNELS)
    csv.write_text(csv.read_text().replace('"flash_attn","1206000"', '"flash_attn","n/a"'))
    found = measured_bytes(result, csv)
    assert found.ops is None and found.facts["kernels without bytes (all steps)"] == 3
    row = found.unmatched.row(0, named=True)
    assert (row["tag"], row["reference_position"], row["reference_ops"]) == ("no bytes", 2, "flash_attn")


def test_trace_step_with_a_different_sequence_is_reported(tmp_path):
    result = analyze(known_steps(extra_in_last=True).write(tmp_path / "t.sqlite"), Options())
    found = measured_bytes(result, write_ncu(tmp_path / "t-ncu.csv", KERNELS))
    assert found.ops is None
    row = found.unmatched.row(0, named=True)
    assert (row["against"], row["tag"], row["steps"], row["ops"]) == ("trace steps", "insert", 1, "extra_kernel")


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--tables", "cost"], 1, "needs bytes per kernel"),
        (["--ncu", str(TRACES / "h100-graphs-ncu.csv.gz"), "--by", "module"], 2, "not modules"),
        (["--reference", str(TRACES / "h100-static-modules.sqlite.xz")], 2, "--reference is used only"),
    ],
)
def test_cost_options_are_checked(args, code, message):
    result = CliRunner().invoke(main, ["attribute", str(TRACES / "h100-graphs.sqlite.xz"), *args])
    assert result.exit_code == code and message in result.output


def test_module_mapping_splits_floor_and_extra_per_class():
    result = analyze(TRACES / "h100-graphs.sqlite.xz", Options())
    reference = analyze(TRACES / "h100-static-modules.sqlite.xz", Options())
    found = dict(cost_sections(result, TRACES / "h100-graphs-ncu.csv.gz", reference)[0])
    table = found["cost"]
    total, classes = table.row(0, named=True), table.slice(1)
    assert found["cost facts"]["analytic bytes per step on no kernel, GB"] == pytest.approx(0)
    assert classes["floor_us"].sum() == pytest.approx(total["floor_us"], abs=0.01)
    assert (classes["floor_us"] + classes["extra_us"] - classes["at_peak_us"]).abs().max() < 1e-6
    attention = classes.filter(pl.col("class") == "attention").row(0, named=True)
    assert attention["extra_us"] > 5 * attention["floor_us"]  # the graphs attention path re-reads its KV


def test_analytic_bytes_without_ncu_move_exactly_the_floor():
    result = analyze(TRACES / "h100-static-modules.sqlite.xz", Options())
    found = dict(cost_sections(result, None, per_step=True)[0])
    split = found["cost per step"]
    assert found["cost facts"]["bytes per kernel"].startswith("analytic")
    assert (split["moved"] == split["bytes"]).all() and (split["extra"] == 0).all()
    assert (split["floor"] + split["extra"] + split["shortfall"] + split["fixed"] == split["busy"]).all()
    classes = {row["class"]: row for row in found["cost"].iter_rows(named=True)}
    assert classes["attention"]["mb_per_step"] == pytest.approx(classes["attention"]["floor_us"] * PEAK / 1000)


def test_attribute_ncu_adds_the_cost_tables_in_json():
    result = CliRunner().invoke(
        main,
        [
            "attribute",
            str(TRACES / "h100-graphs.sqlite.xz"),
            "--ncu",
            str(TRACES / "h100-graphs-ncu.csv.gz"),
            "--tables",
            "summary",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"cost"' in result.output and '"cost facts"' in result.output and "all (busy)" in result.output
