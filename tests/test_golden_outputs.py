"""Every analysis command prints for the shipped traces exactly what tests/data/golden/ holds."""

import pytest
from golden_outputs import COMMANDS, FOLDER, REPO, output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_is_unchanged(name, monkeypatch):
    monkeypatch.chdir(REPO)
    expected = (FOLDER / f"{name}.txt").read_text()
    assert f"$ gapprof {COMMANDS[name]}\n{output(COMMANDS[name])}" == expected
