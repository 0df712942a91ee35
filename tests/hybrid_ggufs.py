"""GGUF files of the hybrid architectures, loadable by the real llama.cpp (tensor data left sparse: zeros).

The tensor tables are what llama-quantize makes of the shapes (spec.rebuild), written with the keys each
architecture's load_arch_hparams reads (llama.cpp b11434, src/models/*.cpp). Qwen3.5 files can carry the
multi-token-prediction block recent converters keep (`nextn_predict_layers`, tensors blk.{n_layer}.*), which
llama.cpp does not load by default.

Most presets are a few of a catalog model's own layers (`catalog_layers`: heads, windows, FFN widths and layer
kinds as profiles/catalog.toml plans them) with a small vocabulary; the others (Qwen3-Coder-Next, Granite 4.0
H, Nemotron-H dense, the first Gemma 4 E layout) keep published sizes with some choices of their own, said
beside each. A file is a few hundred MB of sparse data (the MoE layers of gemma4moe / llama4: 3 / 5 GB) that
loads in seconds on a CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gguf
from ggufs import LABEL_TO_FTYPE, finish_sparse

from ollama_fit.model.catalog import find_model
from ollama_fit.model.spec import ModelShape, ModelSpec, Tensor, rebuild


def catalog_layers(model_id: str, layers: Sequence[int], n_vocab: int = 4096) -> ModelShape:
    """Some of a catalog model's layers, each as published (its heads, window, FFN width, kind), with a small
    vocabulary: the file tests exactly the per-layer structure the catalog plans with."""
    s = find_model(model_id).shape
    pick = list(layers)

    def per_layer(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(values[i] for i in pick) if values else ()

    if s.kv_layers and any(a >= s.kv_layers > b for a, b in itertools.pairwise(pick)):
        raise ValueError("layers that own a cache must come before those reusing one")
    return replace(
        s,
        n_layer=len(pick),
        n_vocab=n_vocab,
        n_head_kv=per_layer(s.n_head_kv),
        swa_layers=per_layer(s.swa_layers),
        recurrent_layers=per_layer(s.recurrent_layers),
        ff_layers=per_layer(s.ff_layers),
        indexer_layers=per_layer(s.indexer_layers),
        kv_layers=sum(1 for i in pick if i < s.kv_layers),
    )


# Qwen3.5-9B's first 8 layers (2 with attention) and Qwen3.5-35B-A3B's first 4 (1 with attention)
QWEN35 = catalog_layers("qwen3.5:9b", range(8))
QWEN35MOE = catalog_layers("qwen3.5:35b-a3b", range(4))
# Qwen3-Coder-Next's layer sizes (Qwen/Qwen3-Coder-Next config.json: hidden 2048, 512 experts, 10 used,
# moe_intermediate_size 512, shared_expert_intermediate_size 512, linear 16 key / 32 value heads x 128, conv 4,
# full_attention_interval 4); the attention heads (16 / 2 x 256) are this test's choice. 4 layers + MTP block.
QWEN3NEXT = replace(QWEN35MOE, arch="qwen3next")
# Granite 4.0 H-Small's attention and Mamba-2 sizes (ibm-granite/granite-4.0-h-small config.json: hidden 4096,
# 32 heads, 8 KV heads, mamba_d_state 128, mamba_d_conv 4, mamba_expand 2); the Mamba head count (128 = d_inner /
# 64) and one group, and a dense FFN in place of its 72 experts, are this test's choices. 4 layers, 1 attention.
GRANITE_H = ModelShape(
    arch="granitehybrid",
    n_layer=4,
    n_embd=4096,
    n_head=32,
    n_head_kv=(0, 0, 0, 8),
    key_length=128,
    value_length=128,
    n_ff=8192,
    n_vocab=4096,
    context_length=131072,
    tied_embeddings=True,
    recurrent_layers=(True, True, True, False),
    ssm_conv=4,
    ssm_inner=8192,
    ssm_state=128,
    ssm_groups=1,
    ssm_heads=128,
)
# LFM2 1.2B's first 6 layers (short convolutions with conv_L_cache 3; attention at 2 and 5, with QK norms)
LFM2 = catalog_layers("lfm2:1.2b", range(6))
# Nemotron-H's three layer kinds (Mamba-2 "M", attention "*", FFN-only "-") in the order of
# nvidia/Nemotron-H-8B-Base-8K's hybrid_override_pattern ("M-M-M-M*-..."), with its published hidden size 4096,
# ssm_state_size 128, conv_kernel 4 and expand 2; the head counts, Mamba heads/groups and FFN width are this
# test's choices. 6 layers: M - M - M *.
NEMOTRON_H = ModelShape(
    arch="nemotron_h",
    n_layer=6,
    n_embd=4096,
    n_head=32,
    n_head_kv=(0, 0, 0, 0, 0, 8),
    key_length=128,
    value_length=128,
    n_ff=16384,
    n_vocab=4096,
    context_length=8192,
    ff_layers=(0, 16384, 0, 16384, 0, 0),
    recurrent_layers=(True, False, True, False, True, False),
    ssm_conv=4,
    ssm_inner=8192,
    ssm_state=128,
    ssm_groups=8,
    ssm_heads=128,
)
# Gemma 4's E-model layout (sliding layers with 256-dim heads, full layers with 512, per-layer embeddings of
# 256, the last layers reusing the cache of the last sliding / full layer that owns one, as llama.cpp's gemma4
# loader sets up); hidden size, heads, FFN and window are this test's choices. 6 layers, 4 own a cache.
GEMMA4 = ModelShape(
    arch="gemma4",
    n_layer=6,
    n_embd=1536,
    n_head=8,
    n_head_kv=(2,) * 6,
    key_length=512,
    value_length=512,
    n_ff=6144,
    n_vocab=4096,
    context_length=131072,
    tied_embeddings=True,
    qk_norm=True,
    sliding_window=512,
    swa_layers=(True, False, True, False, True, False),
    swa_key_length=256,
    swa_value_length=256,
    kv_layers=4,
    per_layer_embd=256,
)
# Gemma 4 26B-A4B's first 6 layers: 5 sliding (8 KV heads x 256) and 1 full (2 KV heads x 512, no V
# projection: V is K, still cached), a dense FFN of 2112 beside 128 experts of 704, 8 used.
GEMMA4_MOE = catalog_layers("gemma4:26b", range(6))
# Gemma 4 E2B's layers 10-19: the last 5 layers that own a cache and the first 5 that reuse one (a sliding and a
# full layer among each), per-layer embeddings, and the double-wide FFN of the reusing layers.
GEMMA4_E2B = catalog_layers("gemma4:e2b", range(10, 20))
# Llama 4 Scout's first 4 layers (3 chunked, 1 full), every one MoE with a shared expert. The file has no
# attention.sliding_window key, as the converter writes it: llama.cpp then attends within 8192-token chunks.
LLAMA4 = catalog_layers("llama4:scout", range(4))
# Ministral 3 3B's first 3 layers, with its yarn / attention-temperature keys.
MISTRAL3 = catalog_layers("ministral-3:3b", range(3))
# Nemotron 3 Nano 30B-A3B's layers 0-2 and 5-7: M E M * E M (Mamba-2, MoE with gateless experts and a shared
# expert, attention).
NEMOTRON_H_MOE = catalog_layers("nemotron-3-nano:30b", [0, 1, 2, 5, 6, 7])
# GLM-4.7's first 4 layers (glm4moe): 3 dense, then a MoE layer of 160 experts with a shared expert; Q/K/V biases
# and Q/K norms; the file keeps the MTP layer (blk.4) that llama.cpp skips.
GLM4MOE = catalog_layers("glm-4.7:355b-a32b", range(4))
# MiniMax-M2.7's first 2 layers (minimax-m2): whole-width Q/K norms, 256 experts of 1536, no shared expert.
MINIMAX_M2 = catalog_layers("minimax-m2.7:229b-a10b", range(2))
# DeepSeek-V3.1's layer 0 (dense) and layer 3 (its first MoE layer: 256 experts and a shared expert) with multi-head
# latent attention (deepseek2, MLA: q_a/q_b, kv_a_mqa, k_b/v_b), and the MTP layer llama.cpp skips.
DEEPSEEK2 = replace(catalog_layers("deepseek-v3.1:671b", [0, 3]), n_dense_lead=1)
# Mistral Small 4's first 2 layers (mistral4: deepseek2's MLA layer with its own sizes, q_lora 1024, kv_lora 256,
# 64 + 64 / 128-dim heads), both MoE: 128 experts of 2048 with gate and up fused (ffn_gate_up_exps), no selection
# bias (softmax routing), a shared expert; yarn keys as conversion/mistral3.py writes them. No MTP block.
MISTRAL4 = catalog_layers("mistral-small4:119b", range(2))
# GLM-5.2's layers 2 (dense, running its own lightning indexer) and 3 (its first MoE layer: 256 experts with a
# selection bias and a shared expert; an IndexShare "shared" layer, reusing layer 2's top-k, without indexer
# tensors or indexer keys), glm-dsa: deepseek2's MLA with 64 heads of 192 + 64 / 256 and the indexer's 32 heads of
# 128; attention.indexer.types written as conversion/glm.py writes the config's indexer_types. No MTP block.
GLM_DSA = replace(catalog_layers("glm-5.2:744b-a40b", [2, 3]), n_dense_lead=1)
# the presets whose files keep the multi-token-prediction block the converters write (not loaded by llama.cpp)
MTP_PRESETS = frozenset({"qwen35", "qwen35moe", "qwen3next", "glm4moe", "deepseek2"})
PRESETS = {
    "qwen35": QWEN35,
    "qwen35moe": QWEN35MOE,
    "qwen3next": QWEN3NEXT,
    "granitehybrid": GRANITE_H,
    "lfm2": LFM2,
    "nemotron_h": NEMOTRON_H,
    "nemotron_h_moe": NEMOTRON_H_MOE,
    "gemma4": GEMMA4,
    "gemma4moe": GEMMA4_MOE,
    "gemma4e2b": GEMMA4_E2B,
    "llama4": LLAMA4,
    "mistral3": MISTRAL3,
    "glm4moe": GLM4MOE,
    "minimax_m2": MINIMAX_M2,
    "deepseek2": DEEPSEEK2,
    "mistral4": MISTRAL4,
    "glm_dsa": GLM_DSA,
}


def mtp_tensors(shape: ModelShape, quant: str) -> list[Tensor]:
    """Qwen3.5's MTP block as the converter writes it (llama_model_qwen35::load_block_mtp), at blk.{n_layer}."""
    attn = replace(shape, n_layer=shape.n_layer + 1, recurrent_layers=(*shape.recurrent_layers, False))
    full = rebuild(attn, quant)
    p = f"blk.{shape.n_layer}."
    out = [t for t in full.tensors if t.name.startswith(p)]
    e, f16 = shape.n_embd, "F16" if quant == "F16" else "Q8_0"
    out += [
        Tensor(p + "nextn.eh_proj.weight", (2 * e, e), f16),
        Tensor(p + "nextn.enorm.weight", (e,), "F32"),
        Tensor(p + "nextn.hnorm.weight", (e,), "F32"),
        Tensor(p + "nextn.shared_head_norm.weight", (e,), "F32"),
    ]
    return out


def _keys(w: gguf.GGUFWriter, s: ModelShape, n_blocks: int, nextn: int) -> None:
    a = s.arch
    w.add_uint32(f"{a}.block_count", n_blocks)
    w.add_uint32(f"{a}.context_length", s.context_length)
    w.add_uint32(f"{a}.embedding_length", s.n_embd)
    if s.ff_layers:
        w.add_array(f"{a}.feed_forward_length", list(s.ff_layers))
    else:
        w.add_uint32(f"{a}.feed_forward_length", s.n_ff)
    w.add_uint32(f"{a}.attention.head_count", s.n_head)
    # per-layer: 0 marks the layers without attention; Gemma 4's converter writes sliding / full KV heads per layer
    if a in ("granitehybrid", "lfm2", "nemotron_h", "nemotron_h_moe") or (a == "gemma4" and len(set(s.n_head_kv)) > 1):
        w.add_array(f"{a}.attention.head_count_kv", [int(k) for k in s.n_head_kv])
    else:
        w.add_uint32(f"{a}.attention.head_count_kv", s.n_head_kv[0])
    w.add_uint32(f"{a}.attention.key_length", s.key_length)
    w.add_uint32(f"{a}.attention.value_length", s.value_length)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.attention.layer_norm_epsilon", 1e-5)
    w.add_float32(f"{a}.rope.freq_base", 10000.0)
    if a == "qwen3":  # conversion/qwen.py's Qwen3Model: full rotary heads (qwen3.cpp asserts n_rot = head size)
        w.add_uint32(f"{a}.rope.dimension_count", s.key_length)
    elif a.startswith("qwen3"):
        w.add_uint32(f"{a}.rope.dimension_count", s.key_length // 4)
        if a != "qwen3next":
            w.add_array(f"{a}.rope.dimension_sections", [11, 11, 10, 0])
        w.add_uint32(f"{a}.full_attention_interval", 4)
    if s.ssm_inner:
        w.add_uint32(f"{a}.ssm.conv_kernel", s.ssm_conv)
        w.add_uint32(f"{a}.ssm.inner_size", s.ssm_inner)
        w.add_uint32(f"{a}.ssm.state_size", s.ssm_state)
        w.add_uint32(f"{a}.ssm.time_step_rank", s.ssm_heads)
        w.add_uint32(f"{a}.ssm.group_count", s.ssm_groups)
    if s.conv_cache:
        w.add_uint32(f"{a}.shortconv.l_cache", s.conv_cache)
    if s.n_expert:
        w.add_uint32(f"{a}.expert_count", s.n_expert)
        w.add_uint32(f"{a}.expert_used_count", s.n_expert_used)
        w.add_uint32(f"{a}.expert_feed_forward_length", s.expert_ff)
        if s.shared_ff and a != "llama4":  # llama4: the shared expert is as wide as a routed one (no key)
            w.add_uint32(f"{a}.expert_shared_feed_forward_length", s.shared_ff)
        if a == "nemotron_h_moe":  # conversion/nemotron.py's NemotronHModel (MoE)
            w.add_uint32(f"{a}.expert_shared_count", 1)
            w.add_bool(f"{a}.expert_weights_norm", True)
            w.add_float32(f"{a}.expert_weights_scale", 2.5)
            w.add_uint32(f"{a}.expert_group_count", 1)
    if a == "llama4":  # no attention.sliding_window: chunked attention (conversion/llama.py's Llama4Model)
        w.add_uint32(f"{a}.interleave_moe_layer_step", 1)
    if a == "mistral3":  # conversion/mistral3.py's Ministral3Model: yarn and the llama-4 attention scaling
        _yarn(w, a, factor=16.0, original=16384, log_multiplier=1.0)
        w.add_float32(f"{a}.attention.temperature_scale", 0.1)
    if nextn:
        w.add_uint32(f"{a}.nextn_predict_layers", nextn)
    if a == "gemma4":
        w.add_uint32(f"{a}.attention.sliding_window", s.sliding_window)
        w.add_array(f"{a}.attention.sliding_window_pattern", [bool(v) for v in s.swa_layers])
        w.add_uint32(f"{a}.attention.shared_kv_layers", s.n_layer - s.kv_layers if s.kv_layers else 0)
        w.add_uint32(f"{a}.attention.key_length_swa", s.swa_key_length)
        w.add_uint32(f"{a}.attention.value_length_swa", s.swa_value_length)
        w.add_uint32(f"{a}.embedding_length_per_layer_input", s.per_layer_embd)
        w.add_uint32(f"{a}.rope.dimension_count", s.key_length)  # conversion/gemma.py's rope dims
        w.add_uint32(f"{a}.rope.dimension_count_swa", s.swa_key_length)
    if a in ("glm4moe", "minimax-m2", "deepseek2", "glm-dsa"):
        _sigmoid_moe_keys(w, s)
    if s.indexer_heads:  # conversion/glm.py GlmMoeDsaModel.set_gguf_parameters
        w.add_uint32(f"{a}.attention.indexer.head_count", s.indexer_heads)
        w.add_uint32(f"{a}.attention.indexer.key_length", s.indexer_head_dim)
        w.add_uint32(f"{a}.attention.indexer.top_k", s.indexer_top_k)
        if s.indexer_layers:
            w.add_array(f"{a}.attention.indexer.types", [bool(v) for v in s.indexer_layers])
    if a == "mistral4":
        _mistral4_keys(w, s)


def _sigmoid_moe_keys(w: gguf.GGUFWriter, s: ModelShape) -> None:
    """GLM-4.5+, MiniMax-M2 and DeepSeek-V3 (conversion/glm.py, minimax.py, deepseek.py): sigmoid routing, the
    leading dense layers and shared experts, partial rotary dims, and DeepSeek's MLA ranks and head sizes."""
    a = s.arch
    w.add_uint32(f"{a}.expert_gating_func", 2)  # LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID
    if a == "minimax-m2":
        w.add_uint32(f"{a}.rope.dimension_count", s.key_length // 2)  # rotary_dim 64 of 128
        return
    w.add_uint32(f"{a}.leading_dense_block_count", s.n_dense_lead)
    w.add_uint32(f"{a}.expert_shared_count", s.shared_ff // s.expert_ff)
    w.add_float32(f"{a}.expert_weights_scale", 2.5)
    w.add_bool(f"{a}.expert_weights_norm", True)
    if a == "glm4moe":
        w.add_uint32(f"{a}.rope.dimension_count", s.key_length // 2)  # partial_rotary_factor 0.5
    else:  # deepseek2, glm-dsa: the cached latent is key_length (rank + rope) wide; the per-head sizes after
        # decompression
        w.add_uint32(f"{a}.rope.dimension_count", s.mla_rope_dim)
        w.add_uint32(f"{a}.attention.q_lora_rank", s.mla_q_lora_rank)
        w.add_uint32(f"{a}.attention.kv_lora_rank", s.mla_kv_lora_rank)
        w.add_uint32(f"{a}.attention.key_length_mla", s.mla_key_length)
        w.add_uint32(f"{a}.attention.value_length_mla", s.mla_value_length)


def _mistral4_keys(w: gguf.GGUFWriter, s: ModelShape) -> None:
    """Mistral Small 4 (conversion/mistral3.py's Mistral4Model, DeepseekV2Model.set_gguf_parameters on
    Mistral4Config): no expert_gating_func (the config has no scoring_func: the loader's softmax default), no
    leading dense layers, one shared expert, routed_scaling_factor 1.0, norm_topk_prob, MLA ranks and head sizes,
    and the yarn rope scaling (factor 128 over 8192; yarn_log_multiplier 0.1 x mscale_all_dim 1.0)."""
    a = s.arch
    w.add_uint32(f"{a}.vocab_size", s.n_vocab)
    w.add_uint32(f"{a}.leading_dense_block_count", s.n_dense_lead)
    w.add_uint32(f"{a}.expert_shared_count", s.shared_ff // s.expert_ff)
    w.add_float32(f"{a}.expert_weights_scale", 1.0)
    w.add_bool(f"{a}.expert_weights_norm", True)
    w.add_uint32(f"{a}.rope.dimension_count", s.mla_rope_dim)
    w.add_uint32(f"{a}.attention.q_lora_rank", s.mla_q_lora_rank)
    w.add_uint32(f"{a}.attention.kv_lora_rank", s.mla_kv_lora_rank)
    w.add_uint32(f"{a}.attention.key_length_mla", s.mla_key_length)
    w.add_uint32(f"{a}.attention.value_length_mla", s.mla_value_length)
    _yarn(w, a, factor=128.0, original=8192, log_multiplier=0.1)


def _yarn(w: gguf.GGUFWriter, a: str, *, factor: float, original: int, log_multiplier: float) -> None:
    """The yarn rope keys the Mistral converters write (beta fast 32, slow 1)."""
    w.add_string(f"{a}.rope.scaling.type", "yarn")
    w.add_float32(f"{a}.rope.scaling.factor", factor)
    w.add_uint32(f"{a}.rope.scaling.original_context_length", original)
    w.add_float32(f"{a}.rope.scaling.yarn_beta_fast", 32.0)
    w.add_float32(f"{a}.rope.scaling.yarn_beta_slow", 1.0)
    w.add_float32(f"{a}.rope.scaling.yarn_log_multiplier", log_multiplier)


def write_hybrid(
    path: Path, shape: ModelShape, quant: str, *, mtp: bool = False, name: str = "", chat_template: str = ""
) -> Path:
    """A sparse GGUF of `shape` at `quant` (+ Qwen3.5's MTP block when `mtp`), loadable by llama.cpp; `name` and
    `chat_template` as a published file would carry them (scripts/readme_samples.py)."""
    tensors = list(rebuild(shape, quant).tensors)
    if mtp:
        tensors += mtp_tensors(shape, quant)
    w = gguf.GGUFWriter(path, arch=shape.arch)
    w.add_name(name or f"ollama-fit sparse {shape.arch}")
    if chat_template:
        w.add_chat_template(chat_template)
    w.add_file_type(LABEL_TO_FTYPE[quant])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _keys(w, shape, shape.n_layer + (1 if mtp else 0), 1 if mtp else 0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([f"<t{i}>" for i in range(shape.n_vocab)])
    w.add_token_types([1] * shape.n_vocab)
    w.add_token_merges(["< t", "<t 0"])
    w.add_eos_token_id(0)
    w.add_bos_token_id(0)
    return finish_sparse(w, tensors, path)


def preset_specs(folder: Path) -> dict[str, ModelSpec]:
    """Every preset written at Q4_K_M (those of MTP_PRESETS with their MTP block) and read back as llama.cpp will."""
    from ollama_fit.model.gguf import read_local_header, spec_from_header

    out = {}
    for name, shape in PRESETS.items():
        path = write_hybrid(folder / f"{name}.gguf", shape, "Q4_K_M", mtp=name in MTP_PRESETS)
        out[name] = spec_from_header(read_local_header(path), path.stat().st_size)
    return out
