"""The decode runtimes' names and warm-up needs, free of torch so that command lines parse (and say what is
missing) on a machine without it; the runtimes themselves are in profiler.runtimes."""
RUNTIMES = ("eager", "static", "graphs", "compile")
# CUDA graph capture and cudagraph trees need eager iterations first (lazy init, cuBLAS workspaces).
EAGER_STEPS_BEFORE_CAPTURE = 2
MIN_WARMUP = {"eager": 0, "static": 0, "graphs": EAGER_STEPS_BEFORE_CAPTURE + 1, "compile": 3}
