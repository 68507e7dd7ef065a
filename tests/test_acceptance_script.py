"""The GPU acceptance script reads its commands from the documentation: it must find every GPU-side path there."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("acceptance", REPO / "scripts" / "acceptance.py")
acceptance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(acceptance)


def test_the_documentation_names_every_gpu_side_path_the_run_must_cover():
    commands = acceptance.documented_gpu_commands(acceptance.documentation())
    assert commands[0] == "python3 -m pip install --no-deps --no-build-isolation -e ."
    assert "gapprof capture --model qwen2.5-7b" in commands  # the design card's command, default output
    captures = [c for c in commands if c.startswith("gapprof capture")]
    for runtime in ("static", "graphs", "compile", "lean"):
        assert any(f"--runtime {runtime}" in c for c in captures), runtime
    assert any("--backend cupti" in c for c in captures)
    assert any("--modules" in c for c in captures)
    assert any(c.startswith("gapprof ncu ") for c in commands)
    assert any(c.startswith("gapprof ab ") for c in commands)
    assert "gapprof calibrate" in commands
    sweeps = [c for c in commands if c.startswith("gapprof sweep ")]
    assert any("--profile" in c for c in sweeps) and any("--profile" not in c for c in sweeps)
    assert not any(c.startswith(("gapprof attribute", "gapprof sweep-attribute")) for c in commands)


def test_sizes_shrink_and_names_get_a_dot():
    assert (
        acceptance.shrink("gapprof sweep --models a,b --ctx 2048,4096 --steps 16 --warmup 4 --sessions 10", 0)
        == "gapprof sweep --models a --ctx 2048 --steps 4 --warmup 3 --sessions 2"
    )
    assert (
        acceptance.shrink("gapprof ncu --warmup 0 --launch-count 1400 -o traces/NAME-ncu.csv", 7)
        == "gapprof ncu --warmup 0 --launch-count 100 -o traces/qwen2.5-7b-readme7-ncu.csv"
    )
    assert acceptance.shrink("gapprof calibrate", 3) == "gapprof calibrate --quick"
    assert acceptance.shrink("gapprof calibrate --quick -o p.json", 3) == "gapprof calibrate --quick -o p.json"


def test_each_output_gets_its_analysis():
    records = [
        {
            "command": "gapprof capture --model qwen2.5-7b",
            "files": ["traces/qwen2.5-7b-eager.nsys-rep", "traces/qwen2.5-7b-eager.sqlite"],
        },
        {"command": "gapprof capture --backend cupti", "files": ["traces/qwen2.5-7b-eager.sqlite"]},
        {
            "command": "gapprof capture --runtime eager --modules -o traces/m.nsys-rep",
            "files": ["traces/m.nsys-rep", "traces/m.sqlite"],
        },
        {
            "command": "gapprof ncu --runtime graphs",
            "files": ["traces/qwen2.5-7b-graphs-ncu.csv", "traces/qwen2.5-7b-graphs-ncu.json"],
        },
        {
            "command": "gapprof sweep --profile -o s",
            "files": ["s/sweep.json", "s/traces/x.nsys-rep", "s/traces/x.sqlite"],
        },
        {"command": "gapprof ab --a eager --b graphs", "files": ["results/h100-sxm/ab.json"]},
    ]
    assert acceptance.analyses(records) == [
        "gapprof attribute traces/qwen2.5-7b-eager.nsys-rep",
        "gapprof attribute traces/qwen2.5-7b-eager.sqlite",
        "gapprof attribute traces/m.nsys-rep --by module",
        "gapprof ncu-report traces/qwen2.5-7b-graphs-ncu.csv",
        "gapprof sweep-attribute s",
    ]


def test_parts_share_the_commands_and_each_installs():
    commands = ["python3 -m pip install -e .", "a", "b", "c"]
    assert acceptance.part_of(commands, 1, 2) == ["python3 -m pip install -e .", "a", "c"]
    assert acceptance.part_of(commands, 2, 2) == ["python3 -m pip install -e .", "b"]
    assert acceptance.part_of(commands, 1, 1) == commands


def test_parts_balance_by_an_earlier_runs_seconds():
    log = "\n".join(
        [
            "| # | where | command | exit | s | files written |",
            "|---|---|---|---|---|---|",
            "| 1 | GPU | `gapprof a` | 0 | 100.0 |  |",
            "| 2 | GPU | `gapprof b` | 0 | 30 |  |",
            "| 3 | GPU | `gapprof capture -o traces/qwen2.5-7b-readme3.nsys-rep` | 0 | 40.5 |  |",
            "| 4 | CPU | `gapprof attribute x` | 0 | 0.3 |  |",
        ]
    )
    seconds = acceptance.logged_seconds(log)
    assert seconds == {"gapprof a": 100.0, "gapprof b": 30.0, "gapprof capture -o traces/NAME.nsys-rep": 40.5}
    commands = [
        "python3 -m pip install -e .",
        "gapprof b",
        "gapprof capture -o traces/NAME.nsys-rep",
        "gapprof a",
        "gapprof new",
    ]
    # Longest first to the lightest share: a (100) -> 1, new (60, unknown) -> 2, capture (40.5) -> 2 (then 100.5),
    # b (30) -> 1; each share in documented order.
    assert acceptance.part_of(commands, 1, 2, seconds) == ["python3 -m pip install -e .", "gapprof b", "gapprof a"]
    assert acceptance.part_of(commands, 2, 2, seconds) == [
        "python3 -m pip install -e .",
        "gapprof capture -o traces/NAME.nsys-rep",
        "gapprof new",
    ]


def test_the_log_names_the_commit_that_ran(monkeypatch):
    monkeypatch.setenv("GAPPROF_COMMIT", "0123abc")
    facts = acceptance.machine_facts()
    assert facts["commit"] == "0123abc"
    step = {"phase": "gpu", "command": "gapprof capture", "exit": 0, "seconds": 1.0, "files": [], "output": []}
    assert "Code: commit 0123abc." in acceptance.markdown([facts, step])
    facts.pop("commit")  # a log from before commits were recorded, or a copy without its .git
    assert "Code: commit not recorded (run with GAPPROF_COMMIT=<commit>)." in acceptance.markdown([facts, step])


def test_a_repository_file_run_by_a_profiled_program_is_named_from_anywhere():
    shrunk = acceptance.shrink("gapprof profile --mark forward -- python3 examples/generate.py --sdpa-backend flash", 4)
    assert shrunk.split()[-3] == str(acceptance.REPO / "examples" / "generate.py")


def test_a_missing_balance_log_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["acceptance.py", "gpu", str(tmp_path), "--balance", str(tmp_path / "no.md")])
    with pytest.raises(SystemExit) as stopped:
        acceptance.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"--balance {tmp_path / 'no.md'}: no such file")
    assert not (tmp_path / "acceptance.jsonl").exists()


def test_remaining_runs_only_what_the_log_lacks():
    commands = ["python3 -m pip install -e .", "gapprof a", "gapprof capture -o traces/NAME.nsys-rep", "gapprof b"]
    logged = {"gapprof a", acceptance.shrink("gapprof capture -o traces/NAME.nsys-rep", 2)}
    assert acceptance.remaining(commands, logged) == ["python3 -m pip install -e .", "gapprof b"]
    assert acceptance.remaining(commands, logged | {"gapprof b"}) == []  # nothing left: not even the install


def _log(workdir: Path, commands: list[str]) -> None:
    lines = [{"phase": "machine", "gpu_name": "G"}] + [{"phase": "gpu", "command": c, "exit": 1} for c in commands]
    (workdir / "acceptance.jsonl").write_text("".join(acceptance.json.dumps(r) + "\n" for r in lines))


def test_remaining_after_a_share_cut_short_runs_its_last_commands(monkeypatch, tmp_path):
    readme = acceptance.documented_gpu_commands(acceptance.documentation())
    shrunk = [acceptance.shrink(c, i) for i, c in enumerate(readme) if not c.startswith("python3 -m pip")]
    _log(tmp_path, shrunk[:-2])  # a failed command (exit 1) has its record: it is not run again
    ran = []
    monkeypatch.setattr(acceptance, "run_logged", lambda command, *a: ran.append(command) or {"exit": 0})
    monkeypatch.setattr(sys, "argv", ["acceptance.py", "gpu", str(tmp_path), "--remaining"])
    assert acceptance.main() == 0
    assert ran == [readme[0]] + shrunk[-2:]
    assert (tmp_path / "acceptance.jsonl").read_text().splitlines()[-1].startswith('{"phase": "machine"')


def test_remaining_with_nothing_left_runs_nothing(monkeypatch, tmp_path, capsys):
    readme = acceptance.documented_gpu_commands(acceptance.documentation())
    _log(tmp_path, [acceptance.shrink(c, i) for i, c in enumerate(readme)])
    before = (tmp_path / "acceptance.jsonl").read_text()
    monkeypatch.setattr(acceptance, "run_logged", lambda *a: pytest.fail("a command was run"))
    monkeypatch.setattr(sys, "argv", ["acceptance.py", "gpu", str(tmp_path), "--remaining"])
    assert acceptance.main() == 0
    assert "none remains" in capsys.readouterr().out
    assert (tmp_path / "acceptance.jsonl").read_text() == before


def test_remaining_takes_no_part(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["acceptance.py", "gpu", str(tmp_path), "--remaining", "--part", "2/3"])
    with pytest.raises(SystemExit) as stopped:
        acceptance.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("it takes neither --part nor --balance")


def test_remaining_goes_with_the_gpu_phase_only(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["acceptance.py", "report", str(tmp_path), "--remaining"])
    with pytest.raises(SystemExit) as stopped:
        acceptance.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("it goes with gpu, not report")
