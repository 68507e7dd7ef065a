"""The anatomy of each profiled cell of a sweep (`gapprof sweep --profile`), added to the sweep's rows.

Runs where polars is (the GPU image has none): the sweep writes traces there, this reads them anywhere.
"""

from pathlib import Path

from gapprof.analysis.attribution import Options, analyze, summary_table

from gapprof.log import progress


def attribute_rows(rows: list[dict], folder: Path) -> int:
    """Set each traced row's `anatomy` (term -> median ms over its measured steps); return how many."""
    done = 0
    for row in rows:
        if "trace" not in row:
            continue
        terms = summary_table(analyze(folder / row["trace"], Options(), progress))
        row["anatomy"] = dict(zip(terms["term"].to_list(), terms["median_ms"].to_list()))
        done += 1
    return done
