"""Every plot is written, is a PNG (or SVG) and is not empty; -o and --step are checked before any work; the
timeline title numbers steps as --step does."""

import pytest
from click.testing import CliRunner
from gapprof.analysis import cross_gpu_columns, projection
from gapprof.analysis.attribution import Options

from gapprof.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "kind, extra", [("anatomy", ["--to", "l4"]), ("fraction", []), ("timeline", ["--to", "h200", "--step", "1"])]
)
def test_plot_kinds(pair, tmp_path, kind, extra):
    out = tmp_path / f"{kind}.png"
    traces = pair[:1] if kind == "timeline" else pair  # a timeline draws one trace's step
    result = CliRunner().invoke(main, ["plot", kind, *map(str, traces), "-o", str(out), *extra])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 5000


def test_plot_option_on_compare_and_project(pair, tmp_path):
    svg = tmp_path / "compare.svg"
    assert CliRunner().invoke(main, ["compare", *map(str, pair), "--plot", str(svg)]).exit_code == 0
    assert b"<svg" in svg.read_bytes()
    png = tmp_path / "project.png"
    assert CliRunner().invoke(main, ["project", str(pair[0]), "--to", "h200", "--plot", str(png)]).exit_code == 0
    assert png.read_bytes().startswith(PNG)


def test_the_timeline_legend_shows_starved_gaps_as_they_are_shaded(pair, tmp_path, monkeypatch):
    from gapprof.analysis import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    assert CliRunner().invoke(main, ["plot", "timeline", str(pair[0]), "-o", str(tmp_path / "t.png")]).exit_code == 0
    (fig,) = drawn
    swatch = fig.legends[0].get_patches()[-1]
    shaded = [p for p in fig.axes[0].patches if p.get_alpha() is not None]
    assert shaded and fig.legends[0].get_texts()[-1].get_text() == "starved gap"
    assert {(p.get_facecolor(), p.get_alpha()) for p in shaded} == {(swatch.get_facecolor(), swatch.get_alpha())}


def test_timeline_step_out_of_range(pair, tmp_path):
    result = CliRunner().invoke(main, ["plot", "timeline", str(pair[0]), "-o", str(tmp_path / "t.png"), "--step", "9"])
    assert result.exit_code == 1 and "--step 9: the trace has 3 measured steps" in result.stderr


@pytest.mark.parametrize("name", ["anatomy", "qwen2.5-7b"])
def test_output_without_extension_reports_the_png_written(pair, tmp_path, name):  # noqa: F811
    result = CliRunner().invoke(main, ["plot", "anatomy", str(pair[0]), "-o", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == f"[gapprof] wrote {tmp_path / name}.png"
    assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("kind", ["anatomy", "fraction"])
def test_step_refused_outside_timeline(pair, tmp_path, kind):  # noqa: F811
    result = CliRunner().invoke(main, ["plot", kind, str(pair[0]), "-o", str(tmp_path / "p.png"), "--step", "0"])
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[-1] == f"Error: --step applies to timeline only; {kind} draws the mean over "
        "all measured steps"
    )
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(
    "extra, error",
    [
        (
            ["timeline", "TRACE", "TRACE"],
            "timeline draws one step of one trace: pass one TRACE (--to adds its replay on other GPUs)",
        ),
        (
            ["fraction", "TRACE", "--ncu", "NCU", "--reference", "TRACE"],
            "--ncu (measured bytes per kernel) and "
            "--reference (analytic bytes) are two sources of the same bytes: pass one",
        ),
    ],
)
def test_what_a_picture_would_drop_is_refused(pair, tmp_path, extra, error):  # noqa: F811
    ncu = tmp_path / "ncu.csv"
    ncu.write_text("")
    args = [str(pair[0]) if a == "TRACE" else str(ncu) if a == "NCU" else a for a in extra]
    result = CliRunner().invoke(main, ["plot", *args, "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "[gapprof]" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: {error}"


@pytest.mark.parametrize(
    "name, error",
    [
        ("p.bmp", "unsupported picture format .bmp; use .png, .svg, .pdf"),
        ("missing/p.png", "folder {tmp}/missing does not exist"),
    ],
)
def test_bad_output_refused_before_the_analysis(pair, tmp_path, name, error):  # noqa: F811
    result = CliRunner().invoke(main, ["plot", "fraction", str(pair[0]), "-o", str(tmp_path / name)])
    assert result.exit_code == 2 and "[gapprof]" not in result.stderr  # a usage error, before any analysis
    assert result.stderr.endswith(
        f"Invalid value for '-o' / '--output': {tmp_path / name}: {error.format(tmp=tmp_path)}\n"
    )


def test_timeline_title_counts_measured_steps(pair):  # noqa: F811
    (loaded,) = cross_gpu_columns.load([pair[0]], Options(skip=1))  # trace steps 1 and 2 are measured steps 0 and 1
    title = cross_gpu_columns.timeline_panels(loaded, [], projection.Knobs(), 0)[0][0]
    assert title.startswith("h100: measured step 0 (of 0-1, warm-up excluded) on H100 SXM, wall ")
