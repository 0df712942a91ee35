"""Separate draft GGUFs for speculative decoding (Ollama's `DRAFT` / `draft_files` layer, llama-server's
`--spec-draft-model`), loadable by the real llama.cpp b11434 (tensor data left sparse: zeros), for the target
presets of tests/hybrid_ggufs.py:

- an MTP-only drafter (`mtp_draft`): a Qwen3.5 GGUF that holds only the prediction block (`block_count` =
  n_layer + 1, `nextn_predict_layers` = 1, tensors token_embd, output_norm, output and blk.{n_layer}.*), the
  layout llama.cpp's qwen35 loader accepts without the trunk (src/models/qwen35.cpp `load_arch_tensors`:
  `mtp_only` when blk.0.attn_norm.weight is absent);
- Ollama's own MTP draft (`write_hybrid(..., mtp=True)` of the same shape): what `ollama create` makes of a
  Qwen3.5 MTP safetensors DRAFT (convert/convert_qwen3next.go `ConvertQwen35MTPDraft`, v0.32.15: the base
  model's KV and tensors plus the MTP block);
- a DFlash drafter (`dflash_draft`): arch `dflash`, a small non-causal decoder fed by the target's hidden states
  (src/models/dflash.cpp): `fc` from len(target_layers) x n_embd to n_embd, `enc.output_norm`, `output_norm` and
  per layer a Qwen3-style attention (q/k norms) and SwiGLU FFN; no token_embd / output of its own (it shares the
  target's through `ctx_other`, as z-lab's DFlash drafts do). The sizes are this test's choices: the target's
  hidden size (4096 for the Qwen3.5-9B preset), 32 heads of 128 with 8 KV heads, FFN 12288, 5 layers, 3 target
  layers, block size 16, F16 (a Qwen3-8B-sized drafter).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
from ggufs import LABEL_TO_FTYPE, finish_sparse
from hybrid_ggufs import _keys, mtp_tensors

from ollama_fit.model.spec import ModelShape, Tensor, rebuild


def _tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """The tokenizer write_hybrid gives its targets: the draft's vocabulary is the target's."""
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([f"<t{i}>" for i in range(n_vocab)])
    w.add_token_types([1] * n_vocab)
    w.add_token_merges(["< t", "<t 0"])
    w.add_eos_token_id(0)
    w.add_bos_token_id(0)


def mtp_draft_tensors(shape: ModelShape, quant: str) -> list[Tensor]:
    globals_ = [t for t in rebuild(shape, quant).tensors if t.layer is None]
    return globals_ + mtp_tensors(shape, quant)


def write_mtp_draft(path: Path, shape: ModelShape, quant: str = "Q4_K_M") -> Path:
    """An MTP-only drafter for a target of `shape` (a Qwen3.5 layout)."""
    w = gguf.GGUFWriter(path, arch=shape.arch)
    w.add_name(f"ollama-fit sparse {shape.arch} MTP draft")
    w.add_file_type(LABEL_TO_FTYPE[quant])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _keys(w, shape, shape.n_layer + 1, 1)
    _tokenizer(w, shape.n_vocab)
    return finish_sparse(w, mtp_draft_tensors(shape, quant), path)


@dataclass(frozen=True)
class DFlashShape:
    n_layer: int = 5
    n_embd: int = 4096
    n_head: int = 32
    n_head_kv: int = 8
    head_dim: int = 128
    n_ff: int = 12288
    target_layers: tuple[int, ...] = (1, 4, 7)
    block_size: int = 16
    n_vocab: int = 4096
    context_length: int = 262144


DFLASH = DFlashShape()


def dflash_tensors(d: DFlashShape, quant: str = "F16") -> list[Tensor]:
    """The tensors llama_model_dflash::load_arch_tensors creates (the plain, not DSpark / DFlash2, layout)."""
    e, q, kv = d.n_embd, d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    out = [
        Tensor("fc.weight", (len(d.target_layers) * e, e), quant),
        Tensor("enc.output_norm.weight", (e,), "F32"),
        Tensor("output_norm.weight", (e,), "F32"),
    ]
    for i in range(d.n_layer):
        p = f"blk.{i}."
        out += [
            Tensor(p + "attn_norm.weight", (e,), "F32"),
            Tensor(p + "attn_q.weight", (e, q), quant),
            Tensor(p + "attn_k.weight", (e, kv), quant),
            Tensor(p + "attn_v.weight", (e, kv), quant),
            Tensor(p + "attn_output.weight", (q, e), quant),
            Tensor(p + "attn_q_norm.weight", (d.head_dim,), "F32"),
            Tensor(p + "attn_k_norm.weight", (d.head_dim,), "F32"),
            Tensor(p + "ffn_norm.weight", (e,), "F32"),
            Tensor(p + "ffn_gate.weight", (e, d.n_ff), quant),
            Tensor(p + "ffn_up.weight", (e, d.n_ff), quant),
            Tensor(p + "ffn_down.weight", (d.n_ff, e), quant),
        ]
    return out


def write_dflash_draft(path: Path, d: DFlashShape = DFLASH, quant: str = "F16") -> Path:
    """A DFlash drafter with the keys conversion/qwen.py's DFlashModel writes (Qwen3's, plus block_size and
    target_layers)."""
    a = "dflash"
    w = gguf.GGUFWriter(path, arch=a)
    w.add_name("ollama-fit sparse DFlash draft")
    w.add_file_type(LABEL_TO_FTYPE[quant])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_uint32(f"{a}.block_count", d.n_layer)
    w.add_uint32(f"{a}.context_length", d.context_length)
    w.add_uint32(f"{a}.embedding_length", d.n_embd)
    w.add_uint32(f"{a}.feed_forward_length", d.n_ff)
    w.add_uint32(f"{a}.attention.head_count", d.n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", d.n_head_kv)
    w.add_uint32(f"{a}.attention.key_length", d.head_dim)
    w.add_uint32(f"{a}.attention.value_length", d.head_dim)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{a}.rope.freq_base", 1000000.0)
    w.add_uint32(f"{a}.block_size", d.block_size)
    w.add_array(f"{a}.target_layers", list(d.target_layers))
    _tokenizer(w, d.n_vocab)
    return finish_sparse(w, dflash_tensors(d, quant), path)
