"""The tables of an attribution, one registry for `gapprof attribute` (and `gapprof profile`, which prints
attribute's report) and the Python API (`gapprof.attribute`).

A table is a function of `Inputs` (the attribution, the options it was made with, `TableOptions`) that gives a
`Built`: the sections the command shows (title, frame or dict), its notes, and the typed frame the API returns.
The command's --tables choices, its default and the API's attributes are read from `TABLES`, whose order is the
command's: the chosen tables are shown in the order asked, those marked `last` after them in the registry's order.

Free of polars at import, so that the commands' options can read the names where polars is not installed (the GPU
image): each table imports its analysis when it is built.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


@dataclass(frozen=True)
class TableOptions:
    """What the tables read besides the attribution's own options (attribution.Options)."""

    full_names: bool = False  # full demangled kernel names instead of short names
    top: int = 0  # rows of the kernel and API tables (0: all)
    per_step: bool = False  # the cost split per step too (section "cost per step")
    ncu: Path | None = None  # `gapprof ncu`'s CSV for the trace: each kernel's measured bytes, for the cost split
    reference: Path | None = None  # a module-annotated trace of the same model: labels kernels by position
    gpu_profiles: tuple[Path, ...] = ()  # `gapprof calibrate`'s profiles: the cost split's reference bandwidth


@dataclass(frozen=True)
class Built:
    sections: list  # (title, polars frame or dict), as the command shows them
    notes: list[str]
    frame: object  # the polars frame the API returns; None where there is none (an ncu CSV that did not match)


def first_rows(frame, top: int):
    """The first `top` rows of `frame` (all for 0)."""
    return frame.head(min(top, frame.height)) if top else frame  # min: polars takes no count past 64 bits


class Inputs:
    """What the tables are built from. The reference trace and the cost split are read once, on first use, by
    whichever table needs them."""

    def __init__(
        self,
        result,
        options,
        table_options: TableOptions = TableOptions(),
        cost_shown: bool = False,
        progress: Callable[[str], None] = lambda _: None,
    ):
        self.result, self.options, self.table_options, self.progress = result, options, table_options, progress
        self.cost_shown = cost_shown  # findings read the cost split only where it is shown too

    def limit(self, frame):
        """The first `top` rows (all for 0)."""
        return first_rows(frame, self.table_options.top)

    @cached_property
    def reference(self):
        """The attribution of the reference trace, or None."""
        from gapprof.analysis.attribution import Options, analyze

        path = self.table_options.reference
        return analyze(path, Options(range_pattern=self.options.range_pattern), self.progress) if path else None

    @cached_property
    def cost(self) -> Built:
        """The cost split: the cost table and its facts (analysis.kernel_cost), or what did not match the ncu CSV."""
        from gapprof.analysis.kernel_cost import cost_sections

        from gapprof.gpu_profile import profiles

        chosen = self.table_options
        sections, notes = cost_sections(
            self.result, chosen.ncu, self.reference, chosen.per_step, profiles(chosen.gpu_profiles)
        )
        return Built(sections, notes, dict(sections).get("cost"))


def _one(title: str, frame) -> Built:
    return Built([(title, frame)], [], frame)


def _summary(inputs: Inputs) -> Built:
    from gapprof.analysis.attribution import summary_table

    return _one("summary", summary_table(inputs.result))


def _two_pass(inputs: Inputs) -> Built | None:
    from gapprof.analysis.two_pass import graph_level_pass, joined

    graph_level = graph_level_pass(inputs.result, inputs.options, inputs.progress)
    if graph_level is None:
        return None
    table, notes = joined(inputs.result, graph_level)
    return Built([("two-pass", table)], notes, table)


def _facts(inputs: Inputs) -> Built:
    from gapprof.analysis.attribution import facts_frame, facts_table

    facts = facts_table(inputs.result)
    return Built([("facts", facts)], [], facts_frame(facts))


def _classes(inputs: Inputs) -> Built:
    from gapprof.analysis.attribution import class_table

    return _one("classes", class_table(inputs.result))


def _kernels(inputs: Inputs) -> Built:
    from gapprof.analysis.attribution import kernel_table

    return _one("kernels", inputs.limit(kernel_table(inputs.result, inputs.table_options.full_names)))


def _api(inputs: Inputs) -> Built:
    from gapprof.analysis.attribution import api_table

    return _one("api", inputs.limit(api_table(inputs.result)))


def _findings(inputs: Inputs) -> Built:
    import polars as pl
    from gapprof.analysis.findings import FINDINGS_NOTE, findings, findings_table

    found = findings(inputs.result, inputs.cost.frame if inputs.cost_shown else None)
    frame = pl.DataFrame(
        {
            "rank": range(1, len(found) + 1),
            "title": [f.title for f in found],
            "ms_per_step": [f.ms for f in found],
            "evidence": [f.evidence for f in found],
            "knob": [f.knob for f in found],
        },
        schema={
            "rank": pl.Int64,
            "title": pl.String,
            "ms_per_step": pl.Float64,
            "evidence": pl.String,
            "knob": pl.String,
        },
    )
    return Built([("findings", findings_table(found))], [FINDINGS_NOTE], frame)


def _modules(inputs: Inputs) -> Built:
    from gapprof.analysis.modules import by_module

    sections, notes = by_module(inputs.result, inputs.reference)
    return Built(sections, notes, dict(sections)["modules"])


def _launches(inputs: Inputs) -> Built:
    from gapprof.analysis import launch_delays

    result = inputs.result
    ops = launch_delays.launched_ops(result)
    launched = launch_delays.launches(ops)
    per_class = launch_delays.by_class(ops, result.measured.height)
    sections = [
        ("launches by api", launch_delays.in_us(launch_delays.by_api(launched, result.measured.height))),
        ("launches by class", launch_delays.in_us(per_class)),
        ("launches by step", launch_delays.in_us(launch_delays.by_step(launched))),
    ]
    return Built(sections, [launch_delays.NOTE], per_class)


@dataclass(frozen=True)
class Table:
    build: Callable[[Inputs], Built | None]  # None: the trace holds no such table (`needs` says what it lacks)
    default: bool = False  # shown when --tables is not given
    last: bool = False  # shown after the other chosen tables, whatever order they were asked in
    uses_reference: bool = False  # reads TableOptions.reference
    needs: str = ""


TABLES = {
    "summary": Table(_summary, default=True),
    # The passes of a two-pass capture joined; the default asks for it only where there is one.
    "two-pass": Table(
        _two_pass,
        default=True,
        needs="a two-pass capture (`capture --backend cupti --cuda-graph-trace both`); this trace has one pass",
    ),
    "facts": Table(_facts, default=True),
    "classes": Table(_classes, default=True),
    "kernels": Table(_kernels, default=True),
    "api": Table(_api, default=True),
    "steps": Table(lambda inputs: _one("steps", inputs.result.steps)),
    # busy = floor + extra + shortfall + fixed: bytes per kernel from the ncu CSV, else from module labels.
    "cost": Table(lambda inputs: inputs.cost, last=True, uses_reference=True),
    "findings": Table(_findings, default=True, last=True),
    # Per module kind and per layer: module ranges in the trace, else the reference's by position.
    "modules": Table(_modules, uses_reference=True),
    # Per launch: CPU time in the call and delay to the GPU's start, as percentiles by API, class and step.
    "launches": Table(_launches),
}
DEFAULT = tuple(name for name, table in TABLES.items() if table.default)


def shown_order(chosen: list[str]) -> list[str]:
    """The chosen table names in the order they are shown."""
    return [name for name in chosen if not TABLES[name].last] + [
        name for name, table in TABLES.items() if table.last and name in chosen
    ]


def api_name(name: str) -> str:
    """A table's attribute in the Python API: two-pass -> two_pass."""
    return name.replace("-", "_")
