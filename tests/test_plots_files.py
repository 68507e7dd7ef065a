"""Every plot is written, is a PNG (or SVG) and is not empty."""
import pytest
from click.testing import CliRunner

from gapprof.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind, extra", [("anatomy", ["--to", "l4"]), ("fraction", []),
                                         ("timeline", ["--to", "h200", "--step", "1"])])
def test_plot_kinds(pair, tmp_path, kind, extra):
    out = tmp_path / f"{kind}.png"
    result = CliRunner().invoke(main, ["plot", kind, *map(str, pair), "-o", str(out), *extra])
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


def test_timeline_step_out_of_range(pair, tmp_path):
    result = CliRunner().invoke(main, ["plot", "timeline", str(pair[0]), "-o", str(tmp_path / "t.png"),
                                       "--step", "9"])
    assert result.exit_code == 1 and "--step 9: the trace has 3 measured steps" in result.stderr
