"""Capture side of gapprof: model specs, decode runtimes, the NVTX-annotated decode loop and trace backends."""
