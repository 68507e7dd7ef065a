"""Click options and the torch check shared by the commands that run decode sessions (capture, ncu, ab,
sweep) and, for --count-embedding, by the analysis commands. Free of torch and polars."""
import click

from gapprof.errors import GapprofError
from gapprof.models import DTYPE_BYTES, known_models

MODEL = click.option("--model", default="qwen2.5-7b", show_default=True, help=f"One of: {', '.join(known_models())}.")
CTX = click.option("--ctx", default=2048, show_default=True, help="Prompt tokens prefilled before decoding.")
DTYPE = click.option("--dtype", type=click.Choice(list(DTYPE_BYTES)), default="bfloat16", show_default=True)
ATTN = click.option("--attn", type=click.Choice(["sdpa", "eager"]), default="sdpa", show_default=True)
WEIGHTS = click.option("--weights", type=click.Path(file_okay=False),
                       help="Local Hugging Face checkpoint (default: random).")
DEVICE = click.option("--device", default="cuda", show_default=True,
                      help="torch device of the sessions (cpu for tests).")
COUNT_EMBEDDING = click.option("--count-embedding", is_flag=True,
                               help="Count the whole token-embedding table in the floor bytes (the study's "
                                    "convention).")


def import_torch(command: str):
    """torch, or a one-line error saying which extra installs it."""
    try:
        import torch
    except ImportError:
        raise GapprofError(f"{command} needs torch and transformers: pip install 'gapprof[capture]'") from None
    return torch
