"""The decode runtimes' names and warm-up needs, free of torch so that command lines parse (and say what is
missing) on a machine without it; the runtimes themselves are in profiler.runtimes."""
RUNTIMES = ("eager", "static", "graphs", "compile", "lean")
GRAPH_RUNTIMES = ("graphs", "compile", "lean")  # their steps replay CUDA graphs
# CUDA graph capture and cudagraph trees need eager iterations first (lazy init, cuBLAS workspaces).
EAGER_STEPS_BEFORE_CAPTURE = 2
MIN_WARMUP = {"eager": 0, "static": 0, "graphs": EAGER_STEPS_BEFORE_CAPTURE + 1, "compile": 3,
              "lean": EAGER_STEPS_BEFORE_CAPTURE + 1}

# Attention backends: "sdpa" lets torch pick per call; "sdpa-X" pins SDPA to one backend; "eager" is Hugging Face's
# own matmul-softmax-matmul attention. The pinned ones are what a user sets with torch.nn.attention.sdpa_kernel.
# "lean" is the lean runtime's own (profiler.lean_model.attention), the one it runs and the only one it runs.
ATTENTION_BACKENDS = ("sdpa-math", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "sdpa", "eager", "lean")
CUDA_ONLY_ATTENTION = ("sdpa-cudnn", "sdpa-efficient")
# `auto`: the fastest backend without a per-length setup, per runtime (benchmarks/attn_backends.py, H100 and
# H200, 2026-11-27). The dynamic cache gives attention a new KV length every step, where torch's own choice
# (cuDNN) pays a setup each time and flash is fastest; the static-cache runtimes keep one length, flash refuses
# their attention mask, and torch's choice is fastest.
AUTO_ATTENTION = {"eager": "sdpa-flash", "static": "sdpa", "graphs": "sdpa", "compile": "sdpa", "lean": "lean"}
# Backends a runtime cannot run (measured on H100, torch 2.11, transformers 5.17): flash takes no attention mask,
# which the static cache passes; Hugging Face's eager attention copies a host tensor inside CUDA graph capture.
UNSUPPORTED_ATTENTION = {("sdpa-flash", r): "flash attention takes no attention mask, which the static cache "
                         "passes" for r in ("static", "graphs", "compile")}
UNSUPPORTED_ATTENTION[("eager", "graphs")] = ("Hugging Face's eager attention copies a host tensor during CUDA "
                                              "graph capture")
UNSUPPORTED_ATTENTION.update({("lean", r): "it is the lean runtime's own attention" for r in RUNTIMES if r != "lean"})
UNSUPPORTED_ATTENTION.update({(a, "lean"): "the lean runtime runs its own attention (--attn auto or lean)"
                              for a in ATTENTION_BACKENDS if a != "lean"})


def resolve_attention(attn: str, runtime: str) -> str:
    """The backend `--attn auto` stands for under `runtime`; any other choice as given."""
    return AUTO_ATTENTION.get(runtime, "sdpa") if attn == "auto" else attn
