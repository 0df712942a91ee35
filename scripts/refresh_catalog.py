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
    experts = c.get("num_experts") or c.get("num_local_experts")
    if experts:
        out["experts"] = experts
        out["experts_used"] = c.get("num_experts_per_tok") or c.get("experts_per_token")
        out["expert_ffn"] = c.get("moe_intermediate_size") or c["intermediate_size"]
    if c.get("intermediate_size"):
        out["ffn"] = c["intermediate_size"]
    if c.get("sliding_window") and c.get("layer_types"):
        out["sliding_window"] = c["sliding_window"]
    return out


def differences(entry: dict[str, Any], fresh: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (entry.get(k), v) for k, v in fresh.items() if k in entry and entry.get(k) != v}


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
                block = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", block)
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
