#!/usr/bin/env python3
"""Check (and optionally update) the catalog's shapes against each model's published config.json.

    python scripts/refresh_catalog.py            # report differences, exit 1 if any
    python scripts/refresh_catalog.py --write    # rewrite the differing fields in profiles/catalog.toml

Needs the Hub (honours HF_ENDPOINT and HF_TOKEN; gated repos such as meta-llama need an accepted license).
Only the fields that come from config.json are compared; the rest of the catalog is curated by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).resolve().parent.parent / "profiles" / "catalog.toml"


def shape_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json -> the catalog's shape fields (multimodal configs keep the LM under text_config)."""
    c = config.get("text_config", config)
    heads = c["num_attention_heads"]
    out: dict[str, Any] = {
        "layers": c["num_hidden_layers"],
        "embd": c["hidden_size"],
        "heads": heads,
        "kv_heads": c.get("num_key_value_heads", heads),
        "head_dim": c.get("head_dim") or c["hidden_size"] // heads,
        "vocab": c["vocab_size"],
    }
    tied = config.get("tie_word_embeddings", c.get("tie_word_embeddings"))
    if tied is not None:  # absent: the architecture's default, which the catalog records by hand
        out["tied"] = bool(tied)
    experts = c.get("num_experts") or c.get("num_local_experts") or c.get("n_routed_experts")
    if experts:
        out["experts"] = experts
        out["experts_used"] = c.get("num_experts_per_tok") or c.get("experts_per_token") or c.get("top_k_experts")
        out["expert_ffn"] = c.get("moe_intermediate_size") or c["intermediate_size"]
    if c.get("intermediate_size") and not (experts and c.get("moe_intermediate_size")):
        out["ffn"] = c["intermediate_size"]
    shared_keys = ("shared_expert_intermediate_size", "shared_intermediate_size", "moe_shared_expert_intermediate_size")
    shared = next((c[k] for k in shared_keys if c.get(k)), None)
    if experts and shared:
        out["shared_ffn"] = shared
    if c.get("sliding_window") and c.get("layer_types") and not _hybrid(c):
        out["sliding_window"] = c["sliding_window"]
        out |= swa_pattern(c["layer_types"])
    out |= hybrid_fields(c)
    out |= gemma4_fields(c)
    out |= llama4_fields(c)
    return out


def swa_pattern(types: list[str]) -> dict[str, Any]:
    """`layer_types` -> swa_pattern "N:1" when it repeats N sliding layers and one full one."""
    if "full_attention" not in types:
        return {}
    period = types.index("full_attention") + 1
    expected = ["sliding_attention"] * (period - 1) + ["full_attention"]
    if all(t == expected[i % period] for i, t in enumerate(types)):
        return {"swa_pattern": f"{period - 1}:1"}
    return {}


def gemma4_fields(c: dict[str, Any]) -> dict[str, Any]:
    """Gemma 4's per-kind heads and dims, shared-cache layers, per-layer embeddings and K=V attention
    (conversion/gemma.py's Gemma4Model reads the same keys)."""
    if "num_kv_shared_layers" not in c:
        return {}
    out: dict[str, Any] = {"kv_shared_layers": c["num_kv_shared_layers"]}
    if c.get("global_head_dim"):
        out["global_head_dim"] = c["global_head_dim"]
    if c.get("num_global_key_value_heads"):
        out["global_kv_heads"] = c["num_global_key_value_heads"]
    if c.get("hidden_size_per_layer_input"):
        out["per_layer_embd"] = c["hidden_size_per_layer_input"]
    if c.get("use_double_wide_mlp"):
        out["double_wide_ffn"] = True
    if c.get("attention_k_eq_v"):
        out["k_eq_v"] = True
    if c.get("enable_moe_block"):  # the dense MLP stays beside the experts
        out["ffn"] = c["intermediate_size"]
    return out


def llama4_fields(c: dict[str, Any]) -> dict[str, Any]:
    """Llama 4: intermediate_size is each expert's (and the shared expert's) width; intermediate_size_mlp the
    dense layers', which the converter writes as feed_forward_length."""
    if "intermediate_size_mlp" not in c:
        return {}
    expert = c["intermediate_size"]
    return {"ffn": c["intermediate_size_mlp"], "expert_ffn": expert, "shared_ffn": expert}


def _hybrid(c: dict[str, Any]) -> bool:
    kinds = set(c.get("layer_types") or [])
    hybrid_keys = ("full_attn_idxs", "hybrid_override_pattern")
    return bool(kinds & {"linear_attention", "mamba", "conv"}) or any(k in c for k in hybrid_keys)


def hybrid_fields(c: dict[str, Any]) -> dict[str, Any]:
    """The catalog's hybrid-layout fields (documented at the top of catalog.toml) from a config."""
    out: dict[str, Any] = {}
    types = c.get("layer_types") or []
    if "linear_num_value_heads" in c:  # Qwen3.5 / 3.6 gated delta-net
        interval = c.get("full_attention_interval")
        if not interval and types:
            interval = types.index("full_attention") + 1
        out |= {
            "full_attention_interval": interval,
            "ssm_conv": c["linear_conv_kernel_dim"],
            "ssm_state": c["linear_key_head_dim"],
            "ssm_groups": c["linear_num_key_heads"],
            "ssm_heads": c["linear_num_value_heads"],
        }
    elif "mamba_d_state" in c:  # Granite 4.0 H (Mamba-2)
        out |= {
            "attention_layers": [i for i, t in enumerate(types) if t == "attention"],
            "ssm_conv": c["mamba_d_conv"],
            "ssm_state": c["mamba_d_state"],
            "ssm_groups": c["mamba_n_groups"],
            "ssm_heads": c["mamba_n_heads"],
            "ssm_inner": c["mamba_expand"] * c["hidden_size"],
        }
    elif "hybrid_override_pattern" in c:  # Nemotron-H (conversion/nemotron.py: inner = heads x head dim)
        out |= {
            "layer_pattern": c["hybrid_override_pattern"],
            "ssm_conv": c["conv_kernel"],
            "ssm_state": c["ssm_state_size"],
            "ssm_groups": c["n_groups"],
            "ssm_heads": c["mamba_num_heads"],
            "ssm_inner": c["mamba_num_heads"] * c["mamba_head_dim"],
        }
    elif "conv_L_cache" in c:  # LFM2
        idx = c.get("full_attn_idxs") or [i for i, t in enumerate(types) if t == "full_attention"]
        out |= {"attention_layers": list(idx), "conv_cache": c["conv_L_cache"]}
        if "block_ff_dim" in c:
            out["ffn"] = lfm2_ffn(c)
    return out


def lfm2_ffn(c: dict[str, Any]) -> int:
    """The FFN width llama.cpp's converter writes for LFM2 (conversion/lfm2.py: _add_feed_forward_length)."""
    ff = int(c["block_ff_dim"])
    if c.get("block_auto_adjust_ff_dim"):
        ff = int(2 * ff / 3)
        if c.get("block_ffn_dim_multiplier") is not None:
            ff = int(c["block_ffn_dim_multiplier"] * ff)
        multiple = int(c.get("block_multiple_of", 256))
        ff = multiple * ((ff + multiple - 1) // multiple)
    return ff


# what an absent catalog key means (ollama_fit/model/catalog.py's defaults): a config that sets one of these to
# something else is a difference even where the entry does not name the key
ABSENT = {
    "kv_shared_layers": 0,
    "global_kv_heads": 0,
    "global_head_dim": 0,
    "per_layer_embd": 0,
    "double_wide_ffn": False,
    "k_eq_v": False,
    "sliding_window": 0,
    "swa_pattern": None,
    "experts": 0,
    "shared_ffn": 0,
}


def differences(entry: dict[str, Any], fresh: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    out = {}
    for key, value in fresh.items():
        if key in entry:
            old = entry[key]
        elif key in ABSENT:
            old = ABSENT[key]
        else:
            continue  # a field the catalog records by hand where the config is silent or ambiguous
        if old != value and not (key not in entry and not value):
            out[key] = (entry.get(key), value)
    return out


def fetch_config(repo: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(repo, "config.json")).read_text())


def rewrite(text: str, model_id: str, changes: dict[str, tuple[Any, Any]]) -> str:
    """Replace `key = value` lines inside the [[model]] block whose id is model_id."""
    blocks = text.split("[[model]]")
    for i, block in enumerate(blocks):
        if f'id = "{model_id}"' in block:
            for key, (_, new) in changes.items():
                value = json.dumps(new) if not isinstance(new, bool) else str(new).lower()
                if re.search(rf"(?m)^{key} = ", block):
                    block = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", block)
                else:  # a key the entry lacked: add it after the shapes' `vocab` line
                    block = re.sub(r"(?m)^(vocab = .*)$", rf"\1\n{key} = {value}", block, count=1)
            blocks[i] = block
    return "[[model]]".join(blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update profiles/catalog.toml in place")
    args = parser.parse_args()
    text = CATALOG.read_text()
    found = 0
    for entry in tomllib.loads(text)["model"]:
        try:
            fresh = shape_from_config(fetch_config(entry["config_repo"]))
        except Exception as exc:  # a gated or missing repo should not stop the others
            print(f"{entry['id']}: could not read {entry['config_repo']}/config.json ({exc})", file=sys.stderr)
            continue
        diff = differences(entry, fresh)
        for key, (old, new) in diff.items():
            print(f"{entry['id']}: {key} {old} -> {new}")
        if diff:
            found += 1
            text = rewrite(text, entry["id"], diff)
    if args.write and found:
        CATALOG.write_text(text)
    print(f"{found} model(s) differ from their published config")
    return 1 if found and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
