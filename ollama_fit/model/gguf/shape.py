"""From a parsed GGUF header to the model's shape and tensor table, as llama.cpp reads its hyper-parameters.

The header is checked against its own tensor table first (`checks.check_header`), so no count taken from
an untrusted file can make us build more than the file describes.
"""

from __future__ import annotations

from typing import Any

from ollama_fit.errors import BadModelFile
from ollama_fit.model.gguf.checks import check_header
from ollama_fit.model.gguf.reader import FILE_TYPES, ArrayInfo, GGUFHeader
from ollama_fit.model.spec import ModelShape, ModelSpec, Tensor

# llama_model_llama4::load_arch_hparams: 3 of every 4 layers attend within 8192-token chunks; llama.cpp sizes
# their cache like a sliding window's
LLAMA4_CHUNK = 8192
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "gpt-oss": 2, "cohere2": 4, "llama4": 4}


def _per_layer(value: Any, n: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * n
    if isinstance(value, tuple):
        if len(value) != n:
            raise BadModelFile(f"a per-layer array has {len(value)} entries for {n} layers", hint="damaged file")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _swa_layers(h: GGUFHeader, n_layer: int) -> tuple[bool, ...]:
    pattern = h.arch("attention.sliding_window_pattern")
    if isinstance(pattern, tuple):
        return tuple(bool(v) for v in pattern)[:n_layer]
    period = int(pattern) if isinstance(pattern, int) and pattern > 0 else _SWA_PERIOD.get(h.architecture, 0)
    if not period:
        return (True,) * n_layer  # a window with no pattern applies to every layer (Mistral 7B v0.1)
    return tuple(i % period < period - 1 for i in range(n_layer))


def _vocab(h: GGUFHeader, tensors: tuple[Tensor, ...]) -> int:
    tokens = h.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayInfo):
        return tokens.count
    if isinstance(tokens, tuple):
        return len(tokens)
    embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    return int(h.arch("vocab_size", embd.shape[1] if embd and len(embd.shape) > 1 else 0))


# Architectures whose memory the estimator models the way llama.cpp allocates it (llama-model.cpp's
# create_memory): a KV cache per attention layer (with its window, head counts and dims), recurrent / conv
# state per sequence for the hybrid layers. Others get exact weights and a labelled conservative bound.
STANDARD_ARCHES = frozenset(
    {
        "llama", "llama4", "mistral3", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "qwen3vl", "qwen3vlmoe",
        "gemma", "gemma2", "gemma3", "phi2", "phi3", "gpt-oss", "granite", "granitemoe", "deepseek2", "mistral4",
        "olmo2", "olmoe", "command-r", "cohere2", "starcoder2", "exaone", "exaone4", "glm4", "glm4moe",
        "smollm3", "ernie4_5", "ernie4_5-moe", "seed_oss", "stablelm", "internlm2", "minicpm", "apertus", "minimax-m2",
        "glm-dsa", "deepseek32",
    }
)  # fmt: skip
HYBRID_ARCHES = frozenset(
    {"qwen35", "qwen35moe", "qwen3next", "granitehybrid", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe"}
)
KV_SHARING_ARCHES = frozenset({"gemma4"})
MODELLED_ARCHES = STANDARD_ARCHES | HYBRID_ARCHES | KV_SHARING_ARCHES


def _count(h: GGUFHeader, key: str) -> int:
    """An optional non-negative integer hyper-parameter (0 when absent); anything else is a damaged file."""
    value = h.arch(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
        raise BadModelFile(f"{h.architecture}.{key} is {value!r}, not a count", hint="the file is damaged")
    return value


def _recurrent_layers(h: GGUFHeader, n_layer: int, kv_heads: tuple[int, ...]) -> tuple[bool, ...]:
    """Which layers keep recurrent state, by each architecture's load_arch_hparams (src/models/*.cpp)."""
    arch = h.architecture
    if arch in ("qwen35", "qwen35moe", "qwen3next"):
        marked = h.arch("attention.recurrent_layers")
        if isinstance(marked, tuple) and len(marked) >= n_layer:
            return tuple(bool(v) for v in marked[:n_layer])
        interval = _count(h, "full_attention_interval") or 4
        return tuple((i + 1) % interval != 0 for i in range(n_layer))
    if arch in ("granitehybrid", "lfm2", "lfm2moe"):
        return tuple(k == 0 for k in kv_heads)
    if arch in ("nemotron_h", "nemotron_h_moe"):  # Mamba-2 layers: no KV heads and no FFN (others are FFN-only)
        ff = _per_layer(h.arch("feed_forward_length"), n_layer + _nextn(h), 0)[:n_layer]
        return tuple(k == 0 and f == 0 for k, f in zip(kv_heads, ff, strict=True))
    return ()


# GLM-5.2's IndexShare layout, the default llama.cpp gives a glm-dsa file of 1M trained context without
# attention.indexer.types (src/models/glm-dsa.cpp GLM_5_2_DEFAULT_INDEXER_TYPES): layers 0-2 full, then one in 4
_GLM_5_2_INDEXER_TYPES = (True, True) + (True, False, False, False) * 19


def _indexer_layers(h: GGUFHeader, n_layer: int) -> tuple[bool, ...]:
    """Which layers run their own lightning indexer (llama_hparams::is_indexer_full), as load_arch_hparams sets
    it: deepseek32 every layer (src/llama-model.cpp create_memory: filter_lid applies is_indexer_full to
    glm-dsa only); glm-dsa from attention.indexer.types, else every layer below 1M trained context (GLM-5,
    5.1) and GLM-5.2's pattern from 1M (src/models/glm-dsa.cpp: is_pre_5_2 = n_ctx_train < 1048576)."""
    if h.architecture != "glm-dsa" or not _count(h, "attention.indexer.head_count"):
        return ()
    marked = h.arch("attention.indexer.types")
    if isinstance(marked, tuple) and len(marked) >= n_layer:
        return tuple(bool(v) for v in marked[:n_layer])
    if _count(h, "context_length") < 1048576:
        return ()
    return tuple(i < len(_GLM_5_2_INDEXER_TYPES) and _GLM_5_2_INDEXER_TYPES[i] for i in range(n_layer))


def _nextn(h: GGUFHeader) -> int:
    return _count(h, "nextn_predict_layers")


def _quant_label(h: GGUFHeader, tensors: tuple[Tensor, ...]) -> str:
    label = FILE_TYPES.get(h.get("general.file_type", -1))
    if label:
        return label
    weights = [t for t in tensors if len(t.shape) >= 2 and t.name.endswith("weight")]
    if not weights:
        return "unknown"
    by_type: dict[str, int] = {}
    for t in weights:
        by_type[t.type] = by_type.get(t.type, 0) + t.nbytes
    return max(by_type, key=lambda k: by_type[k])  # the type holding most bytes


def shape_from_metadata(h: GGUFHeader, tensors: tuple[Tensor, ...] = ()) -> ModelShape:
    """A model's hyper-parameters from its GGUF keys, as llama.cpp's load_arch_hparams reads them; the tensor
    table, when known, gives the vocabulary size and whether the output layer is tied. The layers of the
    multi-token-prediction block recent converters keep are not counted (n_layer excludes them)."""
    try:
        n_layer_all = int(h.arch("block_count"))
        n_embd = int(h.arch("embedding_length"))
        heads = _per_layer(h.arch("attention.head_count"), n_layer_all, 0)
    except (TypeError, ValueError):
        raise BadModelFile(
            f"the GGUF lacks {h.architecture}.block_count / embedding_length / attention.head_count",
            hint="is this a language model (not a vision projector or an adapter)?",
        ) from None
    if n_layer_all < 1:
        raise BadModelFile(f"{h.architecture}.block_count is {n_layer_all}", hint="the file is damaged")
    nextn = _nextn(h) if h.architecture in MODELLED_ARCHES else 0
    shared_kv = _count(h, "attention.shared_kv_layers")
    if nextn >= n_layer_all or shared_kv >= n_layer_all:
        raise BadModelFile(
            f"{h.architecture}: {nextn} prediction / {shared_kv} shared-cache layers of {n_layer_all}",
            hint="the file is damaged",
        )
    n_layer = n_layer_all - nextn
    n_head = max(heads) or 1
    kv_heads = _per_layer(h.arch("attention.head_count_kv"), n_layer_all, n_head)[:n_layer]
    key_length = int(h.arch("attention.key_length", n_embd // n_head))
    window = int(h.arch("attention.sliding_window", 0) or 0)
    if h.architecture == "llama4" and h.arch("attention.sliding_window") != 0:
        window = LLAMA4_CHUNK  # chunked attention of 8192 whatever the key says, unless it is 0 (turned off)
    lora = int(h.arch("attention.kv_lora_rank", 0) or 0)
    ff = h.arch("feed_forward_length", 0)
    ff_layers = _per_layer(ff, n_layer_all, 0)[:n_layer] if isinstance(ff, tuple) else ()
    return ModelShape(
        arch=h.architecture,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=kv_heads,
        key_length=key_length,
        value_length=int(h.arch("attention.value_length", key_length)),
        n_ff=max(ff) if isinstance(ff, tuple) else int(ff or 0),
        ff_layers=ff_layers,
        n_vocab=_vocab(h, tensors),
        context_length=int(h.arch("context_length", 0) or 0),
        tied_embeddings=not any(t.name == "output.weight" for t in tensors),
        sliding_window=window,
        swa_layers=_swa_layers(h, n_layer) if window else (),
        n_expert=int(h.arch("expert_count", 0) or 0),
        n_expert_used=int(h.arch("expert_used_count", 0) or 0),
        expert_ff=int(h.arch("expert_feed_forward_length", 0) or 0),
        mla_kv_lora_rank=lora,
        mla_rope_dim=int(h.arch("rope.dimension_count", 0) or 0) if lora else 0,
        mla_q_lora_rank=int(h.arch("attention.q_lora_rank", 0) or 0) if lora else 0,
        # converters that absorb the latent write the per-head key/value sizes here (older ones: key_length)
        mla_key_length=int(h.arch("attention.key_length_mla", key_length) or 0) if lora else 0,
        mla_value_length=int(h.arch("attention.value_length_mla", 0) or 0) if lora else 0,
        indexer_heads=_count(h, "attention.indexer.head_count") if lora else 0,
        indexer_head_dim=_count(h, "attention.indexer.key_length") if lora else 0,
        indexer_top_k=_count(h, "attention.indexer.top_k") if lora else 0,
        indexer_layers=_indexer_layers(h, n_layer) if lora else (),
        recurrent_layers=_recurrent_layers(h, n_layer, kv_heads),
        ssm_conv=_count(h, "ssm.conv_kernel"),
        ssm_inner=_count(h, "ssm.inner_size"),
        ssm_state=_count(h, "ssm.state_size"),
        ssm_groups=_count(h, "ssm.group_count"),
        ssm_heads=_count(h, "ssm.time_step_rank"),
        conv_cache=_count(h, "shortconv.l_cache"),
        kv_layers=n_layer_all - shared_kv if shared_kv else 0,
        swa_key_length=_count(h, "attention.key_length_swa"),
        swa_value_length=_count(h, "attention.value_length_swa"),
        per_layer_embd=_count(h, "embedding_length_per_layer_input"),
        modelled=h.architecture in MODELLED_ARCHES,
    )


def spec_from_header(h: GGUFHeader, file_bytes: int | None = None, shards: int = 1) -> ModelSpec:
    """The ModelSpec of a GGUF file: its hyper-parameters and the tensors llama.cpp allocates from it
    (the multi-token-prediction block that recent converters keep, blk.{n_layer}+, is skipped by default)."""
    check_header(h)  # before anything is built per layer: the tensor table bounds every hyper-parameter
    every = tuple(Tensor(t.name, t.shape, t.type) for t in h.tensors)
    shape = shape_from_metadata(h, every)
    # one pass over the table (a hostile header may list 10^5 tensors, nearly all in the prediction block)
    nextn = int(h.arch("block_count")) - shape.n_layer  # the prediction block's layers, not loaded
    kept: list[Tensor] = []
    skipped_list: list[Tensor] = []
    for t in every:
        (skipped_list if nextn and t.layer is not None and t.layer >= shape.n_layer else kept).append(t)
    tensors, skipped = tuple(kept), tuple(skipped_list)
    extra = {
        "chat_template": "yes" if h.get("tokenizer.chat_template") else "no",
        "name": str(h.get("general.name", "")),
        "split_count": str(h.get("split.count", shards)),
    }
    if nextn > 0:  # llama.cpp's -ngl counts these blocks though they are not loaded (placement/fit.py)
        extra["nextn_layers"] = str(nextn)
    if skipped:
        extra["skipped_tensors"] = str(len(skipped))
        extra["skipped_bytes"] = str(sum(t.nbytes for t in skipped))
    return ModelSpec(shape, tensors, _quant_label(h, tensors), exact=True, file_bytes=file_bytes, extra=extra)
