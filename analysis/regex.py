"""Regular expressions as polars runs them (Rust's regex crate: no look-around or backreferences, compiled
programs capped at 10 MB), so a pattern Python's `re` accepts but polars does not is refused before it runs."""

import polars as pl


def regex_error(pattern: str) -> str | None:
    """Why polars cannot run `pattern` (the regex engine's own words, on one line), or None when it can."""
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.ComputeError as error:
        # "regex error: regex parse error:\n    (\n    ^\nerror: unclosed group\n\nThis error occurred ..."
        lines = [line.strip() for line in str(error).split("\n\n")[0].splitlines()]
        said = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        return said[-1] if said else lines[0].removeprefix("regex error: ")
    return None
