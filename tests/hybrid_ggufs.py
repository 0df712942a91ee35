"""GGUF files of the hybrid architectures, loadable by the real llama.cpp (tensor data left sparse: zeros).

The tensor tables are what llama-quantize makes of the shapes (spec.rebuild), written with the keys each
architecture's load_arch_hparams reads (llama.cpp b11434, src/models/*.cpp). Qwen3.5 files can carry the
multi-token-prediction block recent converters keep (`nextn_predict_layers`, tensors blk.{n_layer}.*), which
llama.cpp does not load by default.

The presets keep each architecture's per-layer structure as published (hidden size, heads, head dims, SSM /
convolution sizes, FFN widths: see profiles/catalog.toml for the sources) with fewer layers and a small
vocabulary, so a file is a few hundred MB of sparse data that loads in seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np

from ollama_fit.gguf_header import FILE_TYPES, read_header, read_local_header, tensor_nbytes
from ollama_fit.quants import GGML_TYPES
from ollama_fit.spec import ModelShape, Tensor, rebuild

LABEL_TO_FTYPE = {label: code for code, label in FILE_TYPES.items()}


def _pattern(n_layer: int, interval: int) -> tuple[bool, ...]:
    return tuple((i + 1) % interval != 0 for i in range(n_layer))


# Qwen3.5-9B's layer structure (Qwen/Qwen3.5-9B config.json), 8 layers (2 with attention)
QWEN35 = ModelShape(
    arch="qwen35",
    n_layer=8,
    n_embd=4096,
    n_head=16,
    n_head_kv=(4,) * 8,
    key_length=256,
    value_length=256,
    n_ff=12288,
    n_vocab=4096,
    context_length=262144,
    qk_norm=True,
    recurrent_layers=_pattern(8, 4),
    ssm_conv=4,
    ssm_inner=32 * 128,
    ssm_state=128,
    ssm_groups=16,
    ssm_heads=32,
)
# Qwen3.5-35B-A3B's layer structure (Qwen/Qwen3.5-35B-A3B config.json), 4 layers (1 with attention)
QWEN35MOE = replace(
    QWEN35,
    arch="qwen35moe",
    n_layer=4,
    n_embd=2048,
    n_head=16,
    n_head_kv=(2,) * 4,
    n_ff=0,
    n_expert=256,
    n_expert_used=8,
    expert_ff=512,
    shared_ff=512,
    recurrent_layers=_pattern(4, 4),
)
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
# LFM2's layer kinds (short convolutions with conv_L_cache 3, GQA attention with QK norms): hidden 2048, 32 heads,
# 8 KV heads, FFN 8192 (the sizes llama.cpp's lfm2 loader names 1.2B); 6 layers, attention at 2 and 5.
LFM2 = ModelShape(
    arch="lfm2",
    n_layer=6,
    n_embd=2048,
    n_head=32,
    n_head_kv=(0, 0, 8, 0, 0, 8),
    key_length=64,
    value_length=64,
    n_ff=8192,
    n_vocab=4096,
    context_length=128000,
    tied_embeddings=True,
    recurrent_layers=(True, True, False, True, True, False),
    conv_cache=3,
)
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
PRESETS = {
    "qwen35": QWEN35,
    "qwen35moe": QWEN35MOE,
    "qwen3next": QWEN3NEXT,
    "granitehybrid": GRANITE_H,
    "lfm2": LFM2,
    "nemotron_h": NEMOTRON_H,
    "gemma4": GEMMA4,
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
    if a in ("granitehybrid", "lfm2", "nemotron_h"):  # per-layer: 0 marks the layers without attention
        w.add_array(f"{a}.attention.head_count_kv", [int(k) for k in s.n_head_kv])
    else:
        w.add_uint32(f"{a}.attention.head_count_kv", s.n_head_kv[0])
    w.add_uint32(f"{a}.attention.key_length", s.key_length)
    w.add_uint32(f"{a}.attention.value_length", s.value_length)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.attention.layer_norm_epsilon", 1e-5)
    w.add_float32(f"{a}.rope.freq_base", 10000.0)
    if a.startswith("qwen3"):
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
        if s.shared_ff:
            w.add_uint32(f"{a}.expert_shared_feed_forward_length", s.shared_ff)
    if nextn:
        w.add_uint32(f"{a}.nextn_predict_layers", nextn)
    if a == "gemma4":
        w.add_uint32(f"{a}.attention.sliding_window", s.sliding_window)
        w.add_array(f"{a}.attention.sliding_window_pattern", [bool(v) for v in s.swa_layers])
        w.add_uint32(f"{a}.attention.shared_kv_layers", s.n_layer - s.kv_layers)
        w.add_uint32(f"{a}.attention.key_length_swa", s.swa_key_length)
        w.add_uint32(f"{a}.attention.value_length_swa", s.swa_value_length)
        w.add_uint32(f"{a}.embedding_length_per_layer_input", s.per_layer_embd)


def write_hybrid(path: Path, shape: ModelShape, quant: str, *, mtp: bool = False) -> Path:
    """A sparse GGUF of `shape` at `quant` (+ Qwen3.5's MTP block when `mtp`), loadable by llama.cpp."""
    tensors = list(rebuild(shape, quant).tensors)
    if mtp:
        tensors += mtp_tensors(shape, quant)
    w = gguf.GGUFWriter(path, arch=shape.arch)
    w.add_name(f"ollama-fit sparse {shape.arch}")
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
    for t in tensors:
        raw = gguf.GGMLQuantizationType[t.type]
        w.add_tensor_info(t.name, tuple(reversed(t.shape)), np.dtype(np.float32), t.nbytes, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with path.open("rb") as f:

        def read(start: int, end: int) -> bytes:
            f.seek(start)
            return f.read(end - start)

        header = read_header(read, None)[0]
    end = max(t.offset + tensor_nbytes(t) for t in header.tensors)
    with path.open("r+b") as f:
        f.truncate(header.data_offset + end)  # sparse: the data reads as zeros
    read_local_header(path)
    assert all(t.type in GGML_TYPES for t in tensors)
    return path
