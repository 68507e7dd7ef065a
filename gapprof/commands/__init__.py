"""The click commands of `gapprof`, one module each, which gapprof.cli imports only when its command runs: option
parsing, then one call into capture (profiler) or analysis, then output. `options` holds the options and the session
preamble that several commands share."""
