"""The byte model of the floor (gapprof.step_bytes): kinds and parts agree, and match hand counts."""

import dataclasses

import pytest

from gapprof.models import get_spec
from gapprof.step_bytes import kind_bytes, module_bytes, step_bytes

SHIPPED = ["qwen2.5-7b", "llama-3.1-8b", "mistral-7b-v0.3"]


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("ctx", [2048, 16384])
@pytest.mark.parametrize("count_embedding", [False, True])
def test_kinds_add_up_to_the_step_total(name, ctx, count_embedding):
    spec = get_spec(name)
    parts = step_bytes(spec, ctx, 2, count_embedding)
    assert sum(kind_bytes(spec, ctx, 2, count_embedding).values()) == parts["total"]
    per_instance = module_bytes(spec, ctx, 2, count_embedding)
    per_layer = (
        "input_norm",
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "attention",
        "post_attention_norm",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    model_level = ("embed", "final_norm", "lm_head")
    assert (
        spec.layers * sum(per_instance[k] for k in per_layer) + sum(per_instance[k] for k in model_level)
        == parts["total"]
    )
    # Against the parameter counts (checked on the published totals): all but the table, plus what embed reads.
    embedding = spec.embedding_params() if count_embedding else spec.hidden
    assert parts["total"] == (
        (spec.total_params() - spec.embedding_params() + embedding) * 2 + spec.kv_bytes_per_token(2) * (ctx + 1)
    )
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


@pytest.mark.parametrize("count_embedding", [False, True])
def test_qwen_total_by_hand(count_embedding):
    # gapprof/configs/qwen2.5-7b.json: hidden 3584, intermediate 18944, 28 layers, 28 heads and 4 KV heads of
    # 3584 / 28 = 128, vocab 152064, untied lm_head; Qwen2 has q/k/v biases. bfloat16: 2 bytes.
    q_k_v_o = (3584 + 1) * 28 * 128 + 2 * (3584 + 1) * 4 * 128 + 28 * 128 * 3584
    layer = q_k_v_o + 3 * 3584 * 18944 + 2 * 3584
    weights = 28 * layer + 3584 + 152064 * 3584  # layers, final norm, lm_head
    embedding = 152064 * 3584 if count_embedding else 3584
    ctx = 4096
    kv = 2 * 28 * 4 * 128 * (ctx + 1)  # K and V of every layer, ctx tokens read and the new one written
    assert step_bytes(get_spec("qwen2.5-7b"), ctx, 2, count_embedding)["total"] == 2 * (weights + embedding + kv)


def test_qwen_parts_at_2048():
    spec = get_spec("qwen2.5-7b")
    parts = step_bytes(spec, ctx=2048, dtype_bytes=2)
    kv_per_token = 2 * 28 * 4 * 128 * 2
    assert parts["kv_read"] == 2048 * kv_per_token
    assert parts["kv_write"] == kv_per_token
    assert parts["embedding"] == 3584 * 2  # one row of the table
    assert parts["weights"] == (spec.total_params() - spec.embedding_params()) * 2
    counted = step_bytes(spec, ctx=2048, dtype_bytes=2, count_embedding=True)
    assert counted["total"] - parts["total"] == (152064 - 1) * 3584 * 2


@pytest.mark.parametrize("name", SHIPPED)
def test_kv_bytes_grow_by_one_token_per_context_token(name):
    spec = get_spec(name)
    token = spec.kv_bytes_per_token(2)
    before, after = step_bytes(spec, 4095, 2), step_bytes(spec, 4096, 2)
    assert after["kv_read"] - before["kv_read"] == token
    assert after["kv_write"] == before["kv_write"] == token
    assert after["total"] - before["total"] == token
    assert kind_bytes(spec, 4096, 2)["attention"] - kind_bytes(spec, 4095, 2)["attention"] == token


def test_a_tied_lm_head_still_reads_the_whole_table():
    spec = get_spec("qwen2.5-7b")
    tied = dataclasses.replace(spec, tied_embeddings=True)
    assert step_bytes(tied, 2048, 2) == step_bytes(spec, 2048, 2)
    assert module_bytes(tied, 2048, 2)["lm_head"] == spec.vocab * spec.hidden * 2
