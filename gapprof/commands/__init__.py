"""The click commands of `gapprof`: option parsing, then one call into capture (profiler) or analysis, then output."""
