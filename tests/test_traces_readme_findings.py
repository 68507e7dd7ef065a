"""traces/README.md lists which findings fire on each shipped trace: every trace is listed once, and what is
listed is what `attribute` finds on it now (ranked as attribute ranks them)."""

import re
from pathlib import Path

import pytest

pytest.importorskip("polars")

from gapprof.analysis import findings  # noqa: E402
from gapprof.analysis.attribution import Options, analyze  # noqa: E402

TRACES = Path(__file__).resolve().parents[1] / "traces"
NONE = "none"


def listed() -> dict[str, list[str]]:
    """Trace name -> the findings its row names (short titles, figures in brackets left out)."""
    text = (TRACES / "README.md").read_text()
    table = text[text.index("| trace | findings that fire |") :].split("\n\n")[0].splitlines()[2:]
    out = {}
    for row in table:
        traces, fired = (cell.strip() for cell in row.strip("|").split("|", 1))
        if " with " in traces:  # a row with extra inputs (--ncu, --reference): not the plain attribute
            continue
        names = [] if fired.startswith(NONE) else [re.sub(r"\s*\(.*", "", f).strip() for f in fired.split(";")]
        for trace in traces.split(", "):
            assert trace not in out, f"{trace} is listed twice"
            out[trace] = names
    return out


def shipped() -> list[Path]:
    return sorted([*TRACES.glob("*.sqlite.xz"), *TRACES.glob("*.json.gz")])


def _name(path: Path) -> str:
    return path.name.removesuffix(".sqlite.xz").removesuffix(".json.gz")


def test_every_shipped_trace_is_listed():
    assert sorted(listed()) == sorted(_name(p) for p in shipped())


@pytest.mark.parametrize("path", shipped(), ids=_name)
def test_the_listed_findings_are_what_attribute_finds(path):
    titles = [f.title for f in findings.findings(analyze(path, Options()))]
    names = listed()[_name(path)]
    assert len(names) == len(titles), titles
    for name, title in zip(names, titles):
        assert title.startswith(name), (name, title)
