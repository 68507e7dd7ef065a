"""The structure docs/ARCHITECTURE.md describes: capture and analysis never import each other, only the entry
point imports the CLI, the shared core needs neither torch nor polars, no module outgrows one job, test modules
share helpers through tests/conftest.py, and the tests run without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "gapprof": REPO / "gapprof",
    "gapprof.profiler": REPO / "profiler",
    "gapprof.analysis": REPO / "analysis",
    "gapprof.analysis.readers": REPO / "analysis" / "readers",
    "gapprof.analysis.views": REPO / "analysis" / "views",
    "gapprof.commands": REPO / "gapprof" / "commands",
}
SOURCES = {
    f"{package}.{path.stem}": path
    for package, folder in PACKAGES.items()
    for path in sorted(folder.glob("*.py"))
    if not path.is_symlink()
}
CORE = sorted(name for name in SOURCES if name.count(".") == 1 and name not in ("gapprof.cli", "gapprof.__main__"))


def imported(path: Path) -> set[str]:
    """Every gapprof module `path` imports, `from gapprof.x import y` counting as gapprof.x and gapprof.x.y."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("gapprof")}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_capture_and_analysis_do_not_import_each_other_nor_the_cli(name):
    names = imported(SOURCES[name])
    if name.startswith("gapprof.profiler"):
        assert not {n for n in names if n.startswith(("gapprof.analysis", "gapprof.commands"))}
    if name.startswith("gapprof.analysis"):
        assert not {n for n in names if n.startswith(("gapprof.profiler", "gapprof.commands"))}
    if name in CORE:
        assert not {n for n in names if n.startswith(("gapprof.profiler", "gapprof.analysis", "gapprof.commands"))}
    if name != "gapprof.__main__":
        assert "gapprof.cli" not in names


def test_the_core_imports_without_torch_or_polars():
    blocked = "import sys; sys.modules.update(torch=None, polars=None, transformers=None)"
    imports = "; ".join(f"import {name}" for name in CORE)
    result = subprocess.run([sys.executable, "-c", f"{blocked}; {imports}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# A long function is what makes code hard to live in; a module that reads top to bottom may be long. Lines as
# `ruff format` (line length 120) writes them, docstrings included.
FUNCTION_LINES = 120
MODULE_LINES = 500


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_no_long_function_and_no_sprawling_module(name):
    source = SOURCES[name].read_text()
    assert len(source.splitlines()) <= MODULE_LINES
    functions = [
        node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in functions
        if node.end_lineno - node.lineno + 1 > FUNCTION_LINES
    ]
    assert not long, long


def test_test_modules_import_no_other_test_module():
    # Shared helpers and fixtures live in tests/conftest.py, traces are built by tests/synthetic.py.
    for path in sorted((REPO / "tests").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {name for name in names if name.startswith("test_")}, path.name


def test_without_torch_the_capture_tests_that_need_it_skip_and_the_rest_pass():
    """As on an analysis-only install: in the modules with tests that need torch, the torch-free tests still run."""
    modules = [
        str(path)
        for path in sorted((REPO / "tests").glob("test_*.py"))
        if 'importorskip("torch")' in path.read_text() and path.name != "test_layout.py"
    ]
    code = (
        "import sys; sys.modules.update(torch=None, transformers=None); import pytest; "
        f"sys.exit(pytest.main(['-v', '-p', 'no:cacheprovider', *{modules!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    for passed in (
        "test_ab_cli.py::test_floor_fraction_per_arm_uses_the_datasheet_and_the_copy_bandwidth",
        "test_sweep_cli.py::test_floor_fraction_of_a_gpu_cell",
    ):
        assert f"{passed} PASSED" in result.stdout
