from __future__ import annotations

import re

import pytest

from ollama_fit.catalog import STANDARD_QUANTS, catalog, find_model
from ollama_fit.estimate import Runtime, kv_bytes, layer_kv_bytes, state_bytes
from ollama_fit.quants import quant_table
from ollama_fit.tasks import tasks

REQUIRED = [
    "llama3.2:1b",
    "llama3.2:3b",
    "llama3.1:8b",
    "llama3.3:70b",
    "qwen3:0.6b",
    "qwen3:1.7b",
    "qwen3:4b",
    "qwen3:8b",
    "qwen3:14b",
    "qwen3:32b",
    "qwen3:30b-a3b",
    "qwen3:235b-a22b",
    "qwen2.5-coder:1.5b",
    "qwen2.5-coder:7b",
    "qwen2.5-coder:14b",
    "qwen2.5-coder:32b",
    "gemma3:1b",
    "gemma3:4b",
    "gemma3:12b",
    "gemma3:27b",
    "mistral-small3.2:24b",
    "mistral-nemo:12b",
    "phi4:14b",
    "deepseek-r1:7b",
    "deepseek-r1:14b",
    "deepseek-r1:32b",
    "deepseek-r1:8b",
    "deepseek-r1:70b",
    "gpt-oss:20b",
    "gpt-oss:120b",
    "qwen3-embedding:0.6b",
    "qwen3.5:4b",
    "qwen3.5:9b",
    "qwen3.5:27b",
    "qwen3.5:35b-a3b",
    "qwen3.6:35b-a3b",
    "granite4:micro-h",
    "granite4:tiny-h",
    "granite4:small-h",
]


def test_catalog_covers_the_families_users_want():
    ids = {m.id for m in catalog()}
    assert set(REQUIRED) <= ids


@pytest.mark.parametrize("model", catalog(), ids=lambda m: m.id)
def test_shapes_rebuild_to_the_published_parameter_count(model):
    spec = model.spec(model.quants[-1] if model.quants != STANDARD_QUANTS else "Q4_K_M")
    assert spec.params / 1e9 == pytest.approx(model.params_b, rel=0.01)
    if model.is_moe:
        assert spec.active_params < spec.params / 3
    assert model.repo.count("/") == 1
    assert "{quant}" in model.file or len(model.quants) == 1
    assert set(model.quants) <= set(quant_table())


def test_release_dates_and_superseded_generations():
    models = catalog()
    for m in models:
        assert re.fullmatch(r"20[0-9]{2}-(0[1-9]|1[0-2])", m.released), m.id
        if m.superseded:  # a current model released later covers what the old one did
            assert any(
                not n.superseded and n.released > m.released and set(m.capabilities) <= set(n.capabilities)
                for n in models
            ), m.id
    assert not find_model("qwen3.6:35b-a3b").superseded
    assert find_model("qwen3:8b").superseded


@pytest.mark.parametrize("model", [m for m in catalog() if m.shape.recurrent_layers], ids=lambda m: m.id)
def test_hybrid_entries_have_state_and_attention_only_kv(model):
    spec = model.spec("Q4_K_M")
    s = spec.shape
    attn = [i for i in range(s.n_layer) if s.has_kv(i)]
    assert 0 < len(attn) < s.n_layer
    rt = Runtime(ctx=32768)
    assert state_bytes(spec, rt) > 0
    assert kv_bytes(spec, rt) == len(attn) * layer_kv_bytes(spec, attn[0], rt)
    assert any(t.name.endswith(("ssm_conv1d.weight", "shortconv.conv.weight")) for t in spec.tensors)


def test_task_table_is_consistent():
    table = tasks()
    for task in table.values():
        assert task.floor in quant_table()
        assert task.lowest in quant_table()
    assert table["coding"].lowest == "Q4_K_M"
    assert table["embedding"].floor == "Q8_0"
    assert table["fine-tuning"].refuse
