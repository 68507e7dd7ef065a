"""The HTML report in a real browser: headless Chromium (Debian's package, which .ci/run installs) renders the report
of a shipped trace with no console message and with the summary's numbers on the page, and takes its screenshot."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SHIPPED_TRACES
from gapprof.analysis import views
from gapprof.analysis.attribution import Options, analyze, summary_table

from gapprof import render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (`apt-get install chromium`, as .ci/run does)")
TRACE = SHIPPED_TRACES / "h100-graphs.sqlite.xz"


def headless(page: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium headless on `page`, every console message logged to stderr."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={page.parent / 'profile'}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_bytes(views.view([TRACE], path, Options()))
    return path


def test_the_report_renders_without_console_messages_and_shows_the_summary(report):
    shown = headless(report, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    dom = shown.stdout
    assert 'data-ready="1"' in dom and "data-error" not in dom  # the script ran to its end, no error raised
    for value in summary_table(analyze(TRACE))["mean_ms"]:
        assert f">{render.text(value)}<" in dom
    assert dom.count(" ms</text>") > 10  # the timelines' axes, drawn by the script


# Run after the report's own script: hover the first op of the first timeline, then zoom in twice.
INTERACT = """<script>
const op = document.querySelector("svg.steps rect:last-of-type"), box = op.getBoundingClientRect();
op.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: box.x, clientY: box.y}));
document.body.dataset.tip = document.getElementById("tip").hidden ? "" : document.getElementById("tip").textContent;
document.querySelector("button[data-zoom='2']").click();
document.querySelector("button[data-zoom='2']").click();
document.body.dataset.view = document.querySelector("svg.steps").getAttribute("viewBox");
</script></body>"""


def test_hover_shows_a_marks_values_and_the_buttons_zoom(report):
    page = report.with_name("interact.html")
    page.write_text(report.read_text().replace("</body>", INTERACT))
    dom = headless(page, "--dump-dom").stdout
    tip = re.search(r'data-tip="([^"]*)"', dom).group(1)
    assert "µs" in tip and "[" in tip  # an op's name, [class] and duration
    x0, _, span, _ = map(float, re.search(r'data-view="([^"]*)"', dom).group(1).split())
    assert span == 250 and x0 == 375  # a quarter of the 1,000 units, about the middle


def test_the_report_has_a_screenshot(report):
    picture = report.with_suffix(".png")
    taken = headless(report, f"--screenshot={picture}", "--window-size=1400,2400")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 50_000
