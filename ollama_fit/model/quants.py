"""GGML tensor types, the quantization mixtures llama-quantize applies, and quant labels.

Type sizes are the block layouts of ggml-common.h; the mixture rules follow llama_tensor_get_type() in
llama.cpp's src/llama-quant.cpp (see docs/estimator.md). Quality figures live in profiles/quants.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ollama_fit.errors import InvalidInput
from ollama_fit.profiles import load_profile, require


@dataclass(frozen=True)
class GgmlType:
    """A ggml tensor type and its block layout (ggml-common.h)."""

    name: str
    id: int
    block_size: int  # elements per block
    type_size: int  # bytes per block

    def nbytes(self, n_elements: int) -> int:
        # ggml_row_size: whole blocks only (rows are always a multiple of the block size)
        return n_elements // self.block_size * self.type_size


_TYPES = [
    ("F32", 0, 1, 4),
    ("F16", 1, 1, 2),
    ("Q4_0", 2, 32, 18),
    ("Q4_1", 3, 32, 20),
    ("Q5_0", 6, 32, 22),
    ("Q5_1", 7, 32, 24),
    ("Q8_0", 8, 32, 34),
    ("Q8_1", 9, 32, 36),
    ("Q2_K", 10, 256, 84),
    ("Q3_K", 11, 256, 110),
    ("Q4_K", 12, 256, 144),
    ("Q5_K", 13, 256, 176),
    ("Q6_K", 14, 256, 210),
    ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66),
    ("IQ2_XS", 17, 256, 74),
    ("IQ3_XXS", 18, 256, 98),
    ("IQ1_S", 19, 256, 50),
    ("IQ4_NL", 20, 32, 18),
    ("IQ3_S", 21, 256, 110),
    ("IQ2_S", 22, 256, 82),
    ("IQ4_XS", 23, 256, 136),
    ("I8", 24, 1, 1),
    ("I16", 25, 1, 2),
    ("I32", 26, 1, 4),
    ("I64", 27, 1, 8),
    ("F64", 28, 1, 8),
    ("IQ1_M", 29, 256, 56),
    ("BF16", 30, 1, 2),
    ("TQ1_0", 34, 256, 54),
    ("TQ2_0", 35, 256, 66),
    ("MXFP4", 39, 32, 17),
    ("NVFP4", 40, 64, 36),
    ("Q1_0", 41, 128, 18),
]
GGML_TYPES: dict[str, GgmlType] = {n: GgmlType(n, i, b, s) for n, i, b, s in _TYPES}
GGML_BY_ID: dict[int, GgmlType] = {t.id: t for t in GGML_TYPES.values()}

# KV cache element sizes (bytes per element, block scales included)
KV_TYPES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}

# the ggml type used for most weights of each quant label (llama-quantize's ftype)
BASE_TYPE = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "Q8_0": "Q8_0",
    "Q6_K": "Q6_K",
    "Q5_K_M": "Q5_K",
    "Q5_K_S": "Q5_K",
    "Q5_0": "Q5_0",
    "Q4_K_M": "Q4_K",
    "Q4_K_S": "Q4_K",
    "Q4_0": "Q4_0",
    "IQ4_XS": "IQ4_XS",
    "IQ4_NL": "IQ4_NL",
    "Q3_K_L": "Q3_K",
    "Q3_K_M": "Q3_K",
    "Q3_K_S": "Q3_K",
    "Q2_K": "Q2_K",
    "MXFP4": "MXFP4",
}
_FALLBACK_32 = {
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
    "Q2_K": "IQ4_NL",
    "Q3_K": "IQ4_NL",
    "IQ4_XS": "IQ4_NL",
    "IQ3_S": "IQ4_NL",
    "IQ2_XS": "IQ4_NL",
    "IQ2_S": "IQ4_NL",
}


# llama-quant.cpp's TOKEN_EMBD category (Gemma's per-layer embeddings count as token embeddings)
_TOKEN_EMBD = ("token_embd.weight", "per_layer_token_embd.weight")
# llama-quant.cpp's tensor_allows_quantization exclusions that matter for the architectures we rebuild
_NEVER_QUANTIZED = ("ssm_conv1d", "shortconv.conv.weight")
# kept at the converter's 16-bit type (conversion/base.py forces only 1-D tensors, norms and a short list to F32)
_KEPT_16BIT = ("per_layer_model_proj",)


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of the layers that get a bigger type (about half of them)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass(frozen=True)
class MixContext:
    """What llama_tensor_get_type looks at besides the tensor itself."""

    quant: str
    arch: str
    n_layer: int
    n_gqa: int  # n_head / n_head_kv
    n_expert: int = 0
    is_70b: bool = False
    tied: bool = False  # no output.weight: token_embd doubles as the output layer
    hybrid: bool = False  # recurrent layers present: their fused attn_qkv counts as an attn_v-like tensor
    n_attn_v: int = 0  # attn_v-like tensors in the file (llama.cpp's n_attention_wv); 0: n_layer


def _attn_v(ctx: MixContext, i: int, n: int) -> str:
    q = ctx.quant
    if ctx.n_expert == 8:
        return "Q8_0"
    chosen = {
        "Q2_K": "Q4_K" if ctx.n_gqa >= 4 else "Q3_K",
        "Q3_K_M": "Q5_K" if i < 2 else "Q4_K",
        "Q3_K_L": "Q5_K",
        "Q4_K_S": "Q5_K" if i < 4 else "Q4_K",
        "Q4_K_M": "Q6_K" if use_more_bits(i, n) else "Q4_K",
        "Q5_K_M": "Q6_K" if use_more_bits(i, n) else "Q5_K",
        "IQ4_XS": "Q5_K" if ctx.n_gqa >= 4 else "IQ4_XS",
    }.get(q, BASE_TYPE[q])
    if ctx.is_70b and chosen in ("Q3_K", "Q4_K"):
        chosen = "Q5_K"  # 70B: attn_v is 8x smaller than attn_q, so Q5_K costs almost nothing
    return chosen


def is_attn_v(name: str, ctx: MixContext) -> bool:
    """llama.cpp's category_is_attn_v: attn_v, and (as b11434 quantizes them) the hybrids' fused attn_qkv."""
    return "attn_v.weight" in name or (ctx.hybrid and "attn_qkv.weight" in name)


def _ffn_down(ctx: MixContext, i: int, n: int) -> str:
    q = ctx.quant
    return {
        "Q2_K": "Q3_K",
        "Q3_K_M": "Q5_K" if i < n // 16 else "Q4_K",
        "Q3_K_L": "Q5_K",
        "Q4_K_S": "Q5_K" if i < n // 8 else "Q4_K",
        "Q4_K_M": "Q6_K" if use_more_bits(i, n) else "Q4_K",
        "Q5_K_M": "Q6_K" if use_more_bits(i, n) else "Q5_K",
    }.get(q, BASE_TYPE[q])


def _attn_output(ctx: MixContext) -> str:
    q = ctx.quant
    if ctx.n_expert == 8 and q in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
        return "Q5_K"
    return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(q, BASE_TYPE[q])


def _attn_qkv(ctx: MixContext) -> str:
    q = ctx.quant
    return {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}.get(q, BASE_TYPE[q])


def _output(ctx: MixContext, row: int) -> str:
    base = BASE_TYPE[ctx.quant]
    if base in ("F32", "F16", "BF16", "Q8_0"):
        return base
    if ctx.quant == "MXFP4" or row % 256 != 0 or ctx.arch == "falcon":
        return "Q8_0"
    return "Q6_K"


def tensor_type(name: str, shape: tuple[int, ...], ctx: MixContext, counters: dict[str, int]) -> str:
    """The ggml type llama-quantize gives one tensor; `counters` tracks per-kind layer indices."""
    base = BASE_TYPE[ctx.quant]
    if len(shape) < 2 or not name.endswith("weight") or "norm" in name or "ffn_gate_inp" in name:
        return "F32"
    if any(k in name for k in _NEVER_QUANTIZED):
        return "F32"  # tensor_allows_quantization: kept as the converter wrote them (F32)
    if any(k in name for k in _KEPT_16BIT):
        return base if base in ("F32", "BF16") else "F16"
    if base in ("F32", "F16", "BF16"):
        return base
    n = ctx.n_layer
    if ctx.quant == "MXFP4":  # gpt-oss: experts in MXFP4, every other matrix Q8_0
        chosen = "MXFP4" if "_exps" in name else "Q8_0"
    elif name == "output.weight" or (name in _TOKEN_EMBD and ctx.tied):
        chosen = _output(ctx, shape[0])  # a tied file quantizes its embedding tables like the output
    elif name in _TOKEN_EMBD:
        chosen = base
    elif is_attn_v(name, ctx):
        chosen = _attn_v(ctx, counters.get("attn_v", 0), ctx.n_attn_v or n)
        counters["attn_v"] = counters.get("attn_v", 0) + 1
    elif "attn_k.weight" in name and ctx.n_expert == 8:
        chosen = "Q8_0"
    elif "ffn_down" in name:
        # MoE files: the layer number comes from the name (shared and routed experts share a layer)
        index = int(name.split(".")[1]) if ctx.n_expert > 1 and name.startswith("blk.") else counters.get("ffn_down", 0)
        chosen = _ffn_down(ctx, index, n)
        counters["ffn_down"] = counters.get("ffn_down", 0) + 1
    elif "attn_output.weight" in name:
        chosen = _attn_output(ctx)
    elif "attn_qkv.weight" in name:
        chosen = _attn_qkv(ctx)
    else:
        chosen = base
    if shape[0] % GGML_TYPES[chosen].block_size != 0:
        chosen = _FALLBACK_32.get(chosen, "Q8_0")  # rows not divisible by 256 use 32-element blocks
    return chosen


# ----- quant labels, their order and their quality cost (profiles/quants.toml) -----


@dataclass(frozen=True)
class QuantInfo:
    """A quant label's rank and the quality cost the seed measurements give it."""

    label: str
    rank: int  # 0 = best quality; higher is more aggressive
    nominal_bpw: float
    quality_loss: str  # "~3-5%" from the seed measurements
    quality_loss_max_pct: float
    ppl_increase: str
    source: str  # "measured" (seed table) or "interpolated"


@cache
def quant_table() -> dict[str, QuantInfo]:
    data = load_profile("quants")
    table = {}
    for rank, entry in enumerate(data.get("quant", [])):
        where = f"quants.toml quant[{rank}]"
        label = require(entry, "label", str, where)
        if label not in BASE_TYPE:
            raise InvalidInput(f"{where}: unknown quant label {label!r}")
        table[label] = QuantInfo(
            label=label,
            rank=rank,
            nominal_bpw=float(require(entry, "bpw", int | float, where)),
            quality_loss=require(entry, "quality_loss", str, where),
            quality_loss_max_pct=float(require(entry, "quality_loss_max_pct", int | float, where)),
            ppl_increase=require(entry, "ppl_increase", str, where),
            source=require(entry, "source", str, where),
        )
    return table


def normalize_quant(label: str) -> str:
    """'q4_k_m' -> 'Q4_K_M'; unknown labels are an input error with the known ones as the hint."""
    up = label.strip().upper().replace("-", "_")
    up = {"FP16": "F16", "FP32": "F32", "MXFP4_MOE": "MXFP4"}.get(up, up)
    if up not in BASE_TYPE:
        raise InvalidInput(f"unknown quantization {label!r}", hint=f"known: {', '.join(quant_table())}")
    return up


def rank(label: str) -> int:
    return quant_table()[label].rank
