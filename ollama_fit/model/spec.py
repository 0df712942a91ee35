"""ModelSpec: a model's hyper-parameters and its tensor table, the input of the estimator.

A spec is either exact (the tensor table read from a GGUF header) or rebuilt from catalog shapes by
applying llama-quantize's mixture rules (`rebuild`), so estimates use real tensor bytes either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from math import prod

from ollama_fit.model.quants import GGML_TYPES, MixContext, is_attn_v, tensor_type
from ollama_fit.units import human

SIGMOID_MOE_ARCHS = frozenset({"glm4moe", "minimax-m2"})
# MoE layouts whose feed-forward peak keeps no n_embd-wide output per used expert (ModelSpec.ffn_floats): the
# sigmoid-routed ones, and Mistral Small 4 (mistral4, softmax-routed, fused gate/up experts: measured 3 x 4 x 2048
# floats a token over the 5 n_embd rows at -ub 512, tests/fixtures/hybrid-llama-cpu.jsonl); GLM-5.x (glm-dsa,
# sigmoid-routed like GLM-4.x: with the outputs its feed-forward would exceed the whole graph measured at 4096
# cells) and DeepSeek-V3.2 (deepseek32, the same MoE block, assumed alike)
NO_EXPERT_OUTPUT_PEAK_ARCHS = SIGMOID_MOE_ARCHS | {"mistral4", "glm-dsa", "deepseek32"}


@dataclass(frozen=True, init=False)
class Tensor:
    """One tensor of a GGUF table; its element count, bytes and layer are worked out once."""

    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type: str  # ggml type name
    # derived once here: the planner reads them tens of thousands of times per plan
    n_elements: int = field(compare=False, repr=False)
    nbytes: int = field(compare=False, repr=False)
    layer: int | None = field(compare=False, repr=False)  # blk.N.* -> N; None for global tensors

    def __init__(self, name: str, shape: tuple[int, ...], type: str) -> None:
        n = prod(shape)
        layer = int(name.split(".", 2)[1]) if name.startswith("blk.") else None
        # one write into the instance dict: a plan builds ~20,000 of these, and a frozen dataclass's
        # per-field object.__setattr__ was the largest single cost of `plan`'s start-up
        self.__dict__.update(
            name=name, shape=shape, type=type, n_elements=n, nbytes=GGML_TYPES[type].nbytes(n), layer=layer
        )


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
    shared_ff: int = 0  # shared-expert FFN width (Qwen3.5 MoE, Granite 4.0 MoE)
    ff_layers: tuple[int, ...] = ()  # per-layer FFN width where it varies (Nemotron-H: 0 = no FFN in that layer)
    qkv_bias: bool = False
    qk_norm: bool = False
    fused_qkv: bool = False  # phi3: one attn_qkv matrix, one ffn_up holding gate and up
    post_norms: bool = False  # gemma: norms after attention and after the FFN
    attn_extras: bool = False  # gpt-oss: output bias, attention sinks, expert and router biases
    mla_kv_lora_rank: int = 0  # DeepSeek MLA: the cache stores the compressed latent
    mla_rope_dim: int = 0
    # DeepSeek MLA layer tensors (deepseek2): the query's low-rank width (0: a full attn_q) and the per-head K / V
    # sizes after decompression (attention.key_length_mla = qk_nope + qk_rope, value_length_mla = v_head_dim); the
    # GGUF's key_length / value_length / head_count_kv then describe the cached latent (rank + rope, rank, 1 head)
    mla_q_lora_rank: int = 0
    mla_key_length: int = 0
    mla_value_length: int = 0
    n_dense_lead: int = 0  # MoE models whose first layers are dense (leading_dense_block_count: GLM-4.5, DeepSeek)
    # DeepSeek sparse attention (glm-dsa, deepseek32): the lightning indexer's heads and head size
    # (attention.indexer.head_count / key_length) and its top-k; per layer whether the layer runs an indexer of its
    # own ("full": its tensors and a key cache) or reuses the previous full layer's top-k ("shared", GLM-5.2's
    # IndexShare: attention.indexer.types); () with indexer_heads set: every layer is full
    indexer_heads: int = 0
    indexer_head_dim: int = 0
    indexer_top_k: int = 0
    indexer_layers: tuple[bool, ...] = ()
    # hybrid layouts (llama.cpp's llama-memory-hybrid): layers marked recurrent keep a fixed-size state per
    # sequence instead of a KV cache, sized from the SSM / short-convolution hyper-parameters below
    recurrent_layers: tuple[bool, ...] = ()
    ssm_conv: int = 0  # ssm.conv_kernel (d_conv)
    ssm_inner: int = 0  # ssm.inner_size (d_inner; delta-net: value heads x value head dim)
    ssm_state: int = 0  # ssm.state_size (d_state; delta-net: the key/value head dim)
    ssm_groups: int = 0  # ssm.group_count (n_group; delta-net: key heads)
    ssm_heads: int = 0  # ssm.time_step_rank (Mamba-2 heads; delta-net: value heads)
    conv_cache: int = 0  # shortconv.l_cache (LFM2's short convolution)
    kv_layers: int = 0  # Gemma 3n/4: only the first kv_layers layers own a KV cache, later ones reuse it (0: all)
    swa_key_length: int = 0  # Gemma 4: head dims of the sliding-window layers (0: as the others)
    swa_value_length: int = 0
    per_layer_embd: int = 0  # Gemma 4 E-models: embedding_length_per_layer_input
    k_eq_v: bool = False  # Gemma 4 26B/31B: full-attention layers have no V projection (V is K; still cached)
    # False for an architecture the estimator does not model: KV and state are then conservative bounds
    modelled: bool = True

    def ff(self, layer: int) -> int:
        """The layer's dense FFN width (Gemma 4 E2B: double-wide in the layers that reuse a cache)."""
        return self.ff_layers[layer] if layer < len(self.ff_layers) else self.n_ff

    def kv_heads(self, layer: int) -> int:
        return self.n_head_kv[layer] if layer < len(self.n_head_kv) else self.n_head_kv[-1]

    def is_swa(self, layer: int) -> bool:
        return bool(self.sliding_window) and layer < len(self.swa_layers) and self.swa_layers[layer]

    def is_recurrent(self, layer: int) -> bool:
        return layer < len(self.recurrent_layers) and self.recurrent_layers[layer]

    def has_kv(self, layer: int) -> bool:
        """llama.cpp gives this layer its own K/V tensors (not recurrent, has KV heads, does not reuse)."""
        if self.is_recurrent(layer) or not self.kv_heads(layer):
            return False
        return not self.kv_layers or layer < self.kv_layers

    def has_indexer(self, layer: int) -> bool:
        """The layer runs its own lightning indexer (llama_hparams::is_indexer_full): its indexer tensors and a
        row of indexer keys per cell (src/llama-model.cpp create_memory, filter_lid)."""
        if not self.indexer_heads:
            return False
        return not self.indexer_layers or (layer < len(self.indexer_layers) and self.indexer_layers[layer])

    def head_dims(self, layer: int) -> tuple[int, int]:
        """(key, value) head dims of a layer: llama_hparams::n_embd_head_k/v(il)."""
        if self.swa_key_length and self.is_swa(layer):
            return self.swa_key_length, self.swa_value_length or self.swa_key_length
        return self.key_length, self.value_length

    @cached_property
    def max_kv_width(self) -> int:
        """The widest layer's K + V row (n_embd_k_gqa + n_embd_v_gqa), each layer with its own heads and dims."""
        return max(self.kv_heads(i) * sum(self.head_dims(i)) for i in range(self.n_layer))

    @cached_property
    def max_v_width(self) -> int:
        """The widest layer's V row (n_embd_v_gqa): without flash attention every layer's V is padded to it."""
        return max(self.kv_heads(i) * self.head_dims(i)[1] for i in range(self.n_layer))

    @property
    def state_row(self) -> int:
        """F32 elements of one sequence's state in one recurrent layer: n_embd_r + n_embd_s (llama-hparams.cpp)."""
        if self.conv_cache:  # LFM2: only the convolution's last L-1 inputs
            return self.n_embd * (self.conv_cache - 1)
        conv = max(0, self.ssm_conv - 1) * (self.ssm_inner + 2 * self.ssm_groups * self.ssm_state)
        return conv + self.ssm_state * self.ssm_inner


@dataclass(frozen=True)
class ModelSpec:
    """A model's shapes and tensor table at one quant: the estimator's input."""

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
    def token_reads(self) -> tuple[tuple[tuple[str, int, int], ...], ...]:
        """What one generated token reads, per repeating layer and then (index n_layer) of the output layer:
        (ggml type, bytes, elements). A MoE layer reads only the share of its expert tensors the router sends
        a token to; globals loaded with layer 0's number (Gemma's per_layer_model_proj) count with layer 0; a
        tied output layer reads the whole embedding matrix; the input embeddings are one row each."""
        s = self.shape
        sums: list[dict[str, list[float]]] = [{} for _ in range(s.n_layer + 1)]

        def add(index: int, t: Tensor, share: float) -> None:
            entry = sums[index].setdefault(t.type, [0.0, 0.0])
            entry[0] += t.nbytes * share
            entry[1] += t.n_elements * share

        routed = s.n_expert_used / s.n_expert if s.n_expert else 1.0
        for t in self.tensors:
            role = tensor_role(t.name)
            if t.layer is not None and t.layer < s.n_layer:
                add(t.layer, t, routed if "_exps" in t.name else 1.0)
            elif role == "output":
                add(s.n_layer, t, 1.0)
            elif role == "layer" and t.layer is None and s.n_layer:  # globals loaded with layer 0's number
                add(0, t, 1.0)
        if self.tied:
            for t in self.tensors:
                if t.name == "token_embd.weight":
                    add(s.n_layer, t, 1.0)
        return tuple(tuple((k, int(v[0]), int(v[1])) for k, v in sorted(d.items())) for d in sums)

    @cached_property
    def tied(self) -> bool:
        """No output.weight: llama.cpp duplicates token_embd as the output layer (TENSOR_DUPLICATED)."""
        return not any(t.name == "output.weight" for t in self.tensors)

    @cached_property
    def token_embd_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors if t.name.startswith("token_embd."))

    @cached_property
    def input_bytes(self) -> int:
        """The input layer llama.cpp keeps on the CPU: token embeddings, and Gemma's per-layer embeddings."""
        return sum(t.nbytes for t in self.tensors if tensor_role(t.name) == "input")

    @cached_property
    def output_bytes(self) -> int:
        """The output layer: output.* (norm and head), plus the tied embedding's duplicate."""
        own = sum(t.nbytes for t in self.tensors if tensor_role(t.name) == "output")
        return own + (self.token_embd_bytes if self.tied else 0)

    @cached_property
    def ffn_floats(self) -> int:
        """Floats per token the widest feed-forward keeps live at once: a dense FFN's gate, up and their
        product (3 n_ff); an MoE layer's per-expert gate, up and product for each expert used (2 without a
        gate) and each expert's down projection before they are summed (measured against llama-server,
        tests/fixtures/ollama-argv-llama-cpu.jsonl). A dense FFN beside the experts (Gemma 4 MoE) counts when
        wider."""
        s = self.shape
        names = [t.name for t in self.tensors]
        dense = (
            3 * s.n_ff
            if not s.n_expert or any(n.endswith((".ffn_up.weight", ".ffn_gate.weight")) for n in names)
            else 0
        )
        if not s.n_expert:
            return dense
        gated = any("ffn_gate_exps" in n or "ffn_gate_up_exps" in n for n in names)
        # the sigmoid-routed layouts (GLM-4.x, MiniMax-M2) keep no n_embd-wide output per used expert at the
        # peak (measured: GLM-4.7 62464 floats a token, MiniMax-M2.7 52224; tests/fixtures/ollama-argv-llama-cpu)
        outputs = 0 if s.arch in NO_EXPERT_OUTPUT_PEAK_ARCHS else s.n_expert_used * s.n_embd
        moe = (3 if gated else 2) * s.n_expert_used * s.expert_ff + outputs
        return max(dense, moe)

    @cached_property
    def layer_bytes(self) -> tuple[int, ...]:
        sizes = [0] * self.shape.n_layer
        for t in self.tensors:
            if t.layer is not None and t.layer < len(sizes):
                sizes[t.layer] += t.nbytes
            elif t.layer is None and sizes and tensor_role(t.name) == "layer":
                sizes[0] += t.nbytes  # created with a layer number (per_layer_model_proj, rope_freqs): layer 0's device
        return tuple(sizes)

    @cached_property
    def memory_notes(self) -> tuple[str, ...]:
        """How the KV cache / state figures were reached, for tables, JSON and plan reasons."""
        s = self.shape
        notes = []
        if not s.modelled:
            notes.append(
                f"architecture {s.arch} is not modelled: weights are exact (tensor table); KV cache and state are a"
                " conservative bound (every layer caches the widest K/V over the whole context)"
            )
        recurrent = sum(1 for i in range(s.n_layer) if s.is_recurrent(i))
        if recurrent and s.modelled:
            attn = sum(1 for i in range(s.n_layer) if s.has_kv(i))
            notes.append(
                f"hybrid: {attn} of {s.n_layer} layers keep a KV cache; {recurrent} recurrent layers keep"
                f" {human(4 * s.state_row * recurrent)} of state per slot, whatever the context"
            )
        if s.kv_layers and s.modelled:
            notes.append(f"{s.kv_layers} of {s.n_layer} layers own a KV cache; the others reuse one")
        if "skipped_tensors" in self.extra:
            notes.append(
                f"{self.extra['skipped_tensors']} tensors ({human(int(self.extra['skipped_bytes']))}) of the"
                " multi-token-prediction block are in the file but not loaded by llama.cpp"
            )
        return tuple(notes)


# global tensors of llama.cpp's LLM_TENSOR_LAYER_INPUT / _OUTPUT (llama-arch.cpp); other globals are loaded with
# a layer number and live on that layer's device
_INPUT = ("token_embd.", "per_layer_token_embd.", "token_types.", "position_embd.")
_OUTPUT = ("output", "token_embd_norm.", "cls.", "cls_out.")


def tensor_role(name: str) -> str:
    if name.startswith("blk."):
        return "layer"
    if name.startswith(_INPUT):
        return "input"
    if name.startswith(_OUTPUT):
        return "output"
    return "layer"


def _dense_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    e, p = s.n_embd, f"blk.{i}."
    yield p + "attn_norm.weight", (e,)
    yield from _attention(s, i, p)
    if s.post_norms:
        yield p + "post_attention_norm.weight", (e,)
    yield p + "ffn_norm.weight", (e,)
    if s.fused_qkv and not s.n_expert:  # phi3: one ffn_up holding gate and up
        yield p + "ffn_up.weight", (e, 2 * s.n_ff)
        yield p + "ffn_down.weight", (s.n_ff, e)
    else:
        yield from _ffn(s, p)
    if s.n_expert and s.attn_extras:  # gpt-oss: router and expert biases
        x, f = s.n_expert, s.expert_ff
        yield p + "ffn_gate_inp.bias", (x,)
        yield p + "ffn_gate_exps.bias", (f, x)
        yield p + "ffn_up_exps.bias", (f, x)
        yield p + "ffn_down_exps.bias", (e, x)
    if s.post_norms:
        yield p + "post_ffw_norm.weight", (e,)


def _ffn(s: ModelShape, p: str) -> Iterator[tuple[str, tuple[int, ...]]]:
    e = s.n_embd
    if s.n_expert:
        x, f = s.n_expert, s.expert_ff
        yield p + "ffn_gate_inp.weight", (e, x)
        yield p + "ffn_gate_exps.weight", (e, f, x)
        yield p + "ffn_up_exps.weight", (e, f, x)
        yield p + "ffn_down_exps.weight", (f, e, x)
        if s.shared_ff:
            if s.arch in ("qwen35moe", "qwen3next"):
                yield p + "ffn_gate_inp_shexp.weight", (e,)
            yield p + "ffn_gate_shexp.weight", (e, s.shared_ff)
            yield p + "ffn_up_shexp.weight", (e, s.shared_ff)
            yield p + "ffn_down_shexp.weight", (s.shared_ff, e)
    else:
        yield p + "ffn_gate.weight", (e, s.n_ff)
        yield p + "ffn_up.weight", (e, s.n_ff)
        yield p + "ffn_down.weight", (s.n_ff, e)


def _attention(
    s: ModelShape, i: int, p: str, q_mult: int = 1, qk_norm: bool | None = None
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """One attention block: Q (q_mult x wide where it carries a gate: Qwen3.5), K, V (one fused matrix for
    phi3), their biases (qwen2, gpt-oss), Q/K norms, the output projection, and gpt-oss's output bias and sinks."""
    e, hk, dk, dv = s.n_embd, s.kv_heads(i), s.key_length, s.value_length
    q_dim, k_dim, v_dim = s.n_head * dk, hk * dk, hk * dv
    if s.fused_qkv:
        yield p + "attn_qkv.weight", (e, q_dim + k_dim + v_dim)
    else:
        yield p + "attn_q.weight", (e, q_mult * q_dim)
        yield p + "attn_k.weight", (e, k_dim)
        yield p + "attn_v.weight", (e, v_dim)
    if s.qkv_bias or s.attn_extras:
        yield p + "attn_q.bias", (q_dim,)
        yield p + "attn_k.bias", (k_dim,)
        yield p + "attn_v.bias", (v_dim,)
    if s.qk_norm if qk_norm is None else qk_norm:
        yield p + "attn_q_norm.weight", (dk,)
        yield p + "attn_k_norm.weight", (dk,)
    yield p + "attn_output.weight", (s.n_head * dv, e)
    if s.attn_extras:
        yield p + "attn_output.bias", (e,)
        yield p + "attn_sinks.weight", (s.n_head,)


def _delta_net_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Qwen3.5 (qwen35, qwen35moe) and Qwen3-Next (qwen3next): their load_arch_tensors, trunk blocks."""
    e, p = s.n_embd, f"blk.{i}."
    yield p + "attn_norm.weight", (e,)
    yield p + "post_attention_norm.weight", (e,)
    if s.is_recurrent(i) and s.arch == "qwen3next":  # fused projections: q, k, v and z; beta and alpha
        key_dim, heads, inner = s.ssm_state * s.ssm_groups, s.ssm_heads, s.ssm_inner
        yield p + "ssm_in.weight", (e, 2 * key_dim + 2 * inner)
        yield p + "ssm_conv1d.weight", (s.ssm_conv, 2 * key_dim + inner)
        yield p + "ssm_dt.bias", (heads,)
        yield p + "ssm_a", (heads,)
        yield p + "ssm_ba.weight", (e, 2 * heads)
        yield p + "ssm_norm.weight", (s.ssm_state,)
        yield p + "ssm_out.weight", (inner, e)
    elif s.is_recurrent(i):
        key_dim, heads, inner = s.ssm_state * s.ssm_groups, s.ssm_heads, s.ssm_inner
        yield p + "attn_qkv.weight", (e, 2 * key_dim + inner)
        yield p + "attn_gate.weight", (e, inner)
        yield p + "ssm_conv1d.weight", (s.ssm_conv, 2 * key_dim + inner)
        yield p + "ssm_dt.bias", (heads,)
        yield p + "ssm_a", (heads,)
        yield p + "ssm_beta.weight", (e, heads)
        yield p + "ssm_alpha.weight", (e, heads)
        yield p + "ssm_norm.weight", (s.ssm_state,)
        yield p + "ssm_out.weight", (inner, e)
    else:
        yield from _attention(s, i, p, q_mult=2)  # the query projection carries the output gate
    yield from _ffn(s, p)


def _mamba2_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Granite 4.0 hybrids (granitehybrid): llama_model_granite_hybrid::load_arch_tensors."""
    e, p = s.n_embd, f"blk.{i}."
    yield p + "attn_norm.weight", (e,)
    if s.is_recurrent(i):
        yield from _mamba2_mixer(s, p)
    else:
        yield from _attention(s, i, p)
    yield p + "ffn_norm.weight", (e,)
    yield from _ffn(s, p)


def _shortconv_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """LFM2 (lfm2): llama_model_lfm2::load_arch_tensors (dense layers)."""
    e, p = s.n_embd, f"blk.{i}."
    yield p + "ffn_norm.weight", (e,)
    yield from _ffn(s, p)
    yield p + "attn_norm.weight", (e,)
    if s.is_recurrent(i):
        yield p + "shortconv.conv.weight", (s.conv_cache, e)
        yield p + "shortconv.in_proj.weight", (e, 3 * e)
        yield p + "shortconv.out_proj.weight", (e, e)
    else:
        yield from _attention(s, i, p, qk_norm=True)  # heads x head dim = n_embd


def _mamba2_mixer(s: ModelShape, p: str) -> Iterator[tuple[str, tuple[int, ...]]]:
    e, inner, groups, state, heads = s.n_embd, s.ssm_inner, s.ssm_groups, s.ssm_state, s.ssm_heads
    conv = inner + 2 * groups * state
    yield p + "ssm_in.weight", (e, 2 * inner + 2 * groups * state + heads)
    yield p + "ssm_conv1d.weight", (s.ssm_conv, conv)
    yield p + "ssm_conv1d.bias", (conv,)
    yield p + "ssm_dt.bias", (heads,)
    yield p + "ssm_a", (1, heads)
    yield p + "ssm_d", (1, heads)
    yield p + "ssm_norm.weight", (inner // groups, groups)
    yield p + "ssm_out.weight", (inner, e)


def _nemotron_h_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Nemotron-H (nemotron_h, nemotron_h_moe: llama_model_nemotron_h::load_arch_tensors): each layer is a
    Mamba-2 mixer, an attention block, or a (ReLU^2, gateless) FFN; in the MoE models a routed MoE with a
    selection bias and a shared expert."""
    e, p = s.n_embd, f"blk.{i}."
    yield p + "attn_norm.weight", (e,)
    ff = s.ff(i)
    if s.is_recurrent(i):
        yield from _mamba2_mixer(s, p)
    elif ff == 0:
        yield from _attention(s, i, p)
    elif s.n_expert:
        x = s.n_expert
        yield p + "ffn_gate_inp.weight", (e, x)
        yield p + "exp_probs_b.bias", (x,)
        yield p + "ffn_down_exps.weight", (ff, e, x)
        yield p + "ffn_up_exps.weight", (e, ff, x)
        yield p + "ffn_down_shexp.weight", (s.shared_ff, e)
        yield p + "ffn_up_shexp.weight", (e, s.shared_ff)
    else:
        yield p + "ffn_down.weight", (ff, e)
        yield p + "ffn_up.weight", (e, ff)


def _gemma4_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Gemma 4 (gemma4): llama_model_gemma4::load_arch_tensors, in conversion/gemma.py's order. Full-attention
    layers of the k_eq_v models have no V projection; sliding-window layers have their own head dim; the MoE
    models run a dense FFN beside the experts. The layers that reuse an earlier layer's cache (E2B/E4B) still
    carry their K/V projections in the published checkpoints, which the converter writes and llama.cpp loads
    (optional tensors, unused by the graph), so they count as weights though they get no cache."""
    e, p = s.n_embd, f"blk.{i}."
    dk, _ = s.head_dims(i)
    hk = s.kv_heads(i)
    yield p + "attn_norm.weight", (e,)
    yield p + "attn_q.weight", (e, s.n_head * dk)
    yield p + "attn_k.weight", (e, hk * dk)
    if not (s.k_eq_v and not s.is_swa(i)):
        yield p + "attn_v.weight", (e, hk * dk)
    yield p + "attn_k_norm.weight", (dk,)
    yield p + "attn_output.weight", (s.n_head * dk, e)
    yield p + "attn_q_norm.weight", (dk,)
    yield p + "post_attention_norm.weight", (e,)
    yield p + "layer_output_scale.weight", (1,)
    yield p + "ffn_norm.weight", (e,)
    ff = s.ff(i)
    yield p + "ffn_gate.weight", (e, ff)
    yield p + "ffn_up.weight", (e, ff)
    yield p + "ffn_down.weight", (ff, e)
    yield p + "post_ffw_norm.weight", (e,)
    if s.n_expert:
        x, f = s.n_expert, s.expert_ff
        yield p + "ffn_gate_inp.weight", (e, x)
        yield p + "ffn_gate_inp.scale", (e,)
        yield p + "pre_ffw_norm_2.weight", (e,)
        yield p + "post_ffw_norm_1.weight", (e,)
        yield p + "post_ffw_norm_2.weight", (e,)
        yield p + "ffn_gate_up_exps.weight", (e, 2 * f, x)
        yield p + "ffn_down_exps.weight", (f, e, x)
        yield p + "ffn_down_exps.scale", (x,)
    if s.per_layer_embd:
        yield p + "inp_gate.weight", (e, s.per_layer_embd)
        yield p + "proj.weight", (s.per_layer_embd, e)
        yield p + "post_norm.weight", (e,)


def _routed_experts(
    s: ModelShape, p: str, *, probs_bias: bool, fused_gate_up: bool = False
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """A routed MoE block: the router, its selection bias (sigmoid routing: exp_probs_b), the experts (gate and up
    in one ffn_gate_up_exps where the checkpoint stacks them so), and a shared expert of `shared_ff` where there
    is one."""
    e, x, f = s.n_embd, s.n_expert, s.expert_ff
    yield p + "ffn_gate_inp.weight", (e, x)
    if probs_bias:
        yield p + "exp_probs_b.bias", (x,)
    if fused_gate_up:  # llama_model_base::create_tensor_gate_up_exps: {n_embd, 2 n_ff_exp, n_expert}
        yield p + "ffn_gate_up_exps.weight", (e, 2 * f, x)
        yield p + "ffn_down_exps.weight", (f, e, x)
    else:
        yield p + "ffn_gate_exps.weight", (e, f, x)
        yield p + "ffn_down_exps.weight", (f, e, x)
        yield p + "ffn_up_exps.weight", (e, f, x)
    if s.shared_ff:
        yield p + "ffn_gate_shexp.weight", (e, s.shared_ff)
        yield p + "ffn_down_shexp.weight", (s.shared_ff, e)
        yield p + "ffn_up_shexp.weight", (e, s.shared_ff)


def _dense_ffn(s: ModelShape, p: str) -> Iterator[tuple[str, tuple[int, ...]]]:
    e = s.n_embd
    yield p + "ffn_gate.weight", (e, s.n_ff)
    yield p + "ffn_down.weight", (s.n_ff, e)
    yield p + "ffn_up.weight", (e, s.n_ff)


def _glm4moe_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """GLM-4.5/4.6/4.7 (glm4moe: llama_model_glm4_moe::load_arch_tensors): attention with Q/K/V biases (and Q/K
    norms in the 355B models), a post-attention norm before the FFN, dense FFNs in the first n_dense_lead layers,
    then routed experts with a selection bias and a shared expert."""
    e, p = s.n_embd, f"blk.{i}."
    yield p + "attn_norm.weight", (e,)
    yield from _attention(s, i, p)
    yield p + "post_attention_norm.weight", (e,)
    yield from (_dense_ffn(s, p) if i < s.n_dense_lead else _routed_experts(s, p, probs_bias=True))


def _minimax_m2_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """MiniMax-M2.x (minimax-m2: llama_model_minimax_m2::load_arch_tensors): Q/K norms over the whole projection
    (heads x head dim), every layer MoE with a selection bias and no shared expert. llama.cpp sizes the experts
    from feed_forward_length, which the converter sets to the expert width."""
    e, p = s.n_embd, f"blk.{i}."
    q_dim, k_dim = s.n_head * s.key_length, s.kv_heads(i) * s.key_length
    yield p + "attn_q.weight", (e, q_dim)
    yield p + "attn_k.weight", (e, k_dim)
    yield p + "attn_v.weight", (e, s.kv_heads(i) * s.value_length)
    yield p + "attn_output.weight", (s.n_head * s.value_length, e)
    yield p + "attn_norm.weight", (e,)
    yield p + "attn_q_norm.weight", (q_dim,)
    yield p + "attn_k_norm.weight", (k_dim,)
    yield p + "ffn_norm.weight", (e,)
    yield from _routed_experts(s, p, probs_bias=True)


def _deepseek2_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """DeepSeek-V3 / Kimi K2 (deepseek2 with MLA: llama_model_deepseek2::load_arch_tensors): the query through a
    low-rank pair (q_a, q_b) with its norm, the compressed K/V latent plus the rope part (kv_a_mqa) with its norm,
    the per-head K and V decompressions split as the converter writes them (k_b, v_b), dense FFNs in the first
    n_dense_lead layers, then routed experts (a selection bias where the router is sigmoid) and shared experts.

    Mistral Small 4 (mistral4) loads through the same code (src/models/models.h: llama_model_mistral4 derives
    from llama_model_deepseek2 and reuses its load_arch_hparams / load_arch_tensors); what its converter
    (conversion/mistral3.py, Mistral4Model(DeepseekV2Model)) writes differs in two tensors a MoE layer:
    - no exp_probs_b: Mistral4TopkRouter (transformers modular_mistral4.py) is a softmax router with no
      correction bias, and the loader makes exp_probs_b optional (TENSOR_NOT_REQUIRED);
    - one ffn_gate_up_exps instead of ffn_gate_exps + ffn_up_exps: the checkpoint stacks its experts as 3-D
      `mlp.experts.gate_up_proj` (merge_expert = False; tensor_mapping.py FFN_GATE_UP_EXP), which the loader takes
      first (create_tensor_gate_up_exps)."""
    e, p, h = s.n_embd, f"blk.{i}.", s.n_head
    rank, rope, kq, vd = s.mla_kv_lora_rank, s.mla_rope_dim, s.mla_key_length, s.mla_value_length
    yield p + "attn_norm.weight", (e,)
    if s.mla_q_lora_rank:
        yield p + "attn_q_a_norm.weight", (s.mla_q_lora_rank,)
    yield p + "attn_kv_a_norm.weight", (rank,)
    if s.mla_q_lora_rank:
        yield p + "attn_q_a.weight", (e, s.mla_q_lora_rank)
        yield p + "attn_q_b.weight", (s.mla_q_lora_rank, h * kq)
    else:
        yield p + "attn_q.weight", (e, h * kq)
    yield p + "attn_kv_a_mqa.weight", (e, rank + rope)
    yield p + "attn_k_b.weight", (kq - rope, rank, h)
    yield p + "attn_v_b.weight", (rank, vd, h)
    yield p + "attn_output.weight", (h * vd, e)
    yield p + "ffn_norm.weight", (e,)
    if i < s.n_dense_lead:
        yield from _dense_ffn(s, p)
    else:
        mistral4 = s.arch == "mistral4"
        yield from _routed_experts(s, p, probs_bias=not mistral4, fused_gate_up=mistral4)


def _dsa_layer(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """DeepSeek sparse attention (glm-dsa: GLM-5.x, src/models/glm-dsa.cpp llama_model_glm_dsa::load_arch_tensors;
    deepseek32: DeepSeek-V3.2, src/models/deepseek32.cpp): deepseek2's MLA layer with a selection bias, plus the
    lightning indexer in the layers that run one: its key projection {n_embd, indexer_head_dim} and LayerNorm
    (k_norm weight and bias), its query from the low-rank query {q_lora_rank, indexer heads x head dim} and the
    per-head weights {n_embd, indexer heads}. GLM-5.2's "shared" layers (IndexShare) reuse the previous full
    layer's top-k: the checkpoint has no indexer there and the loader makes the tensors optional
    (TENSOR_NOT_REQUIRED; deepseek32 requires them in every layer)."""
    yield from _deepseek2_layer(s, i)
    if s.has_indexer(i):
        p, d, h = f"blk.{i}.", s.indexer_head_dim, s.indexer_heads
        yield p + "indexer.k_norm.weight", (d,)
        yield p + "indexer.k_norm.bias", (d,)
        yield p + "indexer.proj.weight", (s.n_embd, h)
        yield p + "indexer.attn_k.weight", (s.n_embd, d)
        yield p + "indexer.attn_q_b.weight", (s.mla_q_lora_rank, h * d)


_LAYERS = {"qwen35": _delta_net_layer, "qwen35moe": _delta_net_layer, "qwen3next": _delta_net_layer}
_LAYERS["granitehybrid"] = _mamba2_layer
_LAYERS |= {"lfm2": _shortconv_layer, "nemotron_h": _nemotron_h_layer, "nemotron_h_moe": _nemotron_h_layer}
_LAYERS["gemma4"] = _gemma4_layer
_LAYERS |= {"glm4moe": _glm4moe_layer, "minimax-m2": _minimax_m2_layer, "deepseek2": _deepseek2_layer}
_LAYERS["mistral4"] = _deepseek2_layer  # Mistral Small 4: llama_model_mistral4 is llama_model_deepseek2's loader
_LAYERS |= {"glm-dsa": _dsa_layer, "deepseek32": _dsa_layer}
# dense / MoE layer tables (_dense_layer): mistral3 is Ministral 3's llama layer; llama4's MoE layers add a
# shared expert as wide as a routed one (llama_model_llama4::load_arch_tensors)
REBUILDABLE = frozenset(
    {"llama", "mistral3", "llama4", "qwen2", "qwen3", "qwen3moe", "gemma3", "phi3", "gpt-oss", *_LAYERS}
)


def _layer_tensors(s: ModelShape, i: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    return _LAYERS.get(s.arch, _dense_layer)(s, i)


def tensor_shapes(s: ModelShape) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The tensor table convert_hf_to_gguf.py writes for these shapes, in file order."""
    yield "token_embd.weight", (s.n_embd, s.n_vocab)
    if s.arch == "llama4":
        yield "rope_freqs.weight", (s.key_length // 2,)  # the converter's llama3 rope factors
    if s.arch == "gemma4":
        yield "rope_freqs.weight", (s.key_length // 2,)  # one table, shared by the full-attention layers
        if s.per_layer_embd:
            yield "per_layer_token_embd.weight", (s.per_layer_embd * s.n_layer, s.n_vocab)
            yield "per_layer_model_proj.weight", (s.n_embd, s.per_layer_embd * s.n_layer)
            yield "per_layer_proj_norm.weight", (s.per_layer_embd,)
    for i in range(s.n_layer):
        yield from _layer_tensors(s, i)
    yield ("token_embd_norm.weight" if s.arch == "lfm2" else "output_norm.weight"), (s.n_embd,)
    if not s.tied_embeddings:
        yield "output.weight", (s.n_embd, s.n_vocab)


@lru_cache(maxsize=16)
def _layout(shape: ModelShape) -> tuple[tuple[tuple[str, tuple[int, ...], str], ...], dict[tuple[str, str], Tensor]]:
    """A model's tensors as (name, shape, kind: the name without its `blk.N.`), and the Tensors made for it so
    far: a plan rebuilds one model at several quants, and a tensor of one type in two of them is one object."""
    return tuple((n, d, n.split(".", 2)[2] if n.startswith("blk.") else n) for n, d in tensor_shapes(shape)), {}


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
        hybrid=any(shape.recurrent_layers),
    )
    counters: dict[str, int] = {}
    layout, made = _layout(shape)
    ctx = replace(ctx, n_attn_v=sum(1 for name, _, _ in layout if is_attn_v(name, ctx)))
    # every layer repeats the same tensor kinds: outside the two that count layers (attn_v, ffn_down), a
    # kind and shape get one type, so it is worked out once (a plan rebuilds ~20 tables of ~1,000 tensors)
    typed: dict[tuple[str, tuple[int, ...]], str] = {}
    counted = {kind for _, _, kind in layout if "ffn_down" in kind or is_attn_v(kind, ctx)}
    tensors = []
    for name, dims, kind in layout:
        if kind in counted:
            ttype = tensor_type(name, dims, ctx, counters)
        elif (ttype := typed.get((kind, dims), "")) == "":
            ttype = typed[kind, dims] = tensor_type(name, dims, ctx, counters)
        tensor = made.get((name, ttype))
        if tensor is None:
            tensor = made[name, ttype] = Tensor(name, dims, ttype)
        tensors.append(tensor)
    return ModelSpec(shape=shape, tensors=tuple(tensors), quant=quant, exact=False)
