"""Renderers that let a reader see an attribution: one class per file, each declaring the file extensions it writes,
looked up by name in RENDERERS or by an output path's suffix (`for_output`).

A renderer takes the traces' `Viewed` (a label and the attribution) and, for several traces where it shows them,
the comparison of `gapprof compare` (analysis.cross_gpu.Columns), and gives the file's bytes. There are two: the
self-contained HTML report (`html_report`, its pictures drawn by `report_pictures`, report.css and report.js
inlined) and the annotated Chrome trace for Perfetto (`annotated_trace`). `view` is `gapprof view`'s entry.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gapprof.analysis import cross_gpu, projection
from gapprof.analysis.attribution import Attribution, Options, analyze
from gapprof.analysis.cross_gpu_columns import labels, load, with_bytes_per_kernel
from gapprof.analysis.plausibility import problems
from gapprof.analysis.views.annotated_trace import AnnotatedTrace
from gapprof.analysis.views.html_report import HtmlReport

from gapprof.errors import GapprofError


@dataclass(frozen=True)
class Viewed:
    label: str
    result: Attribution


RENDERERS = {renderer.name: renderer for renderer in (HtmlReport, AnnotatedTrace)}


def for_output(path: Path):
    """The renderer whose extension ends the file name (the longest that matches: .trace.json before .json)."""
    name = Path(path).name.lower()
    matches = [
        (len(ext), renderer) for renderer in RENDERERS.values() for ext in renderer.extensions if name.endswith(ext)
    ]
    if not matches:
        known = ", ".join(ext for renderer in RENDERERS.values() for ext in renderer.extensions)
        raise GapprofError(f"{path}: no renderer writes this suffix; use one of {known}")
    return max(matches, key=lambda match: match[0])[1]


def view(
    paths: Sequence[Path],
    output: Path,
    options: Options,
    force: bool = False,
    progress=lambda _: None,
    targets: Sequence[str] = (),
) -> bytes:
    """The file `output`'s renderer writes for the traces at `paths`: each attributed with `options` (overrides
    that contradict a capture refused unless force, as in `gapprof attribute`), several compared as `gapprof
    compare` does, and each projected to `targets` (GPU keys) as `gapprof project` does without bytes per kernel."""
    renderer = for_output(output)
    if len(paths) > 1 and not renderer.several:
        raise GapprofError(f"{output}: a {renderer.name} file holds one trace, not {len(paths)}")
    if targets and not renderer.projects:
        raise GapprofError(f"{output}: --to projects in the HTML report only; a {renderer.name} file holds none")
    several = len(paths) > 1
    # Compared or projected traces are loaded once for all of it (a floor is needed there); its override check is
    # the one below, which the report applies to a single trace too.
    loaded = load(paths, options, force=True) if several or targets else []
    viewed = [Viewed(x.label, x.analysis) for x in loaded] or [
        Viewed(labels(paths)[0], analyze(paths[0], options, progress))
    ]
    if not force:
        wrong = [
            f"{v.label}: {problem}"
            for v in viewed
            for problem in problems(
                v.result, options.model, options.dtype, options.ctx, options.quant, options.quant_lm_head
            )
        ]
        if wrong:
            raise GapprofError("; ".join(wrong) + "; --force uses them anyway")
    comparison = cross_gpu.compare_loaded(loaded, force) if several else None
    modelled = [with_bytes_per_kernel(x, None, None, options.range_pattern, aggregate=True) for x in loaded]
    projections = [cross_gpu.project_loaded(x, targets, projection.Knobs()) for x in modelled] if targets else []
    return renderer().render(viewed, comparison, projections)
