"""Which documented commands an acceptance run runs, and at what size (scripts/acceptance.py's docstring says how):
the GPU-side lines of README.md and the pages of docs/, shrunk; the shares of a run split into parts, balanced by an
earlier run's seconds; and what a share cut short left."""

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_COMMAND = re.compile(
    r"^ {4}((?:python3 -m pip install .*--no-build-isolation.*)"
    r"|gapprof (?:capture|ncu|ab|sweep|calibrate|profile)\b(?!-).*)$"
)
SHRINK = {"--steps": 4, "--warmup": 3, "--sessions": 2, "--launch-count": 100}
FIRST_ITEM = ("--models", "--ctx")
DOTTED_NAME = "qwen2.5-7b-readme{}"  # a model-like name with a dot, as every shipped model name has
# A row of acceptance.md's table: | # | GPU | `command` | exit | seconds | files |
ROW = re.compile(r"^\| \d+ \| GPU \| `(.+?)` \| -?\d+ \| ([\d.]+) \|")
DOTTED = re.compile(r"qwen2\.5-7b-readme\d+")
UNKNOWN_SECONDS = 60.0  # a command the earlier log does not have


def is_install(command: str) -> bool:
    return command.startswith("python3 -m pip")


# The pages whose commands an acceptance run follows, in the order the README's contents list them.
DOCUMENTED = (
    "README.md",
    "docs/user-guide.md",
    "docs/commands.md",
    "docs/model.md",
    "docs/results.md",
    "docs/lean-runtime.md",
    "docs/quantisation.md",
    "docs/acceptance.md",
)


def documentation() -> str:
    """README.md and the pages of docs/ that hold commands, one after the other."""
    return "\n\n".join((REPO / page).read_text() for page in DOCUMENTED)


def documented_gpu_commands(text: str) -> list[str]:
    """The GPU install line, then the GPU-side gapprof commands in the code blocks of `text`, in order, once each."""
    found = list(dict.fromkeys(m.group(1).strip() for m in map(GPU_COMMAND.match, text.splitlines()) if m))
    return sorted(found, key=lambda command: not is_install(command))


def shrink(command: str, index: int) -> str:
    """`command` with smaller sizes and NAME made concrete (see scripts/acceptance.py's docstring)."""
    words = shlex.split(command.replace("NAME", DOTTED_NAME.format(index)))
    for i, word in enumerate(words[:-1]):
        value = words[i + 1]
        if word in SHRINK and value.isdigit():
            words[i + 1] = str(min(int(value), SHRINK[word]))
        elif word in FIRST_ITEM:
            words[i + 1] = value.split(",")[0]
    # Commands run in WORKDIR; a file of the repository that a profiled program runs is named from there.
    words = [str(REPO / word) if word.startswith("examples/") else word for word in words]
    if words[:2] == ["gapprof", "calibrate"] and "--quick" not in words:
        words.append("--quick")
    return shlex.join(words)


def logged_seconds(markdown_text: str) -> dict[str, float]:
    """GPU command (NAME put back) -> its seconds, from the table of an acceptance.md."""
    rows = (ROW.match(line) for line in markdown_text.splitlines())
    return {DOTTED.sub("NAME", m.group(1)): float(m.group(2)) for m in rows if m}


def part_of(commands: list[str], part: int, parts: int, seconds: dict[str, float] | None = None) -> list[str]:
    """The install line(s) and the `part`-th (1-based) of `parts` shares of the other commands: one share of the
    run for a machine whose commands may not run long enough for all of it. With `seconds` (logged_seconds of an
    earlier run; a command not in it counts UNKNOWN_SECONDS) the shares are balanced by time, longest command
    first to the share with the least so far; without, every `parts`-th command. Documented order within a share."""
    installs = [c for c in commands if is_install(c)]
    others = [c for c in commands if c not in installs]
    if seconds is None:
        return installs + [c for i, c in enumerate(others) if i % parts == part - 1]
    cost = {c: seconds.get(DOTTED.sub("NAME", shrink(c, commands.index(c))), UNKNOWN_SECONDS) for c in others}
    totals, share = [0.0] * parts, {}
    for command in sorted(others, key=lambda c: -cost[c]):
        lightest = totals.index(min(totals))
        share[command], totals[lightest] = lightest, totals[lightest] + cost[command]
    return installs + [c for c in others if share[c] == part - 1]


def remaining(commands: list[str], logged: set[str]) -> list[str]:
    """The install line(s) and the commands that `logged` (the commands WORKDIR's log has a record of) lacks: what a
    share cut short by its time guard left, in documented order; nothing when none is left. A command that ran and
    failed has its record and is not run again."""
    installs = [c for c in commands if is_install(c)]
    left = [c for c in commands if c not in installs and shrink(c, commands.index(c)) not in logged]
    return installs + left if left else []
