import sys


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout carries only data."""
    print(f"[gapprof] {message}", file=sys.stderr, flush=True)
