from __future__ import annotations

import pytest

from ollama_fit.catalog import STANDARD_QUANTS, catalog
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


def test_task_table_is_consistent():
    table = tasks()
    for task in table.values():
        assert task.floor in quant_table()
        assert task.lowest in quant_table()
    assert table["coding"].lowest == "Q4_K_M"
    assert table["embedding"].floor == "Q8_0"
    assert table["fine-tuning"].refuse
