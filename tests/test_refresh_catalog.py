from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def load():
    spec = importlib.util.spec_from_file_location("refresh_catalog", ROOT / "scripts" / "refresh_catalog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["refresh_catalog"] = module
    spec.loader.exec_module(module)
    return module


# the published configs, trimmed to the fields the catalog uses
QWEN3_30B = {
    "num_hidden_layers": 48,
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "vocab_size": 151936,
    "tie_word_embeddings": False,
    "intermediate_size": 6144,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "moe_intermediate_size": 768,
}
GEMMA3_27B = {
    "text_config": {
        "num_hidden_layers": 62,
        "hidden_size": 5376,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "vocab_size": 262208,
        "intermediate_size": 21504,
        "sliding_window": 1024,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
    }
}


def test_shape_from_config_moe_and_multimodal():
    refresh = load()
    moe = refresh.shape_from_config(QWEN3_30B)
    assert moe["experts"] == 128
    assert moe["expert_ffn"] == 768
    assert moe["kv_heads"] == 4
    gemma = refresh.shape_from_config(GEMMA3_27B)
    assert gemma["head_dim"] == 128
    assert gemma["sliding_window"] == 1024


def test_catalog_matches_the_published_configs_and_rewrite_fixes_a_drift():
    import tomllib

    refresh = load()
    text = (ROOT / "profiles" / "catalog.toml").read_text()
    entries = {e["id"]: e for e in tomllib.loads(text)["model"]}
    assert refresh.differences(entries["qwen3:30b-a3b"], refresh.shape_from_config(QWEN3_30B)) == {}
    assert refresh.differences(entries["gemma3:27b"], refresh.shape_from_config(GEMMA3_27B)) == {}
    drifted = refresh.differences(
        entries["qwen3:30b-a3b"], refresh.shape_from_config(QWEN3_30B | {"num_hidden_layers": 50})
    )
    assert drifted == {"layers": (48, 50)}
    fixed = refresh.rewrite(text, "qwen3:30b-a3b", drifted)
    assert (
        tomllib.loads(fixed)["model"][[e["id"] for e in tomllib.loads(text)["model"]].index("qwen3:30b-a3b")]["layers"]
        == 50
    )
