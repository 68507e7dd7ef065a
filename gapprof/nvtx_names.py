"""The NVTX ranges capture writes and analysis reads: the step range, and the module ranges of `--modules`.

A decode step is a push/pop range in domain `gapprof` with message `decode_step` and payload = the step's index
since prefill; `gapprof.mark_steps` marks a forward of more than one new token `prefill` instead. A module
range has message `module:<kind>` and payload = decoder layer index (none for the model-level modules).
"""

STEP_DOMAIN = "gapprof"
STEP_MESSAGE = "decode_step"
# The graph-level pass of a two-pass capture (--cuda-graph-trace both): its steps, under their own message.
GRAPH_LEVEL_MESSAGE = "decode_step_graph_level"
PREFILL_MESSAGE = "prefill"
MODULE_PREFIX = "module:"

# Path inside a decoder layer -> kind, in the order a layer runs them.
LAYER_MODULES = {
    "": "layer",
    "input_layernorm": "input_norm",
    "self_attn": "attention",
    "self_attn.q_proj": "q_proj",
    "self_attn.k_proj": "k_proj",
    "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "o_proj",
    "post_attention_layernorm": "post_attention_norm",
    "mlp": "mlp",
    "mlp.gate_proj": "gate_proj",
    "mlp.up_proj": "up_proj",
    "mlp.act_fn": "act",
    "mlp.down_proj": "down_proj",
}
# Path in the causal-LM model -> kind, for modules outside the decoder layers.
MODEL_MODULES = {
    "model.embed_tokens": "embed",
    "model.rotary_emb": "rotary",
    "model.norm": "final_norm",
    "lm_head": "lm_head",
}
KINDS = ("embed", "rotary", *LAYER_MODULES.values(), "final_norm", "lm_head")
