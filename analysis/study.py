"""From trace paths to the columns `compare`, `project` and `plot` show: each trace through pipeline.analyze
(the attribution `attribute` uses), its launch timeline, its measured column and its projected ones."""
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from gapprof.analysis import compare, project as project_mod, timeline as timeline_mod
from gapprof.analysis.pipeline import Analysis, Options, analyze
from gapprof.errors import GapprofError
from gapprof.profiler.gpus import GpuSpec


@dataclass(frozen=True)
class Loaded:
    label: str
    analysis: Analysis
    timeline: timeline_mod.Timeline


def load(paths: list[Path], options: Options) -> list[Loaded]:
    """Analyze every trace; labels are file stems, made unique by their folder when stems repeat."""
    stems = [Path(p).stem for p in paths]
    labels = [f"{Path(p).parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    out = []
    for label, path in zip(labels, paths):
        analysis = analyze(Path(path), options)
        if analysis.floor is None:
            raise GapprofError(f"{path}: no floor (no gapprof metadata); compare and project need the model")
        out.append(Loaded(label, analysis, timeline_mod.build(analysis)))
    return out


def measured_column(loaded: Loaded) -> compare.Column:
    bandwidths = loaded.analysis.floor.bandwidths
    gpu = bandwidths["datasheet"][1].removesuffix(" datasheet") if "datasheet" in bandwidths \
        else loaded.analysis.device_name or "?"
    return compare.column(loaded.label, gpu, bandwidths.get("datasheet", (None,))[0],
                          bandwidths.get("copy", (None,))[0], loaded.timeline.steps)


def projected(loaded: Loaded, target: GpuSpec, knobs: project_mod.Knobs) -> tuple[compare.Column, pl.DataFrame]:
    """(column, replayed per-step table) of `loaded` projected to `target`."""
    table = project_mod.project(loaded.analysis, loaded.timeline, target, knobs)
    column = compare.column(f"{loaded.label}->{target.key}", f"{target.label} (projected)",
                            float(target.peak_gbps), None, table)
    return column, table
