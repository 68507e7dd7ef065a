"""gapprof: where batch-1 LLM decode time goes, per step and per kernel."""
__version__ = "0.1.0"
