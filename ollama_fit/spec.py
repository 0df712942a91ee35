"""ModelSpec: a model's hyper-parameters and its tensor table, the input of the estimator.

A spec is either exact (the tensor table read from a GGUF header) or rebuilt from catalog shapes by
applying llama-quantize's mixture rules (`rebuild`), so estimates use real tensor bytes either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from ollama_fit.quants import GGML_TYPES, MixContext, tensor_type


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type: str  # ggml type name
    # derived once here: the planner reads them tens of thousands of times per plan
    n_elements: int = field(init=False, compare=False, repr=False)
    nbytes: int = field(init=False, compare=False, repr=False)
    layer: int | None = field(init=False, compare=False, repr=False)  # blk.N.* -> N; None for global tensors

    def __post_init__(self) -> None:
        n = 1
        for d in self.shape:
            n *= d
        object.__setattr__(self, "n_elements", n)
        object.__setattr__(self, "nbytes", GGML_TYPES[self.type].nbytes(n))
        layer = int(self.name.split(".", 2)[1]) if self.name.startswith("blk.") else None
        object.__setattr__(self, "layer", layer)


@dataclass(frozen=True)
class ModelShape:
    """Hyper-parameters: the GGUF `{arch}.*` keys, or a catalog entry's published config."""

    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer; 0 marks a layer without KV (recurrent)
    key_length: int
    value_length: int
    n_ff: int
    n_vocab: int
    context_length: int
    tied_embeddings: bool = False
    sliding_window: int = 0
    swa_layers: tuple[bool, ...] = ()  # per layer: True where attention is sliding-window
    n_expert: int = 0
    n_expert_used: int = 0
    expert_ff: int = 0
    qkv_bias: bool = False
    qk_norm: bool = False
    fused_qkv: bool = False  # phi3: one attn_qkv matrix, one ffn_up holding gate and up
    post_norms: bool = False  # gemma: norms after attention and after the FFN
    attn_extras: bool = False  # gpt-oss: output bias, attention sinks, expert and router biases
    mla_kv_lora_rank: int = 0  # DeepSeek MLA: the cache stores the compressed latent
    mla_rope_dim: int = 0
    recurrent_state_bytes: int = 0  # per sequence, all recurrent layers (F32 state)

    def kv_heads(self, layer: int) -> int:
        return self.n_head_kv[layer] if layer < len(self.n_head_kv) else self.n_head_kv[-1]

    def is_swa(self, layer: int) -> bool:
        return bool(self.sliding_window) and layer < len(self.swa_layers) and self.swa_layers[layer]


@dataclass(frozen=True)
class ModelSpec:
    shape: ModelShape
    tensors: tuple[Tensor, ...]
    quant: str  # label: Q4_K_M, Q8_0, ... (from general.file_type for a header)
    exact: bool = False  # True when the tensor table came from a real GGUF header
    file_bytes: int | None = None  # the GGUF file's size when known
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @cached_property
    def weights_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @cached_property
    def params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @cached_property
    def active_params(self) -> int:
        """Parameters read per token: all but the unused share of the routed experts."""
        if not self.shape.n_expert:
            return self.params
        expert = sum(t.n_elements for t in self.tensors if "_exps" in t.name)
        return self.params - expert + expert * self.shape.n_expert_used // self.shape.n_expert

    @cached_property
    def layer_read_ratio(self) -> float:
        """Share of the repeating layers' bytes a token reads: all of it, less the experts it does not route to."""
        total = sum(self.layer_bytes) or 1
        if not self.shape.n_expert:
            return 1.0
        expert = sum(t.nbytes for t in self.tensors if "_exps" in t.name)
        unused = expert * (1 - self.shape.n_expert_used / self.shape.n_expert)
        return (total - unused) / total

    @cached_property
    def token_embd_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.name.startswith("token_embd."))

    @cached_property
    def output_bytes(self) -> int:
        """The output layer: output.* (norm and head), plus the tied embedding's duplicate."""
        own = sum(t.nbytes for t in self.tensors if t.name.startswith("output"))
        tied = not any(t.name == "output.weight" for t in self.tensors)
        return own + (self.token_embd_bytes if tied else 0)

    @cached_property
    def layer_bytes(self) -> tuple[int, ...]:
        sizes = [0] * self.shape.n_layer
        for t in self.tensors:
            if t.layer is not None and t.layer < len(sizes):
                sizes[t.layer] += t.nbytes
        return tuple(sizes)


def _layer_tensors(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    e, hk, dk, dv = s.n_embd, s.kv_heads(i), s.key_length, s.value_length
    q_dim, k_dim, v_dim = s.n_head * dk, hk * dk, hk * dv
    p = f"blk.{i}."
    yield p + "attn_norm.weight", (e,)
    if s.fused_qkv:
        yield p + "attn_qkv.weight", (e, q_dim + k_dim + v_dim)
    else:
        yield p + "attn_q.weight", (e, q_dim)
        yield p + "attn_k.weight", (e, k_dim)
        yield p + "attn_v.weight", (e, v_dim)
    if s.qkv_bias or s.attn_extras:
        yield p + "attn_q.bias", (q_dim,)
        yield p + "attn_k.bias", (k_dim,)
        yield p + "attn_v.bias", (v_dim,)
    if s.qk_norm:
        yield p + "attn_q_norm.weight", (dk,)
        yield p + "attn_k_norm.weight", (dk,)
    yield p + "attn_output.weight", (s.n_head * dv, e)
    if s.attn_extras:
        yield p + "attn_output.bias", (e,)
        yield p + "attn_sinks.weight", (s.n_head,)
    if s.post_norms:
        yield p + "post_attention_norm.weight", (e,)
    yield p + "ffn_norm.weight", (e,)
    if s.n_expert:
        x, f = s.n_expert, s.expert_ff
        yield p + "ffn_gate_inp.weight", (e, x)
        yield p + "ffn_gate_exps.weight", (e, f, x)
        yield p + "ffn_up_exps.weight", (e, f, x)
        yield p + "ffn_down_exps.weight", (f, e, x)
        if s.attn_extras:
            yield p + "ffn_gate_inp.bias", (x,)
            yield p + "ffn_gate_exps.bias", (f, x)
            yield p + "ffn_up_exps.bias", (f, x)
            yield p + "ffn_down_exps.bias", (e, x)
    elif s.fused_qkv:
        yield p + "ffn_up.weight", (e, 2 * s.n_ff)
        yield p + "ffn_down.weight", (s.n_ff, e)
    else:
        yield p + "ffn_gate.weight", (e, s.n_ff)
        yield p + "ffn_up.weight", (e, s.n_ff)
        yield p + "ffn_down.weight", (s.n_ff, e)
    if s.post_norms:
        yield p + "post_ffw_norm.weight", (e,)


def tensor_shapes(s: ModelShape) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The tensor table convert_hf_to_gguf.py writes for these shapes, in file order."""
    yield "token_embd.weight", (s.n_embd, s.n_vocab)
    for i in range(s.n_layer):
        yield from _layer_tensors(s, i)
    yield "output_norm.weight", (s.n_embd,)
    if not s.tied_embeddings:
        yield "output.weight", (s.n_embd, s.n_vocab)


def rebuild(shape: ModelShape, quant: str) -> ModelSpec:
    """Catalog shapes + a quant label -> the tensor table llama-quantize would produce."""
    kv = max(shape.n_head_kv) or 1
    ctx = MixContext(
        quant=quant,
        arch=shape.arch,
        n_layer=shape.n_layer,
        n_gqa=shape.n_head // kv,
        n_expert=shape.n_expert,
        is_70b=shape.arch == "llama" and shape.n_layer == 80,
        tied=shape.tied_embeddings,
    )
    counters: dict[str, int] = {}
    tensors = tuple(Tensor(name, dims, tensor_type(name, dims, ctx, counters)) for name, dims in tensor_shapes(shape))
    return ModelSpec(shape=shape, tensors=tensors, quant=quant, exact=False)
