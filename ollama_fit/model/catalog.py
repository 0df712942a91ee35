"""The model catalog (profiles/catalog.toml): what can be planned, with shapes to rebuild tensor tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from ollama_fit.errors import InvalidInput, ProfileError
from ollama_fit.model.quants import BASE_TYPE, GGML_TYPES
from ollama_fit.model.spec import REBUILDABLE, ModelShape, ModelSpec, rebuild
from ollama_fit.profiles import load_profile, require

# The quants publishers ship for every model, best first: the planner's ladder.
STANDARD_QUANTS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
ARCHES = tuple(sorted(REBUILDABLE))  # architectures whose tensor table spec.rebuild() can write
CAPABILITIES = ("chat", "coding", "reasoning", "embedding")


@dataclass(frozen=True)
class ExactQuant:
    """A quant whose tensor table was read from the published GGUF header(s)."""

    quant: str
    spec: ModelSpec
    files: tuple[str, ...]
    file_bytes: int


@dataclass(frozen=True)
class CatalogModel:
    """A model of profiles/catalog.toml: its published shapes, sizes, licence, files and dates."""

    id: str
    name: str
    family: str
    shape: ModelShape
    params_b: float  # published total parameters (billions)
    active_b: float  # published active parameters per token (MoE) or effective size (Gemma E-models), else = params_b
    license: str
    capabilities: tuple[str, ...]
    priority: int
    repo: str
    file: str  # pattern with {quant}
    config_repo: str
    quants: tuple[str, ...] = STANDARD_QUANTS
    file_labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    exact: tuple[ExactQuant, ...] = ()  # specs from real GGUF headers, used instead of rebuilt ones
    released: str = ""  # "YYYY-MM": when the weights were published
    superseded: bool = False  # an older generation of a family that has a current one (--model still plans it)
    ollama_name: str = ""  # the Ollama library tag for this model, where one exists ("qwen3:14b")
    # a multimodal model whose published total counts encoders that ship apart (mmproj), not in the GGUF:
    # encoders_b is their published size where the publisher gives one
    multimodal: bool = False
    encoders_b: float = 0.0
    # the size the publisher's own comparisons place the model at, where the rules above would rank it far
    # higher (Llama 4 Scout: 43B by its MoE size, compared by Meta with ~27B models); catalog.toml cites it
    rank_b: float = 0.0

    @property
    def is_moe(self) -> bool:
        return self.shape.n_expert > 0

    @property
    def effective_b(self) -> float:
        """Size used for ranking: MoE models count as the geometric mean of active and total
        parameters (the common dense-equivalent rule of thumb); their memory is still their total size.
        Gemma's E-models count at their published effective size: their per-layer embedding tables are
        looked up one row per token, not computed."""
        if self.rank_b:
            return self.rank_b
        total = self.params_b - self.encoders_b  # what the GGUF holds
        if self.is_moe:
            return math.sqrt(total * self.active_b)
        return min(total, self.active_b)

    def spec(self, quant: str) -> ModelSpec:
        found = self.exact_for(quant)
        return found.spec if found else _spec(self.shape, quant)

    def weights_floor(self, quant: str) -> int:
        """Bytes its weights need at least, without building a tensor table: its published parameter count at
        the quant's base type (llama-quantize's mixtures only ever give a tensor a larger type), less 3% (the
        catalog test holds the rebuilt count within 2% of the published one). 0 where a real header stands in:
        a publisher's own mixture may go lower. A test checks it against every rebuilt table."""
        if self.exact_for(quant):
            return 0
        base = GGML_TYPES[BASE_TYPE[quant]]
        return int(0.97 * (self.params_b - self.encoders_b) * 1e9 * base.type_size / base.block_size)

    def exact_for(self, quant: str) -> ExactQuant | None:
        return next((e for e in self.exact if e.quant == quant), None)

    def with_exact(self, found: ExactQuant) -> CatalogModel:
        return replace(self, exact=(*[e for e in self.exact if e.quant != found.quant], found))

    def file_for(self, quant: str) -> str:
        return self.file.replace("{quant}", self.file_labels.get(quant, quant))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "family": self.family,
            "params": int(self.params_b * 1e9),
            "active_params": int(self.active_b * 1e9),
            "architecture": self.shape.arch,
            "context_length": self.shape.context_length,
            "license": self.license,
            "capabilities": list(self.capabilities),
            "released": self.released,
            "superseded": self.superseded,
            "ollama_name": self.ollama_name,
        }


@cache
def _spec(shape: ModelShape, quant: str) -> ModelSpec:
    return rebuild(shape, quant)


def _swa_layers(pattern: str | None, n_layer: int) -> tuple[bool, ...]:
    """`swa_pattern`: "N:1" (N sliding-window layers, then one global: the config's `layer_types`),
    "gemma3" (= "5:1"), or "even" (gpt-oss: even layers are sliding-window)."""
    if pattern is None:
        return ()
    if pattern == "even":
        return tuple(i % 2 == 0 for i in range(n_layer))
    local, _, one = {"gemma3": "5:1"}.get(pattern, pattern).partition(":")
    if not (local.isdigit() and one == "1" and int(local) > 0):
        raise ProfileError(f"catalog.toml: unknown swa_pattern {pattern!r}", hint="reinstall ollama-fit")
    period = int(local) + 1
    return tuple(i % period < period - 1 for i in range(n_layer))


# architectures whose GGUF marks recurrent layers with head_count_kv = 0 (the converter writes a per-layer array)
_NO_KV_WHEN_RECURRENT = ("granitehybrid", "lfm2")


def _recurrent_layers(entry: dict[str, Any], n_layer: int, where: str) -> tuple[bool, ...]:
    """Hybrid layouts: `full_attention_interval = N` (every N-th layer attends, Qwen3.5) or
    `attention_layers = [i, ...]` (the attention layers' indices, Granite 4.0 / LFM2); the rest are recurrent."""
    if "full_attention_interval" in entry:
        n = int(entry["full_attention_interval"])
        return tuple((i + 1) % n != 0 for i in range(n_layer))
    if "attention_layers" in entry:
        attn = {int(i) for i in entry["attention_layers"]}
        if not attn <= set(range(n_layer)):
            raise ProfileError(f"{where}: attention_layers outside 0..{n_layer - 1}")
        return tuple(i not in attn for i in range(n_layer))
    return ()


def _nemotron_layout(entry: dict[str, Any], n_layer: int, where: str) -> tuple[tuple[bool, ...], tuple[int, ...]]:
    """Nemotron-H's `layer_pattern` (the config's hybrid_override_pattern): M = Mamba-2, * = attention,
    - = FFN, E = MoE. Returns the recurrent layers and the per-layer FFN widths the converter writes
    (feed_forward_length: the FFN's or an expert's width, 0 for Mamba and attention layers)."""
    pattern = str(entry["layer_pattern"])
    if len(pattern) != n_layer or not set(pattern) <= set("M*-E"):
        raise ProfileError(f"{where}: layer_pattern must give one of M * - E for each of {n_layer} layers")
    width = {"-": int(entry.get("ffn", 0)), "E": int(entry.get("expert_ffn", 0))}
    return tuple(c == "M" for c in pattern), tuple(width.get(c, 0) for c in pattern)


def _kv_heads_per_layer(
    arch: str,
    layers: int,
    kv_heads: int,
    global_kv: int,
    recurrent: tuple[bool, ...],
    swa: tuple[bool, ...],
    ff_layers: tuple[int, ...],
    entry: dict[str, Any],
) -> tuple[int, ...]:
    """The head_count_kv array the converter writes: 0 where a layer has no attention (the recurrent layers of
    Granite 4.0 H / LFM2; Nemotron-H's Mamba and FFN-only layers), the global layers' own count (Gemma 4)."""
    if "layer_pattern" in entry:
        return tuple(0 if r or f else kv_heads for r, f in zip(recurrent, ff_layers, strict=True))
    if global_kv:
        return tuple(kv_heads if i < len(swa) and swa[i] else global_kv for i in range(layers))
    if arch in _NO_KV_WHEN_RECURRENT:
        return tuple(0 if r else kv_heads for r in recurrent or (False,) * layers)
    return (kv_heads,) * layers


def _model(entry: dict[str, Any], i: int) -> CatalogModel:
    where = f"catalog.toml model[{i}] ({entry.get('id', '?')})"

    def num(key: str, default: int | None = None) -> int:
        if default is not None and key not in entry:
            return default
        return int(require(entry, key, int, where))

    arch = require(entry, "arch", str, where)
    if arch not in ARCHES:
        raise ProfileError(f"{where}: unknown arch {arch!r}")
    layers, head_dim = num("layers"), num("head_dim")
    recurrent = _recurrent_layers(entry, layers, where)
    swa = _swa_layers(entry.get("swa_pattern"), layers)
    kv_heads = num("kv_heads")
    ssm_heads, ssm_state = num("ssm_heads", 0), num("ssm_state", 0)
    n_ff = num("ffn", 0 if "experts" in entry else None)
    # Gemma 4: `head_dim`/`kv_heads` are the sliding-window layers'; the global layers have their own
    global_dim, global_kv = num("global_head_dim", 0), num("global_kv_heads", 0)
    kv_shared = num("kv_shared_layers", 0)
    if kv_shared >= layers:
        raise ProfileError(f"{where}: kv_shared_layers {kv_shared} of {layers} layers")
    ff_layers: tuple[int, ...] = ()
    if "layer_pattern" in entry:
        recurrent, ff_layers = _nemotron_layout(entry, layers, where)
        n_ff = max(ff_layers)
    if entry.get("double_wide_ffn"):  # the layers that reuse a cache get twice the FFN (use_double_wide_mlp)
        ff_layers = tuple(n_ff if i < layers - kv_shared else 2 * n_ff for i in range(layers))
    per_layer_kv = _kv_heads_per_layer(arch, layers, kv_heads, global_kv, recurrent, swa, ff_layers, entry)
    # DeepSeek MLA: `head_dim` is the decompressed K head (qk_nope + qk_rope), `v_head_dim` the V head; the GGUF's
    # key / value lengths and its single KV head describe the cached latent (kv_lora_rank + rope_dim, kv_lora_rank)
    lora, rope = num("kv_lora_rank", 0), num("rope_dim", 0)
    key_length, value_length = global_dim or head_dim, global_dim or head_dim
    if lora:
        if not (rope and num("v_head_dim", 0)):
            raise ProfileError(f"{where}: an MLA entry (kv_lora_rank) needs rope_dim and v_head_dim")
        key_length, value_length, per_layer_kv = lora + rope, lora, (1,) * layers
    # DeepSeek sparse attention (glm-dsa, deepseek32): the indexer's heads, head size and top-k
    # (index_n_heads, index_head_dim, index_topk); GLM-5.2's IndexShare runs an indexer in the first
    # `indexer_offset` layers and then in every `indexer_freq`-th (index_skip_topk_offset, index_topk_freq: the
    # config's indexer_types), the layers between reusing its top-k; without them every layer runs one
    indexer_heads, freq, offset = num("indexer_heads", 0), num("indexer_freq", 0), num("indexer_offset", 0)
    if indexer_heads and not (lora and num("indexer_head_dim", 0) and num("indexer_top_k", 0)):
        raise ProfileError(f"{where}: an indexer (indexer_heads) needs an MLA entry, indexer_head_dim, indexer_top_k")
    indexer_layers = (
        tuple(i < offset or (i - offset + 1) % freq == 0 for i in range(layers)) if indexer_heads and freq else ()
    )
    if not 0 <= num("dense_layers", 0) < layers:
        raise ProfileError(f"{where}: dense_layers must be fewer than the {layers} layers")
    shape = ModelShape(
        arch=arch,
        n_layer=layers,
        n_embd=num("embd"),
        n_head=num("heads"),
        n_head_kv=per_layer_kv,
        key_length=key_length,
        value_length=value_length,
        mla_kv_lora_rank=lora,
        mla_rope_dim=rope if lora else 0,
        mla_q_lora_rank=num("q_lora_rank", 0),
        mla_key_length=head_dim if lora else 0,
        mla_value_length=num("v_head_dim", 0) if lora else 0,
        n_dense_lead=num("dense_layers", 0),
        indexer_heads=indexer_heads,
        indexer_head_dim=num("indexer_head_dim", 0) if indexer_heads else 0,
        indexer_top_k=num("indexer_top_k", 0) if indexer_heads else 0,
        indexer_layers=indexer_layers,
        swa_key_length=head_dim if global_dim else 0,
        swa_value_length=head_dim if global_dim else 0,
        kv_layers=layers - kv_shared if kv_shared else 0,
        per_layer_embd=num("per_layer_embd", 0),
        k_eq_v=bool(entry.get("k_eq_v", False)),
        n_ff=max(ff_layers, default=n_ff),
        ff_layers=ff_layers,
        n_vocab=num("vocab"),
        context_length=num("context"),
        tied_embeddings=bool(entry.get("tied", False)),
        sliding_window=num("sliding_window", 0),
        swa_layers=swa,
        n_expert=num("experts", 0),
        n_expert_used=num("experts_used", 0),
        expert_ff=num("expert_ffn", 0),
        qkv_bias=bool(entry.get("qkv_bias", False)),
        qk_norm=bool(entry.get("qk_norm", False)),
        fused_qkv=bool(entry.get("fused_qkv", False)),
        post_norms=bool(entry.get("post_norms", False)),
        attn_extras=bool(entry.get("attn_extras", False)),
        shared_ff=num("shared_ffn", 0),
        recurrent_layers=recurrent,
        ssm_conv=num("ssm_conv", 0),
        ssm_inner=num("ssm_inner", ssm_heads * ssm_state if arch.startswith(("qwen35", "qwen3next")) else 0),
        ssm_state=ssm_state,
        ssm_groups=num("ssm_groups", 0),
        ssm_heads=ssm_heads,
        conv_cache=num("conv_cache", 0),
    )
    capabilities = tuple(require(entry, "capabilities", list, where))
    if not set(capabilities) <= set(CAPABILITIES):
        raise ProfileError(f"{where}: unknown capability in {capabilities}")
    params_b = float(require(entry, "params_b", int | float, where))
    return CatalogModel(
        id=require(entry, "id", str, where),
        name=require(entry, "name", str, where),
        family=require(entry, "family", str, where),
        shape=shape,
        params_b=params_b,
        active_b=float(entry.get("active_b", params_b)),
        license=require(entry, "license", str, where),
        capabilities=capabilities,
        priority=num("priority", 0),
        repo=require(entry, "repo", str, where),
        file=require(entry, "file", str, where),
        config_repo=require(entry, "config_repo", str, where),
        quants=tuple(entry.get("quants", STANDARD_QUANTS)),
        file_labels=dict(entry.get("file_labels", {})),
        released=str(entry.get("released", "")),
        superseded=bool(entry.get("superseded", False)),
        ollama_name=str(entry.get("ollama_name", "")),
        multimodal=bool(entry.get("multimodal", False)),
        encoders_b=float(entry.get("encoders_b", 0.0)),
        rank_b=float(entry.get("rank_b", 0.0)),
    )


@cache
def catalog() -> tuple[CatalogModel, ...]:
    data = load_profile("catalog")
    models = tuple(_model(e, i) for i, e in enumerate(data.get("model", [])))
    ids = [m.id for m in models]
    if len(ids) != len(set(ids)):
        raise ProfileError("catalog.toml: duplicate model ids", hint="reinstall ollama-fit")
    return models


def find_model(model_id: str) -> CatalogModel:
    for m in catalog():
        if m.id == model_id.lower():
            return m
    raise InvalidInput(f"unknown model {model_id!r}", hint="`ollama-fit list` shows the catalog")
