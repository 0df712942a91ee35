from __future__ import annotations

import re

import pytest

from ollama_fit.memory.estimate import Runtime, kv_bytes, layer_kv_bytes, state_bytes
from ollama_fit.model.catalog import STANDARD_QUANTS, catalog, find_model
from ollama_fit.model.quants import quant_table
from ollama_fit.plan.tasks import tasks

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
    "gemma4:e2b",
    "gemma4:e4b",
    "gemma4:12b",
    "gemma4:26b",
    "gemma4:31b",
    "llama4:scout",
    "ministral-3:3b",
    "ministral-3:8b",
    "ministral-3:14b",
    "devstral-small-2:24b",
    "qwen3-next:80b-a3b",
    "qwen3.5:122b-a10b",
    "qwen3.5:397b-a17b",
    "glm-4.5-air:106b-a12b",
    "glm-4.7:355b-a32b",
    "minimax-m2.7:229b-a10b",
    "deepseek-v3.1:671b",
    "devstral-2:123b",
]


def test_catalog_covers_the_families_users_want():
    ids = {m.id for m in catalog()}
    assert set(REQUIRED) <= ids


@pytest.mark.parametrize("model", catalog(), ids=lambda m: m.id)
def test_shapes_rebuild_to_the_published_parameter_count(model):
    spec = model.spec(model.quants[-1] if model.quants != STANDARD_QUANTS else "Q4_K_M")
    # a multimodal total also counts the encoders that ship apart (published sizes, or ~1% when none is given)
    expected = model.params_b - model.encoders_b
    assert spec.params / 1e9 == pytest.approx(expected, rel=0.02 if model.multimodal else 0.01)
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


def test_gemma4_layouts_follow_llama_cpp():
    e2b = find_model("gemma4:e2b")
    s = e2b.shape
    assert sum(s.has_kv(i) for i in range(s.n_layer)) == 15  # layers 15-34 reuse a cache
    assert (s.ff(14), s.ff(15)) == (6144, 12288)  # the shared layers' FFN is double-wide
    assert [i for i in range(s.n_layer) if not s.is_swa(i)] == list(range(4, 35, 5))
    names = {t.name for t in e2b.spec("Q4_K_M").tensors}
    # the shared layers keep their (unused) K/V projections in the file, and llama.cpp loads them
    assert {"blk.14.attn_k.weight", "blk.15.attn_k.weight", "blk.15.attn_v.weight"} <= names
    rt = Runtime(ctx=8192)
    assert [layer_kv_bytes(e2b.spec("Q4_K_M"), i, rt) > 0 for i in (14, 15)] == [True, False]
    assert "per_layer_token_embd.weight" in names
    assert e2b.effective_b == 2.3  # ranked at its effective size, not with the per-layer tables

    big = find_model("gemma4:31b")
    s = big.shape
    assert (s.kv_heads(0), s.head_dims(0), s.kv_heads(5), s.head_dims(5)) == (16, (256, 256), 4, (512, 512))
    names = {t.name for t in big.spec("Q4_K_M").tensors}
    assert {"blk.0.attn_v.weight", "blk.5.attn_k.weight"} <= names
    assert "blk.5.attn_v.weight" not in names  # K = V on the full layers

    moe = find_model("gemma4:26b").spec("Q4_K_M")
    shapes = {t.name: t.shape for t in moe.tensors}
    assert shapes["blk.0.ffn_gate_up_exps.weight"] == (2816, 1408, 128)
    assert shapes["blk.0.ffn_gate.weight"] == (2816, 2112)  # the dense FFN beside the experts
    assert moe.active_params / 1e9 == pytest.approx(3.8, rel=0.02)


def test_llama4_is_chunked_moe_with_a_shared_expert():
    scout = find_model("llama4:scout").spec("Q4_K_M")
    names = {t.name for t in scout.tensors}
    assert {"blk.47.ffn_up_exps.weight", "blk.47.ffn_up_shexp.weight", "rope_freqs.weight"} <= names
    assert not any(n.startswith("blk.0.ffn_up.") for n in names)  # every layer is MoE (interleave step 1)
    assert scout.active_params / 1e9 == pytest.approx(17.0, rel=0.02)
    s = scout.shape
    assert [i for i in range(s.n_layer) if not s.is_swa(i)] == list(range(3, 48, 4))
    rt = Runtime(ctx=65536)  # chunked layers keep 8192 + ubatch cells, the 12 global ones the whole context
    cells = 8192 + 512
    assert kv_bytes(scout, rt) == (12 * 65536 + 36 * cells) * 2 * 8 * 128 * 2  # K + V, 8 heads of 128, f16


def test_large_moe_layouts_follow_llama_cpp():
    """GLM-4.7 (glm4moe), MiniMax-M2.7 (minimax-m2) and DeepSeek-V3.1 (deepseek2 with MLA) as llama.cpp b11434's
    load_arch_tensors creates them: leading dense layers, routers with a selection bias, shared experts; the MTP
    layer the converters keep is not part of the table (llama.cpp skips it)."""
    glm = find_model("glm-4.7:355b-a32b").spec("Q4_K_M")
    shapes = {t.name: t.shape for t in glm.tensors}
    assert shapes["blk.2.ffn_up.weight"] == (5120, 12288)  # first_k_dense_replace 3
    assert shapes["blk.3.ffn_up_exps.weight"] == (5120, 1536, 160)
    assert shapes["blk.3.ffn_up_shexp.weight"] == (5120, 1536)
    assert {"blk.3.exp_probs_b.bias", "blk.0.attn_q.bias", "blk.0.attn_k_norm.weight"} <= set(shapes)
    assert "blk.3.ffn_up.weight" not in shapes
    assert "blk.92.attn_norm.weight" not in shapes  # the MTP layer
    air = {t.name for t in find_model("glm-4.5-air:106b-a12b").spec("Q8_0").tensors}
    assert "blk.0.attn_q_norm.weight" not in air

    minimax = find_model("minimax-m2.7:229b-a10b").spec("Q4_K_M")
    shapes = {t.name: t.shape for t in minimax.tensors}
    assert (shapes["blk.0.attn_q_norm.weight"], shapes["blk.0.attn_k_norm.weight"]) == ((6144,), (1024,))
    assert shapes["blk.61.ffn_down_exps.weight"] == (1536, 3072, 256)
    assert not any("shexp" in name for name in shapes)

    deepseek = find_model("deepseek-v3.1:671b").spec("Q4_K_M")
    shapes = {t.name: t.shape for t in deepseek.tensors}
    assert shapes["blk.0.attn_q_b.weight"] == (1536, 128 * 192)
    assert shapes["blk.0.attn_kv_a_mqa.weight"] == (7168, 512 + 64)
    assert (shapes["blk.0.attn_k_b.weight"], shapes["blk.0.attn_v_b.weight"]) == ((128, 512, 128), (512, 128, 128))
    assert shapes["blk.0.attn_output.weight"] == (128 * 128, 7168)
    assert {"blk.2.ffn_up.weight", "blk.3.ffn_up_exps.weight"} <= set(shapes)
    assert deepseek.active_params / 1e9 == pytest.approx(37.0, rel=0.02)
    rt = Runtime(ctx=32768, flash_attn=False)  # one latent of rank + rope per layer and cell, no V, whatever FA
    assert kv_bytes(deepseek, rt) == 61 * (512 + 64) * 32768 * 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"swa_pattern": "0:1"}, "unknown swa_pattern"),
        ({"swa_pattern": "gemma9"}, "unknown swa_pattern"),
        ({"layer_pattern": "M*-"}, "layer_pattern must give one of M * - E for each of 4 layers"),
        ({"layer_pattern": "MXM*"}, "layer_pattern must give one of"),
        ({"kv_shared_layers": 4}, "kv_shared_layers 4 of 4 layers"),
        ({"kv_lora_rank": 512, "rope_dim": 64}, "an MLA entry (kv_lora_rank) needs rope_dim and v_head_dim"),
        ({"dense_layers": 4}, "dense_layers must be fewer than the 4 layers"),
    ],
)
def test_a_damaged_catalog_entry_is_a_profile_error(fields, message):
    from ollama_fit.errors import ProfileError
    from ollama_fit.model.catalog import _model

    entry = {
        "id": "x:1b", "name": "X", "family": "x", "arch": "nemotron_h", "params_b": 1.0, "layers": 4, "embd": 256,
        "heads": 4, "kv_heads": 2, "head_dim": 64, "ffn": 512, "vocab": 1000, "context": 4096, "license": "mit",
        "capabilities": ["chat"], "repo": "a/b", "file": "x-{quant}.gguf", "config_repo": "a/b",
    }  # fmt: skip
    with pytest.raises(ProfileError, match=re.escape(message)):
        _model(entry | fields, 0)


def test_rebuilding_a_model_at_several_quants_shares_nothing_that_differs():
    """rebuild() shares a model's tensor objects between its quants (one object per name and type); each table
    is the one a fresh rebuild writes."""
    from ollama_fit.model import spec as spec_module

    shape = find_model("qwen3.5:27b").shape
    shared = [spec_module.rebuild(shape, q) for q in ("Q4_K_M", "Q6_K", "Q4_K_M", "Q8_0")]
    spec_module._layout.cache_clear()
    for table in shared:
        fresh = spec_module.rebuild(shape, table.quant)
        spec_module._layout.cache_clear()
        assert [(t.name, t.shape, t.type, t.nbytes, t.layer) for t in table.tensors] == [
            (t.name, t.shape, t.type, t.nbytes, t.layer) for t in fresh.tensors
        ]
    norms = [t for t in shared[0].tensors if t.type == "F32"]
    assert norms
    assert all(a is b for a, b in zip(norms, [t for t in shared[1].tensors if t.type == "F32"], strict=True))
    assert shared[0].weights_bytes < shared[1].weights_bytes < shared[3].weights_bytes


@pytest.mark.parametrize("model", catalog(), ids=lambda m: m.id)
def test_the_weights_floor_never_exceeds_the_rebuilt_weights(model):
    """The planner turns a model down on this bound without building its table: it must be a lower bound for
    every quant the model offers (llama-quantize only ever raises a tensor above the base type)."""
    for quant in model.quants:
        floor = model.weights_floor(quant)
        assert 0 < floor <= model.spec(quant).weights_bytes, quant
