from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).parent.parent


def load():
    return load_script("refresh_catalog")


def catalog_entries():
    import tomllib

    return {e["id"]: e for e in tomllib.loads((ROOT / "profiles" / "catalog.toml").read_text())["model"]}


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


def test_a_drift_is_reported_and_rewrite_fixes_it():
    import tomllib

    refresh = load()
    text = (ROOT / "profiles" / "catalog.toml").read_text()
    entries = {e["id"]: e for e in tomllib.loads(text)["model"]}
    drifted = refresh.differences(
        entries["qwen3:30b-a3b"], refresh.shape_from_config(QWEN3_30B | {"num_hidden_layers": 50})
    )
    assert drifted == {"layers": (48, 50)}
    fixed = refresh.rewrite(text, "qwen3:30b-a3b", drifted)
    assert (
        tomllib.loads(fixed)["model"][[e["id"] for e in tomllib.loads(text)["model"]].index("qwen3:30b-a3b")]["layers"]
        == 50
    )


# Qwen/Qwen3.5-27B, Qwen/Qwen3.5-4B and Qwen/Qwen3.6-35B-A3B config.json, trimmed to the fields the catalog uses
# (values as published; see the sources comment above the Qwen3.5 entries in profiles/catalog.toml)
QWEN35_27B = {
    "tie_word_embeddings": False,
    "text_config": {
        "full_attention_interval": 4,
        "head_dim": 256,
        "hidden_size": 5120,
        "intermediate_size": 17408,
        "layer_types": ["linear_attention"] * 3 + ["full_attention"],
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 128,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 48,
        "linear_value_head_dim": 128,
        "num_attention_heads": 24,
        "num_hidden_layers": 64,
        "num_key_value_heads": 4,
        "vocab_size": 248320,
    },
}
QWEN35_4B = {
    "text_config": {
        "hidden_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "intermediate_size": 9216,
        "vocab_size": 248320,
        "full_attention_interval": 4,
        "linear_num_key_heads": 16,
        "linear_key_head_dim": 128,
        "linear_num_value_heads": 32,
        "linear_value_head_dim": 128,
        "linear_conv_kernel_dim": 4,
        "tie_word_embeddings": True,
    }
}
QWEN36_35B_A3B = {
    "tie_word_embeddings": False,
    "text_config": {
        "hidden_size": 2048,
        "num_hidden_layers": 40,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "num_experts": 256,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "full_attention_interval": 4,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 32,
        "linear_conv_kernel_dim": 4,
        "vocab_size": 248320,
    },
}
# the GraniteMoeHybrid example configuration of the transformers documentation (a small published config)
GRANITE_HYBRID_EXAMPLE = {
    "hidden_size": 512,
    "intermediate_size": 1024,
    "layer_types": ["mamba", "mamba", "mamba", "attention", "mamba", "mamba", "mamba", "attention"],
    "mamba_d_conv": 4,
    "mamba_d_state": 128,
    "mamba_expand": 2,
    "mamba_n_groups": 1,
    "mamba_n_heads": 8,
    "num_attention_heads": 8,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 8,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "shared_intermediate_size": 512,
    "tie_word_embeddings": True,
    "vocab_size": 49152,
}


def test_hybrid_configs_give_the_catalog_fields():
    refresh = load()
    entries = catalog_entries()
    for config in (QWEN35_27B, QWEN35_4B, QWEN36_35B_A3B):
        assert refresh.shape_from_config(config)["full_attention_interval"] == 4
    drifted = refresh.shape_from_config(
        QWEN35_27B | {"text_config": QWEN35_27B["text_config"] | {"linear_num_value_heads": 32}}
    )
    assert refresh.differences(entries["qwen3.5:27b"], drifted) == {"ssm_heads": (48, 32)}
    granite = refresh.shape_from_config(GRANITE_HYBRID_EXAMPLE)
    assert granite["attention_layers"] == [3, 7]
    assert (granite["ssm_heads"], granite["ssm_groups"], granite["ssm_inner"]) == (8, 1, 1024)
    assert granite["shared_ffn"] == 512
    assert granite["expert_ffn"] == 1024
    lfm2 = refresh.hybrid_fields({"conv_L_cache": 3, "full_attn_idxs": [2, 5, 8], "layer_types": None})
    assert lfm2 == {"attention_layers": [2, 5, 8], "conv_cache": 3}


# LiquidAI/LFM2-1.2B config.json (verbatim values, trimmed to what the catalog uses)
LFM2_1_2B = {
    "block_auto_adjust_ff_dim": True,
    "block_ff_dim": 12288,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "conv_L_cache": 3,
    "intermediate_size": 8192,
    "full_attn_idxs": [2, 5, 8, 10, 12, 14],
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "head_dim": 64,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "vocab_size": 65536,
}


def test_lfm2_config_gives_the_converters_ffn_and_layer_schedule():
    refresh = load()
    fresh = refresh.shape_from_config(LFM2_1_2B)
    assert fresh["ffn"] == 8192  # block_ff_dim 12288 x 2/3, rounded up to 256
    # LFM2-350M: block_ff_dim 6656 -> 4608, the width llama.cpp's loader names 350M
    assert refresh.lfm2_ffn(LFM2_1_2B | {"block_ff_dim": 6656}) == 4608


# ibm-granite/granite-4.0-h-micro and -h-tiny config.json (H-1B: in the test, as H-Micro's with its own widths),
# trimmed to the fields the catalog uses (values as quoted in public fixtures; see the sources comment above the
# Granite 4.0 entries in profiles/catalog.toml)
GRANITE_COMMON = {
    "vocab_size": 100352,
    "tie_word_embeddings": True,
    "mamba_d_head": 64,
    "mamba_d_state": 128,
    "mamba_n_groups": 1,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "layer_types": ["mamba"] * 5 + ["attention"] + (["mamba"] * 9 + ["attention"]) * 3 + ["mamba"] * 4,
}
GRANITE_H_MICRO = {
    "hidden_size": 2048,
    "num_hidden_layers": 40,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "shared_intermediate_size": 8192,
    "num_local_experts": 0,
    "mamba_n_heads": 64,
} | GRANITE_COMMON
GRANITE_H_TINY = {
    "hidden_size": 1536,
    "num_hidden_layers": 40,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "intermediate_size": 512,
    "shared_intermediate_size": 1024,
    "num_local_experts": 64,
    "num_experts_per_tok": 6,
    "mamba_n_heads": 48,
} | GRANITE_COMMON
GRANITE_H_1B = GRANITE_H_MICRO | {"hidden_size": 1536, "num_attention_heads": 12, "num_key_value_heads": 4}
GRANITE_H_1B |= {"intermediate_size": 4096, "shared_intermediate_size": 4096, "mamba_n_heads": 48}


def test_granite_4_hybrid_configs_give_the_catalog_entries():
    refresh = load()
    entries = catalog_entries()
    micro = refresh.shape_from_config(GRANITE_H_MICRO)
    assert "experts" not in micro  # num_local_experts 0: a dense FFN of intermediate_size
    assert micro["attention_layers"] == [5, 15, 25, 35]
    tiny = refresh.shape_from_config(GRANITE_H_TINY)
    assert (tiny["experts"], tiny["expert_ffn"], tiny["shared_ffn"], tiny["ssm_inner"]) == (64, 512, 1024, 3072)
    drifted = refresh.shape_from_config(GRANITE_H_TINY | {"mamba_n_heads": 64})
    assert refresh.differences(entries["granite4:tiny-h"], drifted) == {"ssm_heads": (48, 64)}


# Qwen/Qwen3-Coder-30B-A3B-Instruct config.json, trimmed to the fields the catalog uses
QWEN3_CODER_30B = {
    "head_dim": 128,
    "hidden_size": 2048,
    "intermediate_size": 5472,
    "moe_intermediate_size": 768,
    "num_attention_heads": 32,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 48,
    "num_key_value_heads": 4,
    "shared_expert_intermediate_size": 0,
    "tie_word_embeddings": False,
    "vocab_size": 151936,
}


def test_qwen3_coder_config_has_no_shared_expert():
    fresh = load().shape_from_config(QWEN3_CODER_30B)
    assert "shared_ffn" not in fresh
    assert "ffn" not in fresh  # intermediate_size 5472 is unused by a MoE layer


# microsoft/Phi-4-mini-instruct config.json, trimmed to the fields the catalog uses
PHI4_MINI = {
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 24,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "vocab_size": 200064,
}


def test_phi4_mini_config_derives_its_head_dim():
    assert load().shape_from_config(PHI4_MINI)["head_dim"] == 128  # no head_dim in the config: hidden / heads


# google/gemma-4-26B-A4B-it text_config (transformers' convert_gemma4_weights.py variant) and Llama 4 Scout's
GEMMA4_26B = {
    "text_config": {
        "num_hidden_layers": 30,
        "hidden_size": 2816,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "num_global_key_value_heads": 2,
        "head_dim": 256,
        "global_head_dim": 512,
        "intermediate_size": 2112,
        "vocab_size": 262144,
        "sliding_window": 1024,
        "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 5,
        "num_kv_shared_layers": 0,
        "hidden_size_per_layer_input": 0,
        "attention_k_eq_v": True,
        "enable_moe_block": True,
        "num_experts": 128,
        "top_k_experts": 8,
        "moe_intermediate_size": 704,
        "tie_word_embeddings": True,
    }
}
LLAMA4_SCOUT = {
    "text_config": {
        "num_hidden_layers": 48,
        "hidden_size": 5120,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "num_local_experts": 16,
        "num_experts_per_tok": 1,
        "vocab_size": 202048,
        "tie_word_embeddings": False,
    }
}


def test_gemma4_and_llama4_configs_give_their_own_fields():
    refresh = load()
    gemma = refresh.shape_from_config(GEMMA4_26B)
    assert gemma["swa_pattern"] == "5:1"
    assert (gemma["global_kv_heads"], gemma["global_head_dim"], gemma["k_eq_v"]) == (2, 512, True)
    assert (gemma["ffn"], gemma["expert_ffn"], gemma["experts_used"]) == (2112, 704, 8)
    llama = refresh.shape_from_config(LLAMA4_SCOUT)
    assert (llama["ffn"], llama["expert_ffn"], llama["shared_ffn"], llama["experts"]) == (16384, 8192, 8192, 16)


# nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 config.json, trimmed
NEMOTRON3_NANO = {
    "num_hidden_layers": 52,
    "hidden_size": 2688,
    "num_attention_heads": 32,
    "num_key_value_heads": 2,
    "head_dim": 128,
    "intermediate_size": 1856,
    "vocab_size": 131072,
    "tie_word_embeddings": False,
    "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
    "mamba_num_heads": 64,
    "mamba_head_dim": 64,
    "ssm_state_size": 128,
    "n_groups": 8,
    "conv_kernel": 4,
    "n_routed_experts": 128,
    "num_experts_per_tok": 6,
    "moe_intermediate_size": 1856,
    "moe_shared_expert_intermediate_size": 3712,
}


def test_nemotron_h_moe_config_gives_its_layer_pattern_and_experts():
    fresh = load().shape_from_config(NEMOTRON3_NANO)
    assert fresh["layer_pattern"] == NEMOTRON3_NANO["hybrid_override_pattern"]
    assert (fresh["ssm_inner"], fresh["experts"], fresh["shared_ffn"]) == (4096, 128, 3712)
    assert "ffn" not in fresh  # no dense FFN layers: every E layer is MoE


def test_a_field_the_entry_lacks_is_a_difference_and_rewrite_adds_it():
    import tomllib

    refresh = load()
    text = (ROOT / "profiles" / "catalog.toml").read_text()
    stripped = text.replace("k_eq_v = true\n", "", 1)  # the first k_eq_v entry: Gemma 4 12B
    entry = next(e for e in tomllib.loads(stripped)["model"] if e["id"] == "gemma4:12b")
    assert "k_eq_v" not in entry
    config = {"text_config": GEMMA4_26B["text_config"] | {"attention_k_eq_v": True}}
    diff = refresh.differences(entry, refresh.shape_from_config(config))
    assert diff["k_eq_v"] == (None, True)
    fixed = tomllib.loads(refresh.rewrite(stripped, "gemma4:12b", {"k_eq_v": diff["k_eq_v"]}))
    assert next(e for e in fixed["model"] if e["id"] == "gemma4:12b")["k_eq_v"] is True


# every trimmed published config above, and the catalog entry it must reproduce field for field
PUBLISHED = [
    ("qwen3:30b-a3b", QWEN3_30B),
    ("gemma3:27b", GEMMA3_27B),
    ("qwen3.5:27b", QWEN35_27B),
    ("qwen3.5:4b", QWEN35_4B),
    ("qwen3.6:35b-a3b", QWEN36_35B_A3B),
    ("qwen3.5:35b-a3b", QWEN36_35B_A3B),  # the same published architecture
    ("lfm2:1.2b", LFM2_1_2B),
    ("granite4:micro-h", GRANITE_H_MICRO),
    ("granite4:tiny-h", GRANITE_H_TINY),
    ("granite4:1b-h", GRANITE_H_1B),
    ("qwen3-coder:30b", QWEN3_CODER_30B),
    ("phi4-mini:3.8b", PHI4_MINI),
    ("gemma4:26b", GEMMA4_26B),
    ("llama4:scout", LLAMA4_SCOUT),
    ("nemotron-3-nano:30b", NEMOTRON3_NANO),
]


@pytest.mark.parametrize(("model_id", "config"), PUBLISHED, ids=[m for m, _ in PUBLISHED])
def test_each_published_config_gives_its_catalog_entry(model_id, config):
    refresh = load()
    assert refresh.differences(catalog_entries()[model_id], refresh.shape_from_config(config)) == {}
