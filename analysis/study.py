"""From trace paths to the columns `compare`, `project` and `plot` show: each trace through attribution.analyze
(the attribution `attribute` uses), its launch timeline, its measured column and its projected ones."""
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from gapprof.analysis import comparison, launch_timeline, projection
from gapprof.analysis.attribution import Attribution, Options, analyze
from gapprof.errors import GapprofError
from gapprof.paths import strip_extension
from gapprof.gpus import GpuSpec


@dataclass(frozen=True)
class Loaded:
    label: str
    analysis: Attribution
    timeline: launch_timeline.Timeline


def labels(paths: list[Path]) -> list[str]:
    """File names without their extension, made unique by their folder when names repeat."""
    names = [strip_extension(Path(p)).name for p in paths]
    return [f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def load(paths: list[Path], options: Options) -> list[Loaded]:
    """Analyze every trace, labelled by `labels`."""
    out = []
    for label, path in zip(labels(paths), paths):
        analysis = analyze(Path(path), options)
        if analysis.floor is None:
            raise GapprofError(f"{path}: no floor (no gapprof metadata); compare and project need the model")
        out.append(Loaded(label, analysis, launch_timeline.build(analysis)))
    return out


def measured_column(loaded: Loaded) -> comparison.Column:
    bandwidths = loaded.analysis.floor.bandwidths
    gpu = bandwidths["datasheet"][1].removesuffix(" datasheet") if "datasheet" in bandwidths \
        else loaded.analysis.device_name or "?"
    return comparison.column(loaded.label, gpu, bandwidths.get("datasheet", (None,))[0],
                          bandwidths.get("copy", (None,))[0], loaded.timeline.steps)


def projected(loaded: Loaded, target: GpuSpec, knobs: projection.Knobs) -> tuple[comparison.Column, pl.DataFrame]:
    """(column, replayed per-step table) of `loaded` projected to `target`."""
    table = projection.project(loaded.analysis, loaded.timeline, target, knobs)
    column = comparison.column(f"{loaded.label}->{target.key}", f"{target.label} (projected)",
                            float(target.peak_gbps), None, table)
    return column, table
