"""Loading traces for the commands that read several at once (compare, project, plot, quant-table): the floor
overrides checked against each capture, and the kernel model from an ncu CSV or a reference trace."""
from gapprof import gpu_profile
from gapprof.analysis import study
from gapprof.analysis.attribution import Options, analyze
from gapprof.analysis.plausibility import problems
from gapprof.errors import GapprofError
from gapprof.log import progress


def load_traces(paths, range_pattern, skip, count_embedding, overrides: dict | None = None,
                force: bool = False) -> list[study.Loaded]:
    """The traces through study.load; overrides: --model, --ctx and --dtype for the floor, refused where they
    contradict a capture's metadata or put the floor above busy (as in `attribute`) unless force."""
    progress(f"analyzing {', '.join(map(str, paths))}")
    overrides = overrides or {}
    loaded = study.load(list(paths), Options(range_pattern=range_pattern, skip=skip, count_embedding=count_embedding,
                                             **overrides))
    if any(v is not None for v in overrides.values()) and not force:
        wrong = [f"{x.label}: {problem}" for x in loaded for problem in problems(x.analysis, **overrides)]
        if wrong:
            raise GapprofError("; ".join(wrong) + "; --force uses them anyway")
    return loaded


def analyze_reference(reference, range_pattern):
    """The --reference trace (a `capture --modules` one) analysed, or None without one."""
    return analyze(reference, Options(range_pattern=range_pattern), progress) if reference else None


def with_bytes_per_kernel(loaded: study.Loaded, ncu_csv, reference, range_pattern,
                          gpu_profiles=()) -> study.Loaded:
    """loaded with the kernel model when bytes per kernel are given (--ncu, or --reference for analytic ones), with
    the shipped GPU profiles and --gpu-profile's."""
    if ncu_csv is None and reference is None:
        return loaded
    return study.with_kernel_model(loaded, ncu_csv, analyze_reference(reference, range_pattern),
                                   gpu_profile.profiles(gpu_profiles))
