"""Model specs from shipped config.json files, and their parameter counts (gapprof.step_bytes turns them into
the bytes of the DRAM floor).

Torch-free on purpose: analysis imports this to compute floors on machines without torch.
"""

import json
from dataclasses import dataclass
from importlib import resources

from gapprof.errors import GapprofError

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# Tokens: beyond any model's context window; a real model's step at it still moves fewer than 2^63 bytes.
MAX_CONTEXT = 2**31 - 1

# Tiny configs of the same architectures, for tests and smoke runs (no shipped file: derived here).
_TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "bos_token_id": 0,
    "eos_token_id": 1,
}
_TINY_OF = {"tiny-qwen2": "qwen2.5-7b", "tiny-llama": "llama-3.1-8b", "tiny-mistral": "mistral-7b-v0.3"}


class UnknownModelError(GapprofError):
    pass


def _shipped_names() -> list[str]:
    files = resources.files(__package__).joinpath("configs").iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def known_models() -> list[str]:
    return _shipped_names() + sorted(_TINY_OF)


def load_config(name: str) -> dict:
    """The config.json dict of a known model name."""
    if name in _TINY_OF:
        config = load_config(_TINY_OF[name])
        config.update(_TINY)
        config.pop("rope_scaling", None)  # llama3 rope scaling assumes long original contexts
        return config
    if name not in _shipped_names():
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(known_models())}")
    path = resources.files(__package__).joinpath("configs", f"{name}.json")
    return json.loads(path.read_text())


class ConfigError(GapprofError, ValueError):
    """A config.json without the sizes of a decoder, or with sizes that are not whole numbers above 0."""


REQUIRED_SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)
# Sizes a config may leave out: KV heads default to the attention heads, head_dim to hidden / heads.
OPTIONAL_SIZES = ("num_key_value_heads", "head_dim")


def _sizes(config) -> dict[str, int]:
    """The config's sizes, each a whole number above 0 (the floor divides and multiplies by them)."""
    if not isinstance(config, dict):
        raise ConfigError("not a JSON object")
    missing = [key for key in (*REQUIRED_SIZES, "model_type") if key not in config]
    if missing:
        raise ConfigError(f"no {', '.join(missing)}")
    sizes = {key: config[key] for key in (*REQUIRED_SIZES, *OPTIONAL_SIZES) if config.get(key) is not None}
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} is {json.dumps(value)[:40]}, not a whole number above 0")
    return sizes


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    qkv_bias: bool
    tied_embeddings: bool

    @classmethod
    def from_config(cls, name: str, config: dict) -> "ModelSpec":
        """Raises ConfigError (a GapprofError and a ValueError) for a config whose sizes the floor cannot use."""
        sizes = _sizes(config)
        heads = sizes["num_attention_heads"]
        return cls(
            name=name,
            model_type=config["model_type"],
            hidden=sizes["hidden_size"],
            intermediate=sizes["intermediate_size"],
            layers=sizes["num_hidden_layers"],
            heads=heads,
            kv_heads=sizes.get("num_key_value_heads", heads),
            head_dim=sizes.get("head_dim") or sizes["hidden_size"] // heads,
            vocab=sizes["vocab_size"],
            max_positions=sizes["max_position_embeddings"],
            # Qwen2 carries biases on q/k/v; Llama and Mistral do not.
            qkv_bias=config.get("attention_bias", config["model_type"] == "qwen2"),
            tied_embeddings=config.get("tie_word_embeddings", False),
        )

    def layer_module_params(self) -> dict[str, int]:
        """Parameters of each module of one decoder layer, by the module kinds `capture --modules` names."""
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        bias = 1 if self.qkv_bias else 0
        return {
            "input_norm": self.hidden,
            "post_attention_norm": self.hidden,
            "q_proj": (self.hidden + bias) * q_out,
            "k_proj": (self.hidden + bias) * kv_out,
            "v_proj": (self.hidden + bias) * kv_out,
            "o_proj": q_out * self.hidden,
            "gate_proj": self.hidden * self.intermediate,
            "up_proj": self.hidden * self.intermediate,
            "down_proj": self.intermediate * self.hidden,
        }

    def layer_params(self) -> int:
        return sum(self.layer_module_params().values())

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def total_params(self) -> int:
        """Every parameter tensor, as numel() over the model would count them."""
        final_norm = self.hidden
        return self.layers * self.layer_params() + final_norm + self.embedding_params() + self.lm_head_params()

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V of one token across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def get_spec(name: str) -> ModelSpec:
    return ModelSpec.from_config(name, load_config(name))
