"""Capture side of gapprof: model builders and quantisation, decode runtimes, the NVTX-annotated decode loop, the
capture session and its backends (nsys, CUPTI, ncu), fresh timed sessions for `gapprof ab` and `gapprof sweep`
(`timing_child`, `fresh_sessions`, `ab_runner`, `sweep_runner`), `gapprof.mark_steps`' hooks, calibrate's
microbenchmarks, and `gapprof profile`'s run of any program with its site hook (`child_site/`)."""
