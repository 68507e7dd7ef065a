"""Analysis side of gapprof: pure functions over polars frames, with no torch.

`readers` reads a trace (nsys, CUPTI or torch.profiler) once into frames (`frames`); the step anatomy (`anatomy`)
and floor (`floor`) make an `attribution.Attribution`, from which the tables of `gapprof attribute` (`tables`),
the kernel cost model, modules, launch delays, findings, cross-GPU comparison and projection, the quantisation and
Nsight Compute tables are computed; `plots` draws pictures and `views` writes `gapprof view`'s files. `python_api`
is `gapprof.attribute`. Printing is gapprof.render's.
"""
