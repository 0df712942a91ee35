"""Cross-checks of a GGUF header's hyper-parameters against its own tensor table, before any per-layer work.

A header is untrusted: `block_count = 2^31` in a 192-byte file must not make us build 2^31 of anything,
and values that contradict the tensors (a block_count of 1000 over 18 layers of weights, head_count_kv 0
beside K projections) are refused as llama.cpp refuses them, naming what disagrees. The checks hold for
every architecture: hybrid and recurrent models have layers without attention tensors, some layers of a
model may use other head sizes, and MoE, MLA and fused-QKV models name their tensors differently, so only
facts every llama.cpp architecture shares are enforced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ollama_fit.errors import BadModelFile
from ollama_fit.model.gguf.reader import ArrayInfo, GGUFHeader, TensorInfo

MAX_LAYERS = 4096  # the deepest published models have about 200 layers
UINT32 = 2**32 - 1  # llama.cpp keeps these hyper-parameters as uint32
# {arch}.KEY hyper-parameters read as counts: integers, one value or one per layer
COUNT_KEYS = (
    "block_count",
    "embedding_length",
    "context_length",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.key_length_swa",
    "attention.value_length_swa",
    "attention.sliding_window",
    "attention.kv_lora_rank",
    "rope.dimension_count",
    "expert_count",
    "expert_used_count",
    "expert_feed_forward_length",
    "vocab_size",
    "ssm.conv_kernel",
    "ssm.inner_size",
    "ssm.state_size",
    "ssm.group_count",
)
PER_LAYER_KEYS = ("feed_forward_length", "attention.head_count", "attention.head_count_kv")
# counts that size a tensor (or a part of one) can exceed no tensor dimension; these need not: an MoE model
# keeps the dense feed_forward_length of its family with no dense FFN tensor (Qwen3-30B-A3B: 6144)
UNBOUNDED_BY_TENSORS = ("block_count", "context_length", "attention.sliding_window", "feed_forward_length")
_LAYER = re.compile(r"^blk\.([0-9]{1,9})\.")
_DAMAGED = "the file is damaged or was edited; download it again"


def _bad(message: str) -> BadModelFile:
    return BadModelFile(message, hint=_DAMAGED)


def _values(value: Any) -> Iterable[Any]:
    return value if isinstance(value, tuple) else (value,)


def _check_counts(h: GGUFHeader) -> None:
    """Every count is an integer in llama.cpp's uint32 range (a per-layer array: every entry)."""
    for key in COUNT_KEYS:
        value = h.arch(key)
        if value is None:
            continue
        name = f"{h.architecture}.{key}"
        if isinstance(value, ArrayInfo):
            raise _bad(f"{name} is an array of {value.count} entries, more than any model has layers")
        if isinstance(value, tuple) and key not in PER_LAYER_KEYS:
            raise _bad(f"{name} is an array, not one value")
        for v in _values(value):
            if isinstance(v, bool) or not isinstance(v, int):
                raise _bad(f"{name} is {v!r}, not a count")
            if not 0 <= v <= UINT32:
                raise _bad(f"{name} = {v} is out of range")


def _required(h: GGUFHeader, key: str) -> int:
    value = h.arch(key)
    if not isinstance(value, int):  # _check_counts refused every other type, so it is missing or an array
        raise BadModelFile(
            f"the GGUF lacks {h.architecture}.{key}" if value is None else f"{h.architecture}.{key} is not one value",
            hint="is this a language model (not a vision projector or an adapter)?",
        )
    return value


def _per_layer(h: GGUFHeader, key: str, n_layer: int, default: int) -> tuple[int, ...]:
    value = h.arch(key)
    if value is None:
        return (default,) * n_layer
    if isinstance(value, tuple):
        if len(value) != n_layer:
            raise _bad(f"{h.architecture}.{key} has {len(value)} entries for block_count {n_layer}")
        return value
    return (value,) * n_layer


def _layers(tensors: tuple[TensorInfo, ...]) -> dict[int, set[str]]:
    """Layer index -> the names of its tensors; malformed or repeated names are refused (llama.cpp does)."""
    seen: set[str] = set()
    layers: dict[int, set[str]] = {}
    for t in tensors:
        if t.name in seen:
            raise _bad(f"tensor {t.name!r} appears twice in the tensor table")
        seen.add(t.name)
        if t.name.startswith("blk."):
            m = _LAYER.match(t.name)
            if m is None:
                raise _bad(f"tensor {t.name!r} names no layer number")
            layers.setdefault(int(m.group(1)), set()).add(t.name)
    return layers


def _check_layers(h: GGUFHeader, n_layer: int, layers: dict[int, set[str]]) -> None:
    """block_count agrees with the blk.N tensors: none beyond it, and every layer has weights (a layer of
    neither attention nor FFN, head_count and feed_forward_length both 0, may have none: DeciLM)."""
    if not layers:
        return  # an architecture that names its layers otherwise: bounded by the tensor count alone
    top = max(layers)
    if top >= n_layer:
        raise _bad(f"{h.architecture}.block_count is {n_layer} but the tensor table has layer {top} (blk.{top}.*)")
    heads = _per_layer(h, "attention.head_count", n_layer, 1)
    ffs = _per_layer(h, "feed_forward_length", n_layer, 1)
    empty = [i for i in range(n_layer) if i not in layers and (heads[i] or ffs[i])]
    if empty:
        raise _bad(
            f"{h.architecture}.block_count is {n_layer} but layer {empty[0]} has no tensors "
            f"(the tensor table holds {len(layers)} layers)"
        )


def _check_embedding(h: GGUFHeader, n_embd: int) -> None:
    if n_embd < 1:
        raise _bad(f"{h.architecture}.embedding_length is {n_embd}")
    embd = next((t for t in h.tensors if t.name == "token_embd.weight"), None)
    if embd is not None and len(embd.shape) >= 2 and embd.shape[0] != n_embd:
        raise _bad(f"{h.architecture}.embedding_length is {n_embd} but token_embd.weight has rows of {embd.shape[0]}")


def _check_sizes(h: GGUFHeader, largest: int) -> None:
    for key in COUNT_KEYS:
        if key not in UNBOUNDED_BY_TENSORS:
            value = max(_values(h.arch(key, 0)), default=0)
            if value > largest:
                raise _bad(f"{h.architecture}.{key} is {value}, larger than any tensor dimension ({largest})")


def _check_heads(h: GGUFHeader, n_layer: int) -> tuple[int, ...]:
    n_head = max(_per_layer(h, "attention.head_count", n_layer, 0))
    kv = _per_layer(h, "attention.head_count_kv", n_layer, n_head)
    if n_head and max(kv) > n_head:
        raise _bad(f"{h.architecture}.attention.head_count_kv is {max(kv)}, more than head_count {n_head}")
    return kv


def _check_kv_heads(h: GGUFHeader, n_layer: int, n_embd: int, kv: tuple[int, ...]) -> None:
    """K projections (blk.N.attn_k.weight, [n_embd, kv heads x head size]) agree with head_count_kv."""
    n_head = max(_per_layer(h, "attention.head_count", n_layer, 0)) or 1
    sizes = {h.arch("attention.key_length", n_embd // n_head), h.arch("attention.key_length_swa")} - {None, 0}
    k_proj = [(t, int(t.name.split(".")[1])) for t in h.tensors if _is_k_proj(t.name)]
    if k_proj and not any(kv):
        raise _bad(f"{h.architecture}.attention.head_count_kv is 0 on every layer, yet the file has K projections")
    for t, layer in k_proj:
        heads = kv[layer]
        width = t.shape[1] if len(t.shape) >= 2 else 0
        if heads and not any(heads * size == width for size in sizes):
            size = min(sizes, default=0)
            raise _bad(
                f"{h.architecture}.attention.head_count_kv is {heads} for layer {layer}: {heads} x {size} "
                f"does not match {t.name}, {width} wide"
            )


def _is_k_proj(name: str) -> bool:
    return name.startswith("blk.") and name.endswith(".attn_k.weight") and name.count(".") == 3


def _check_experts(h: GGUFHeader) -> None:
    n_expert, used = int(h.arch("expert_count", 0) or 0), int(h.arch("expert_used_count", 0) or 0)
    if used > n_expert and n_expert:
        raise _bad(f"{h.architecture}.expert_used_count is {used}, more than expert_count {n_expert}")
    for t in h.tensors:  # the router: [n_embd, n_expert]
        if t.name.endswith(".ffn_gate_inp.weight") and len(t.shape) >= 2 and t.shape[1] != n_expert:
            raise _bad(f"{h.architecture}.expert_count is {n_expert} but {t.name} routes to {t.shape[1]} experts")


def check_header(h: GGUFHeader) -> None:
    """Refuse (BadModelFile, exit 8) a header whose hyper-parameters its tensor table cannot back.

    Runs before anything is built per layer: block_count is bounded by the tensor count first."""
    if not h.tensors:
        raise BadModelFile("the GGUF has no tensors", hint="is this a model file (not a vocabulary-only GGUF)?")
    _check_counts(h)
    n_layer = _required(h, "block_count")
    n_embd = _required(h, "embedding_length")
    if n_layer < 1:
        raise _bad(f"{h.architecture}.block_count is 0: a model has at least one layer")
    if n_layer > min(len(h.tensors), MAX_LAYERS):
        raise _bad(
            f"{h.architecture}.block_count is {n_layer} but the file has {len(h.tensors)} tensors"
            if n_layer > len(h.tensors)
            else f"{h.architecture}.block_count is {n_layer}, more than any model has ({MAX_LAYERS})"
        )
    largest = max(d for t in h.tensors for d in t.shape)
    layers = _layers(h.tensors)
    _check_layers(h, n_layer, layers)
    _check_embedding(h, n_embd)
    _check_sizes(h, largest)
    kv = _check_heads(h, n_layer)
    _check_kv_heads(h, n_layer, n_embd, kv)
    _check_experts(h)
