"""Predict what llama.cpp (and so Ollama) allocates for a model, per device and on the host.

Pure functions over frozen dataclasses. The terms and their calibration are in docs/estimator.md; the
constants below are checked against the real runs in ../shared/calibration by scripts/calibrate.py.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.model.draft import DRAFT_DFLASH, DraftModel
from ollama_fit.model.quants import KV_TYPES
from ollama_fit.model.spec import ModelSpec
from ollama_fit.units import MiB

# Per-GPU memory llama.cpp does not account for (CUDA context, cuBLAS workspaces): 597-599 MiB measured on
# an H200 with CUDA 13 (gpu_peak - llama.cpp's own total); ROCm assumed alike. Metal: Ollama's MinimumMemory.
# A remote device of llama.cpp's RPC backend (rpc-server) allocates only llama.cpp's own buffers. Vulkan: as
# CUDA (not measured).
GPU_OVERHEAD = {"cuda": 600 * MiB, "rocm": 600 * MiB, "vulkan": 600 * MiB, "metal": 512 * MiB, "rpc": 0}
# Pipeline parallelism across GPUs keeps GGML_SCHED_MAX_COPIES graph copies (conservative, uncalibrated).
PIPELINE_COPIES = 4
# ...on backends with async compute and events (llama_context: "pipeline parallelism requires support for async
# compute and events in all devices": CUDA, ROCm, an rpc-server). The copies are of the graph's inputs, not of the
# graph: measured on two rpc-server devices, (copies - 1) x (the masks + 4 x b x n_embd x k) more per device, k = 4
# on the first device, 3 on the others (tests/fixtures/fit-rpc2-llama.jsonl)
PIPELINE_BACKENDS = frozenset({"cuda", "rocm", "rpc"})
# CPU backends repack these types into interleaved layouts: a second copy next to the mmapped file.
CPU_REPACK_TYPES = {"Q4_0", "Q4_K", "IQ4_NL"}
BACKENDS = ("cuda", "rocm", "vulkan", "metal", "rpc", "cpu")
# Backends whose device runs its graph with the CPU kernels (an rpc-server on a CPU): CPU compute buffers
CPU_GRAPH_BACKENDS = frozenset({"cpu", "rpc"})
# Backends that copy a host-resident weight to the device for a large batch (ggml_backend_cuda_device_offload_op,
# batch >= 32): the copy lives in the device's compute buffer
OP_OFFLOAD_BACKENDS = frozenset({"cuda", "rocm"})
# What llama.cpp's --fit moves off a layer's device with tensor overrides (common/fit.cpp
# `get_overflow_pattern`), by the part of the layer that stays (LAYER_FRACTION_*): "attn" keeps attention and
# norms, "up" also the up projections, "gate" also the gate ones; "moe" moves only the routed experts
FRACTION_MOVES = {
    "attn": re.compile(r"^blk\.\d+\.ffn_(gate|up|gate_up|down)"),
    "up": re.compile(r"^blk\.\d+\.ffn_(gate|gate_up|down)"),
    "gate": re.compile(r"^blk\.\d+\.ffn_down"),
    "moe": re.compile(r"^blk\.\d+\.ffn_(up|down|gate_up|gate)_(ch|)exps"),
}
EXPERTS = FRACTION_MOVES["moe"]
# Drafting keeps a copy of the recurrent state per drafted token to roll back to, where llama.cpp supports it
# (llama-arch.cpp `llm_arch_supports_rs_rollback`; measured: Qwen3.5 dense and MoE x (1 + draft), Qwen3-Next
# one, tests/fixtures/mtp-llama-cpu.jsonl)
STATE_ROLLBACK_ARCHS = frozenset({"qwen35", "qwen35moe", "nemotron_h", "nemotron_h_moe", "lfm2", "lfm2moe"})
# The prediction block's own context (its graph over one layer, the shared head): at most this many times the
# model's compute buffer over the five layouts measured (1.0-2.8x, tests/fixtures/mtp-llama-cpu.jsonl): a bound
MTP_COMPUTE_BOUND = 3.0
# Architectures whose loader creates the tied output (TENSOR_DUPLICATED) before the token embedding
# (src/models/gemma4.cpp, gemma3n.cpp): mapped, both are the file's pages; read in without mmap, the embedding
# is a second tensor of its own (measured: tests/fixtures/ollama-argv-llama-cpu.jsonl)
OUTPUT_FIRST_ARCHS = frozenset({"gemma4", "gemma3n"})


def pad256(n: int) -> int:
    return -(-n // 256) * 256


@dataclass(frozen=True)
class Runtime:
    """How the model will run: the knobs that change memory."""

    ctx: int = 8192  # tokens per sequence (Ollama's num_ctx, llama-server's -c / parallel)
    kv_type: str = "f16"  # K and V cache type
    flash_attn: bool = True
    ubatch: int = 512
    parallel: int = 1  # sequences (OLLAMA_NUM_PARALLEL): each gets ctx cells
    backend: str = "cuda"  # where offloaded layers run: cuda, rocm, metal; cpu = no GPU
    extra_overhead: int = 0  # per GPU, learned from real loads on this machine (ollama/learning.py)
    # the program that runs the model, for the rows of logits its worst-case graph reserves: "llama-server"
    # one per slot; "ollama" (Ollama's vendored llama.cpp runner before 0.30) and "llama-completion" one per
    # token of the micro-batch; "ollama-engine" (Ollama's own Go engine before 0.30) one per slot, with its
    # own cache layout, batch and weights (engine_cells, compute_bytes, estimate)
    runner: str = "ollama"
    # A runner that picks its micro-batch from the context it is launched with (Ollama >= 0.30 gives
    # llama-server -b = -ub by num_ctx x parallel): (limit, batch) steps, the first whose limit the effective
    # context does not exceed, else the last step's batch; then at most `batch_cap` (its headroom rule).
    # Empty: `ubatch` as given. Resolved on every construction, so a context search keeps the rule.
    batch_steps: tuple[tuple[int, int], ...] = ()
    batch_cap: int = 0
    # False: the weights are read into memory, not mapped (Ollama on CPU-only machines): the CPU backend's
    # repacked tensors then replace their originals instead of sitting beside mapped pages the OS may drop
    mmap: bool = True
    # llama-server's unified cache (its default without -np: 4 slots, --kv-unified): `ctx` is then the cells of
    # all slots together, in one stream; recurrent state and output rows stay one per slot
    kv_unified: bool = False
    # speculative decoding with the GGUF's own prediction block (llama-server --spec-type draft-mtp): its blocks
    # are loaded and a second context (their KV cache and graph) runs beside the model's; `draft` tokens a step
    mtp_layers: int = 0
    draft: int = 0
    # ...or with a separate draft model (llama-server --spec-draft-model; Ollama's draft file): its --spec-type,
    # "draft-mtp" or "draft-dflash". Its own memory is an ExternalDraft given to `estimate`; here, what drafting
    # changes in the target's context (recurrent state copies, output rows), as the MTP block does
    draft_file: str = ""
    draft_model: DraftModel | None = None  # that draft file's header numbers (model/gguf/draft.py)

    def __post_init__(self) -> None:
        if self.batch_steps:
            effective = self.ctx * max(1, self.parallel)
            batch = next((b for limit, b in self.batch_steps if effective <= limit), self.batch_steps[-1][1])
            object.__setattr__(self, "ubatch", min(batch, self.batch_cap) if self.batch_cap else batch)

    @property
    def cells(self) -> int:
        return pad256(self.ctx)

    @property
    def streams(self) -> int:
        """KV cache streams: one per slot, or one for all with a unified cache."""
        return 1 if self.kv_unified else max(1, self.parallel)

    @property
    def drafting(self) -> bool:
        """Speculative decoding on: with the GGUF's own block or a draft file (the target's context changes)."""
        return bool(self.draft and (self.mtp_layers or self.draft_file))

    @property
    def engine(self) -> bool:
        """Ollama's own Go engine (0.13-0.29 for the architectures it requires), not a llama.cpp program."""
        return self.runner == "ollama-engine"


@dataclass(frozen=True)
class DeviceMemory:
    """What one device holds for a load (bytes): weights, KV cache, state, compute, overhead."""

    name: str
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    layers: int = 0
    state_bytes: int = 0  # recurrent / convolution state of the hybrid layers here (fixed per sequence)
    # mmapped file pages whose data was copied (repacked) elsewhere: page cache the OS may drop, so they
    # count in what llama.cpp reports but not in what must fit
    evictable_bytes: int = 0
    learned_bytes: int = 0  # the part of overhead_bytes learned from real loads here (Runtime.extra_overhead)
    position: int | None = None  # a GPU's place in the estimate's `split` (None: the host)

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.state_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def required_bytes(self) -> int:
        return self.total_bytes - self.evictable_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total_bytes": self.total_bytes,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "state_bytes": self.state_bytes,
            "compute_bytes": self.compute_bytes,
            "overhead_bytes": self.overhead_bytes,
            "layers": self.layers,
            "evictable_bytes": self.evictable_bytes,
        }


def mtp_kv_bytes(spec: ModelSpec, rt: Runtime) -> int:
    """The prediction blocks' KV cache (llama-model.cpp create_memory for LLAMA_CONTEXT_TYPE_MTP: a plain cache
    over the blocks after the last layer, the main context's cells and streams), each as a full-attention
    layer of the model."""
    s = spec.shape
    full = [i for i in range(s.n_layer) if s.has_kv(i) and not s.is_swa(i)] or list(range(s.n_layer))
    # its type is --spec-draft-type-k/v (f16 unless given; Ollama gives none), not the model's cache type
    return rt.mtp_layers * layer_kv_bytes(spec, full[-1], replace(rt, mtp_layers=0, kv_type="f16"))


def _with_mtp(spec: ModelSpec, rt: Runtime, dev: DeviceMemory) -> DeviceMemory:
    """A device with the prediction block: its weights (the tensors a plain load skips), its context's KV
    cache and graph (a bound: MTP_COMPUTE_BOUND x the model's)."""
    return replace(
        dev,
        weights_bytes=dev.weights_bytes + int(spec.extra.get("skipped_bytes", "0")),
        kv_bytes=dev.kv_bytes + mtp_kv_bytes(spec, rt),
        compute_bytes=dev.compute_bytes + int(MTP_COMPUTE_BOUND * compute_bytes(spec, replace(rt, mtp_layers=0))),
    )


# ----- a separate draft model (llama-server --spec-draft-model; Ollama's draft file) -----


def draft_kv_bytes(d: DraftModel, rt: Runtime) -> int:
    """The draft context's KV cache: its cached layers at the target's cells (common/speculative.cpp
    `common_speculative_init_result` L2611: cparams.n_ctx = llama_n_ctx(ctx_tgt)), a stream a slot, in
    --spec-draft-type-k/v (f16 unless given, common/common.h L346-347; Ollama gives none) whatever the target's
    cache type (`common_base_params_to_speculative` L2559)."""
    return int(d.cached_layers * d.kv_width * rt.cells * KV_TYPES["f16"]) * rt.streams


def draft_output_bytes(d: DraftModel, rt: Runtime) -> int:
    """The draft context's output buffer at creation: a row of logits a slot (llama-context.cpp `output_reserve`)."""
    return 4 * d.n_vocab * max(1, rt.parallel)


def draft_compute_bytes(spec: ModelSpec, d: DraftModel, rt: Runtime) -> int:
    """The draft context's graph buffer (reserved at min(n_ctx, n_ubatch) tokens, the target's -b/-ub; a context
    holds only its last reservation). dflash, the larger of (measured, tests/fixtures/draft-llama-cpu.jsonl):
    - its decoder: the attention mask over one slot's cells and 4 x b x (3 n_ff + 3 n_embd) floats (exact to
      0.01 MiB at -ub 512 / 1024, 1 and 2 slots);
    - the re-reservation once draft-dflash attaches its backend samplers (common/speculative.cpp L1101-1113):
      a dflash model has an encoder, so its context keeps n_batch output rows (src/llama-context.cpp L252), and
      their logits and probabilities, 8 x b x n_vocab bytes, plus 32 x b^2 bytes (a fit: 136.13 and 288.12 MiB
      at -ub 512 / 1024 with a 32768 vocabulary, within 0.13 MiB).
    draft-mtp: the prediction block's context, bounded as the GGUF's own block is (MTP_COMPUTE_BOUND x the
    target's graph; measured 0.75-0.8x with a separate Qwen3.5 drafter)."""
    b = min(rt.ubatch, rt.cells * max(1, rt.parallel))
    if d.kind == DRAFT_DFLASH:
        mask = rt.cells * b * (2 if rt.flash_attn else 4)
        return max(mask + 4 * b * (3 * d.n_ff + 3 * d.n_embd), 8 * b * d.n_vocab + 32 * b * b)
    plain = replace(rt, mtp_layers=0, draft_file="", draft_model=None)
    return int(MTP_COMPUTE_BOUND * compute_bytes(spec, plain))


def _with_draft(spec: ModelSpec, rt: Runtime, d: DraftModel, dev: DeviceMemory, gpu: bool) -> DeviceMemory:
    """A device with the draft model: its weights, its context's KV cache and graph. llama-server loads it with
    the target's model parameters but its own -ngl (--spec-draft-ngl, default "auto" = -1: every layer,
    llama-model.cpp `n_gpu_layers` L2010) on the target's devices (`common_base_params_to_speculative`
    L2539-2542): beside a GPU the whole draft but its input embedding (which the estimate keeps on the host)."""
    return replace(
        dev,
        weights_bytes=dev.weights_bytes + d.weights_bytes - (d.input_bytes if gpu else 0),
        kv_bytes=dev.kv_bytes + draft_kv_bytes(d, rt),
        compute_bytes=dev.compute_bytes + draft_compute_bytes(spec, d, rt),
    )


def _holds(layers: range, arriving: int, n_layer: int) -> str:
    """What of the model a device runs, for its compute buffer (compute_bytes `holds`)."""
    if not layers and not arriving:
        return "output"
    if layers and layers.start == 0:
        return "all"
    return "last" if layers == range(n_layer - 1, n_layer) and not arriving else "some"


@dataclass(frozen=True)
class Move:
    """Weights of one offloaded layer that llama.cpp keeps off the layer's device (a tensor override: -ot, or
    what --fit sets); the layer's KV cache stays with the layer."""

    layer: int
    fraction: str  # the part that stays on the layer's device: a FRACTION_MOVES key
    nbytes: int  # the weights moved
    experts_bytes: int  # of which routed-expert tensors
    to: int | None = None  # the position in `split` of the device that takes them; None: system memory


@dataclass(frozen=True)
class MemoryEstimate:
    """A load's memory on every device that holds part of it, and where its layers went."""

    gpus: tuple[DeviceMemory, ...]  # one per GPU that holds layers
    host: DeviceMemory
    n_layer: int
    gpu_layers: int  # repeating layers offloaded (the output layer rides with the last one)
    kv_cells: int  # per sequence
    backend: str
    moves: tuple[Move, ...] = ()  # parts of offloaded layers kept elsewhere (experts in system memory)

    @property
    def device_bytes(self) -> int:
        return sum(g.total_bytes for g in self.gpus)

    @property
    def host_bytes(self) -> int:
        return self.host.total_bytes

    @property
    def host_required_bytes(self) -> int:
        return self.host.required_bytes

    def _sum(self, attr: str) -> int:
        return sum(getattr(d, attr) for d in (*self.gpus, self.host))

    @property
    def weights_bytes(self) -> int:
        return self._sum("weights_bytes")

    @property
    def kv_bytes(self) -> int:
        return self._sum("kv_bytes")

    @property
    def state_bytes(self) -> int:
        return self._sum("state_bytes")

    @property
    def full_offload(self) -> bool:
        """Every layer, whole, on the GPU(s)."""
        return bool(self.gpus) and self.gpu_layers == self.n_layer and not self.moves

    @property
    def cpu_expert_layers(self) -> tuple[int, ...]:
        """Offloaded layers whose routed experts stay in system memory."""
        return tuple(m.layer for m in self.moves if m.fraction == "moe" and m.to is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_bytes": self.device_bytes,
            "host_bytes": self.host_bytes,
            "host_required_bytes": self.host_required_bytes,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "state_bytes": self.state_bytes,
            "compute_bytes": self._sum("compute_bytes"),
            "overhead_bytes": self._sum("overhead_bytes"),
            "gpu_layers": self.gpu_layers,
            "n_layer": self.n_layer,
            "kv_cells": self.kv_cells,
            "backend": self.backend,
            "devices": [g.to_dict() for g in self.gpus],
            "host": self.host.to_dict(),
        }


# ----- KV cache and recurrent state (llama-kv-cache.cpp, llama-memory-recurrent.cpp, llama-memory-hybrid.cpp) -----


def layer_cells(spec: ModelSpec, layer: int, rt: Runtime) -> int:
    """Cells one sequence's stream gets in this layer (sliding-window layers keep only the window)."""
    s = spec.shape
    if s.modelled and s.is_swa(layer):
        return min(rt.cells, pad256(s.sliding_window + rt.ubatch))
    return rt.cells


def engine_cells(spec: ModelSpec, layer: int, rt: Runtime) -> int:
    """Cells of one layer for all slots together in Ollama's Go engine (kvcache/causal.go `Init`, v0.24.0):
    one cache of num_ctx x slots padded to 256, and for sliding-window layers the window per slot (one more
    cell with several slots) plus one batch, or the full size when the window reaches the context."""
    s = spec.shape
    slots = max(1, rt.parallel)
    full = pad256(rt.ctx * slots)
    if not (s.modelled and s.is_swa(layer)):
        return full
    window = s.sliding_window + (1 if slots > 1 else 0)
    if window >= rt.ctx:
        return full
    return pad256(slots * window + engine_batch(rt))


def engine_batch(rt: Runtime) -> int:
    """The Go engine's one batch size: num_batch (512 unless set) but never more than num_ctx (llm/server.go)."""
    return min(rt.ubatch, rt.ctx)


def _kv_width(spec: ModelSpec, layer: int, rt: Runtime) -> int:
    """K + V elements per cell: n_embd_k_gqa(il) + n_embd_v_gqa(il); without flash attention the V cache is
    transposed and padded to the widest layer's ([TAG_V_CACHE_VARIABLE])."""
    s = spec.shape
    dk, dv = s.head_dims(layer)
    v = s.kv_heads(layer) * dv
    if not rt.flash_attn:
        v = s.max_v_width
    return s.kv_heads(layer) * dk + v


def _kv_bound_width(spec: ModelSpec) -> int:
    """Unknown architecture: the widest layer's K + V for every layer (a bound, never less than llama.cpp)."""
    s = spec.shape
    heads = max(s.n_head_kv, default=0) or s.n_head
    dk = max(s.key_length, s.swa_key_length)
    dv = max(s.value_length, s.swa_value_length)
    return heads * (dk + dv)


def layer_kv_bytes(spec: ModelSpec, layer: int, rt: Runtime) -> int:
    s = spec.shape
    per_elem = KV_TYPES[rt.kv_type]
    if not s.modelled:
        return int(_kv_bound_width(spec) * rt.cells * per_elem) * rt.streams
    if not s.has_kv(layer):
        return 0  # recurrent layer (its state is counted apart), or one reusing an earlier layer's cache
    if s.mla_kv_lora_rank:  # V-less MLA cache: only the compressed latent and the rope part
        elems = s.mla_kv_lora_rank + s.mla_rope_dim
        # DeepSeek sparse attention: a second cache of the same cells, type and streams holds the lightning
        # indexer's keys, one head of indexer_head_dim and no V, in the layers that run an indexer
        # (src/llama-kv-cache-dsa.cpp: kv_lid over hparams_lid with one KV head of indexer_head_size; the MLA
        # hparams keep has_v false; src/llama-model.cpp create_memory filter_lid)
        if s.has_indexer(layer):
            elems += s.indexer_head_dim
    else:
        elems = _kv_width(spec, layer, rt)
    if rt.engine:
        return int(elems * engine_cells(spec, layer, rt) * per_elem)
    return int(elems * layer_cells(spec, layer, rt) * per_elem) * rt.streams


def kv_bytes(spec: ModelSpec, rt: Runtime, layers: Sequence[int] | None = None) -> int:
    chosen = range(spec.shape.n_layer) if layers is None else layers
    return sum(layer_kv_bytes(spec, i, rt) for i in chosen)


def layer_state_bytes(spec: ModelSpec, layer: int, rt: Runtime) -> int:
    """One layer's recurrent state: r_l (conv) + s_l (SSM) rows, F32, one row per sequence
    (mem_size = max(1, n_seq_max)); it does not grow with the context. An unknown architecture that carries
    SSM / convolution keys gets the state in every layer (a bound)."""
    s = spec.shape
    if not (s.is_recurrent(layer) or (not s.modelled and s.state_row)):
        return 0
    rows = max(1, rt.parallel)
    if rt.drafting and s.arch in STATE_ROLLBACK_ARCHS:
        # llama-memory-recurrent.cpp: mem_size x (1 + n_rs_seq), n_rs_seq = the draft for draft-mtp and
        # draft-dflash alike (common/common.h `need_n_rs_seq`; measured with a draft file: draft-llama-cpu.jsonl)
        rows *= 1 + rt.draft
    return 4 * s.state_row * rows


def state_bytes(spec: ModelSpec, rt: Runtime, layers: Sequence[int] | None = None) -> int:
    chosen = range(spec.shape.n_layer) if layers is None else layers
    return sum(layer_state_bytes(spec, i, rt) for i in chosen)


# ----- compute buffers -----


def compute_bytes(spec: ModelSpec, rt: Runtime, *, gpus_holding_layers: int = 1, holds: str = "all") -> int:
    """The graph buffer on a device that runs layers. ggml-alloc reuses memory between the graph's phases,
    so the buffer is the largest of them (measured against llama.cpp b11434, docs/estimator.md):
    - output: the logits, one row per reserved output. llama-server (and so Ollama since 0.30) reserves one
      output per slot, on every backend (llama_context's n_outputs_max: measured on the CPU, the same code
      on a GPU); Ollama's vendored runner before 0.30 and llama-completion one per token of the micro-batch
      (then this phase dominates);
    - attention: the attention masks, with flash attention off the f32 KQ matrix of one layer
      (b x context x heads), and the layer's activations;
    - feed-forward: the masks and the FFN's activations, 4 x b x (ModelSpec.ffn_floats + 5 n_embd).
    `holds` is what of the model the device runs: "all" the layers from the first, "some" (a later part of
    them), "last" (only the last layer, whose feed-forward runs on the output rows alone), "output" (only
    the output layer: its logits). A device that runs the CPU kernels but not the whole graph (an
    rpc-server) keeps 1 (all) or 3 (some) fewer n_embd rows than a CPU-only run, and for the last layer
    alone the mask and 2 q + 2 n_embd rows (measured, tests/fixtures/fit-rpc-llama.jsonl)."""
    s = spec.shape
    cpu = rt.backend in CPU_GRAPH_BACKENDS
    slots = max(1, rt.parallel)
    # Ollama's Go engine (runner/ollamarunner `reserveWorstCaseGraph`): one batch over every slot's cells, its
    # masks over the whole cache, `parallel` rows of logits (fitted to the real 0.24.0 on a CPU within 2 MiB,
    # tests/fixtures/ollama-real-gemma.jsonl; unmeasured on GPUs)
    b = engine_batch(rt) if rt.engine else min(rt.ubatch, rt.cells * slots)
    outputs = min(b, slots) if rt.runner in ("llama-server", "ollama-engine") else b
    if rt.drafting:  # drafting verifies the drafted tokens too: 1 + draft rows a slot (server_output_limits)
        outputs = min(b, slots * (1 + rt.draft))
    if holds == "output":  # only the output matmul runs here
        return 4 * outputs * (s.n_embd + s.n_vocab)
    out = 4 * outputs * (s.n_embd + s.n_vocab) + (4 * b * s.n_embd if cpu else 0)
    q_width = s.n_head * s.key_length
    kv_width = s.max_kv_width
    # the masks, and the per-layer inputs of Gemma 3n/4 E-models ([per-layer width, layers] a token), built once
    # before the first layer and read by every one: alive through every layer's phases
    mask = _mask_bytes(spec, rt, b) + 4 * b * s.per_layer_embd * s.n_layer
    kq_cells = pad256(rt.ctx * slots) if rt.engine else rt.cells
    kq = 0 if rt.flash_attn else 4 * b * kq_cells * s.n_head
    sparse = 0  # DeepSeek sparse attention's top-k phase (below)
    if s.indexer_heads:
        # the lightning indexer's own mask over its key cache, f16 whatever the flash attention setting: llama.cpp
        # always fuses the indexer (llama-context.cpp cparams.fused_lid = true; llama-graph.cpp
        # build_attn_inp_k_dsa_impl builds the mask with flash_attn = fused_lid)
        mask += kq_cells * b * 2
    if cpu and s.mla_kv_lora_rank:  # MLA with the latent absorbed: per head the latent and rope part twice, the
        # query (measured on DeepSeek layers: 207872 floats a token, tests/fixtures/ollama-argv-llama-cpu)
        latent = s.mla_kv_lora_rank + s.mla_rope_dim
        attention = mask + kq + 4 * b * (2 * s.n_head * latent + s.n_head * s.mla_key_length + 5 * s.n_embd)
        if s.indexer_heads:
            # selecting the top-k (llama-graph.cpp build_attn with top_k): the indexer's f32 scores over the cache
            # (ggml_lightning_indexer, {n_kv, n_tokens}), the mask refilled with -inf and the top-k unmasked
            # (ggml_fill + ggml_set_rows) and that added to the mask (ggml_add), both of the attention mask's
            # type, beside the absorbed query and 3 n_embd rows; the query's conversion to a quantized cache's
            # type falls in this phase (measured: GLM-5.2's layers, tests/fixtures/hybrid-llama-cpu.jsonl)
            elem = 2 if rt.flash_attn else 4
            sparse = mask + kq_cells * b * (4 + 2 * elem) + 4 * b * (s.n_head * latent + 3 * s.n_embd)
            if rt.kv_type not in ("f16", "bf16", "f32") and rt.flash_attn:
                sparse += int(b * q_width * KV_TYPES[rt.kv_type])
    elif cpu:  # llama-server keeps one more q-sized activation than llama-completion
        acts = 4 * q_width if rt.runner == "llama-completion" or rt.runner == "ollama" else 5 * q_width
        attention = mask + kq + 4 * b * (acts + s.n_embd + kv_width)
    else:  # calibrated on CUDA: 4 x b x (1 + 4 n_embd + context x (1 + heads)) with the f32 mask
        attention = mask + kq + 4 * b * (1 + 4 * s.n_embd) if not rt.flash_attn else 0
    if holds == "last" and rt.backend == "rpc":
        return max(out, mask + 4 * b * (2 * q_width + 2 * s.n_embd))
    rows = 5 if rt.backend != "rpc" else 4 if holds == "all" else 2
    ffn = mask + 4 * b * (spec.ffn_floats + rows * s.n_embd)
    size = max(out, attention, ffn)
    if sparse:  # the query's conversion is inside the top-k phase (counted there)
        size = max(size, sparse)
    elif cpu and rt.kv_type not in ("f16", "bf16", "f32") and rt.flash_attn:
        size += int(b * q_width * KV_TYPES[rt.kv_type])  # Q converted to the cache's type
    elif not cpu and rt.kv_type not in ("f16", "bf16", "f32"):
        # GPU flash attention dequantizes K and V of one layer to f16 over the whole context
        size += rt.cells * kv_width * 2
    if gpus_holding_layers > 1 and rt.backend in PIPELINE_BACKENDS:
        rows = 4 if holds == "all" else 3
        size += (PIPELINE_COPIES - 1) * (_mask_bytes(spec, rt, b) + 4 * b * s.n_embd * rows)
    return size


def _mask_bytes(spec: ModelSpec, rt: Runtime, b: int) -> int:
    """The attention masks a graph keeps: one over each slot's context (the Go engine: over every slot's
    cells), and one over the sliding-window cache where some layers use it; f16 with flash attention, else
    f32."""
    s = spec.shape
    swa = [s.is_swa(i) for i in range(s.n_layer)]
    full = (pad256(rt.ctx * max(1, rt.parallel)) if rt.engine else rt.cells) if not all(swa) else 0
    if rt.engine:
        window = max((engine_cells(spec, i, rt) for i in range(s.n_layer) if swa[i]), default=0)
    else:
        window = min(rt.cells, pad256(s.sliding_window + rt.ubatch)) if any(swa) else 0
    return (full + window) * b * (2 if rt.flash_attn else 4)


def host_compute_bytes(spec: ModelSpec, rt: Runtime) -> int:
    """Pinned host buffers beside GPU layers: input embeddings and the attention mask."""
    b = min(rt.ubatch, rt.cells)
    return 8 * b * spec.shape.n_embd + rt.cells * b * (2 if rt.flash_attn else 4)


def output_buffer_bytes(spec: ModelSpec, rt: Runtime) -> int:
    """llama.cpp's output buffer: one row of logits per slot. The Go engine keeps its logits in the graph."""
    rows = max(1, rt.parallel) * (1 + rt.draft if rt.drafting else 1)
    return 0 if rt.engine else 4 * spec.shape.n_vocab * rows


# ----- putting it together -----


def _repack_bytes(spec: ModelSpec, layers: Sequence[int], with_output: bool) -> int:
    chosen = set(layers)
    total = 0
    for t in spec.tensors:
        if t.type not in CPU_REPACK_TYPES:
            continue
        if (t.layer is not None and t.layer in chosen) or (with_output and t.name == "output.weight"):
            total += t.nbytes
    return total


def split_for_ngl(n_layer: int, ngl: int, weights: Sequence[float] = (1,)) -> tuple[tuple[int, ...], int | None]:
    """llama.cpp's -ngl N (with --tensor-split `weights`, one per GPU) as (repeating layers per GPU, the GPU
    that holds the output layer or None). As load_tensors does: the last N of the n_layer + 1 layers are
    offloaded (the output layer counts as layer n_layer), and offloaded layer k of N goes to the first GPU
    whose cumulative share of `weights` exceeds k / N."""
    offloaded = max(0, min(ngl, n_layer + 1))
    total = sum(weights)
    if not offloaded or total <= 0:
        return tuple(0 for _ in weights), None
    bounds = [sum(weights[: d + 1]) / total for d in range(len(weights))]

    def device(k: int) -> int:
        return min(bisect_right(bounds, k / offloaded), len(weights) - 1)

    counts = [0] * len(weights)
    for k in range(offloaded - 1):  # the last offloaded layer is the output layer
        counts[device(k)] += 1
    return tuple(counts), device(offloaded - 1)


def fraction_table(spec: ModelSpec) -> dict[tuple[int, str], tuple[int, int]]:
    """(layer, fraction) -> (bytes moved, of which routed experts), for every layer and fraction that moves
    something: one pass over the tensor table, for a placement search to build Moves from."""
    table: dict[tuple[int, str], list[int]] = {}
    # the patterns read only what follows `blk.N.`: each tensor kind is matched once, not once a layer
    matched: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for t in spec.tensors:
        if t.layer is None or t.layer >= spec.shape.n_layer:
            continue
        kind = t.name.split(".", 2)[2]
        hit = matched.get(kind)
        if hit is None:
            moves = tuple(fraction for fraction, pattern in FRACTION_MOVES.items() if pattern.search(t.name))
            hit = matched[kind] = (bool(EXPERTS.search(t.name)), moves)
        expert, fractions = hit
        for fraction in fractions:
            entry = table.setdefault((t.layer, fraction), [0, 0])
            entry[0] += t.nbytes
            entry[1] += t.nbytes if expert else 0
    return {k: (v[0], v[1]) for k, v in table.items()}


def host_experts_compute_bytes(spec: ModelSpec, rt: Runtime) -> int:
    """The CPU's graph buffer for the feed-forward of layers whose experts stay in system memory: the
    routed experts' activations of one micro-batch, as on a CPU-only run."""
    b = min(rt.ubatch, rt.cells * max(1, rt.parallel))
    return 4 * b * (spec.ffn_floats + 5 * spec.shape.n_embd)


def estimate(
    spec: ModelSpec,
    rt: Runtime,
    split: Sequence[int] | None = None,
    *,
    output_gpu: int | None = None,
    moves: Sequence[Move] = (),
) -> MemoryEstimate:
    """Memory per device, placed as llama.cpp places it (src/llama-model.cpp, load_tensors).

    `split` is how many repeating layers each GPU holds, in GPU order; None puts every layer on one GPU (or,
    with backend cpu, everything in RAM). As with llama.cpp's -ngl, the offloaded layers are the LAST
    sum(split) layers (GPU 0 takes the first of them), the rest run on the CPU; the output layer sits on
    the last GPU that holds layers whenever any layer is offloaded (`output_gpu`, an index into `split`,
    names another: with -ngl 1 only the output layer is offloaded; see split_for_ngl). The input embedding
    stays on the host. Each layer's KV cache lives on its layer's device; every GPU that runs layers keeps
    a compute buffer; the CPU backend's buffer (inputs, mask) and the output buffer are on the host.
    `moves` keep parts of offloaded layers elsewhere (tensor overrides: --fit's experts in system memory)."""
    s = spec.shape
    if rt.backend == "cpu":
        split = ()
        moves = ()
    elif split is None:
        split = (s.n_layer,)
    if rt.kv_type not in KV_TYPES:
        raise ValueError(f"unknown KV cache type {rt.kv_type}")
    offloaded = min(sum(split), s.n_layer)
    out_dev = max((i for i, n in enumerate(split) if n), default=-1) if output_gpu is None else output_gpu
    out_gpu = 0 <= out_dev < len(split)
    first_gpu_layer = s.n_layer - offloaded
    owner: dict[int, int] = {}  # offloaded layer -> its device's position in split
    start = first_gpu_layer
    for d, n in enumerate(split):
        owner.update((i, d) for i in range(start, min(start + n, s.n_layer)))
        start += n
    leaving = [0] * len(split)
    arriving = [0] * (len(split) + 1)  # the last entry: system memory
    copies = [0] * len(split)  # a host-resident expert tensor copied in for a large batch (op offload)
    for m in moves:
        held = owner.get(m.layer)
        if held is None:
            continue  # an override of a layer that is on the CPU anyway
        leaving[held] += m.nbytes
        arriving[len(split) if m.to is None else m.to] += m.nbytes
        if m.to is None and rt.backend in OP_OFFLOAD_BACKENDS:
            copies[held] = max(copies[held], m.experts_bytes)
    # llama_context: pipeline parallelism with several devices, every layer offloaded and no tensor overrides
    # (a device holding nothing counts: it is one of the model's devices)
    holders = len(split) if offloaded == s.n_layer and out_gpu and not moves else 1
    gpus: list[DeviceMemory] = []
    start = first_gpu_layer
    for d, n in enumerate(split):
        layers = range(start, min(start + n, s.n_layer))
        start += n
        if not n and d != out_dev and not arriving[d]:
            continue
        weights = sum(spec.layer_bytes[i] for i in layers) + (spec.output_bytes if d == out_dev else 0)
        holds = _holds(layers, arriving[d], s.n_layer)
        gpus.append(
            DeviceMemory(
                name=f"GPU {d}",
                weights_bytes=weights - leaving[d] + arriving[d],
                kv_bytes=kv_bytes(spec, rt, layers),
                state_bytes=state_bytes(spec, rt, layers),
                compute_bytes=compute_bytes(spec, rt, gpus_holding_layers=holders, holds=holds) + copies[d],
                overhead_bytes=GPU_OVERHEAD[rt.backend] + rt.extra_overhead,
                layers=len(layers),
                learned_bytes=rt.extra_overhead,
                position=d,
            )
        )
    if rt.mtp_layers and gpus:  # the prediction block follows the last layer: with the output layer
        at = next(i for i, g in enumerate(gpus) if g.position == out_dev) if out_gpu else len(gpus) - 1
        gpus[at] = _with_mtp(spec, rt, gpus[at])
    cpu_layers = range(first_gpu_layer)
    host_weights = spec.input_bytes + sum(spec.layer_bytes[i] for i in cpu_layers) + arriving[-1]
    if not out_gpu:
        # llama.cpp shares a tied embedding with the output layer on the same device; the Go engine loads
        # it a second time as output.weight (ml/backend/ggml/ggml.go `New`)
        shared = spec.token_embd_bytes if spec.tied and not rt.engine else 0
        if shared and not rt.mmap and spec.shape.arch in OUTPUT_FIRST_ARCHS:
            shared = 0  # read in, not mapped: the output's copy and the embedding's are two tensors
        host_weights += spec.output_bytes - shared
    # Only a CPU-only llama.cpp run repacks: beside a GPU, CPU layers stay in the mapped file (measured,
    # -ngl 24); the Go engine never repacks. Mapped, the repacked copy sits beside pages the OS may drop;
    # read into memory (no mmap), it replaces the originals.
    repacked = 0 if gpus or rt.engine or not rt.mmap else _repack_bytes(spec, cpu_layers, with_output=not out_gpu)
    host_kv = kv_bytes(spec, rt, cpu_layers)
    host_compute = output_buffer_bytes(spec, rt)
    if gpus:
        host_compute += host_compute_bytes(spec, rt)
        if arriving[-1]:
            host_compute += host_experts_compute_bytes(spec, rt)
    else:
        host_compute += compute_bytes(spec, replace(rt, backend="cpu"))
    host = DeviceMemory(
        "RAM",
        host_weights + repacked,
        host_kv,
        host_compute,
        0,
        len(cpu_layers),
        state_bytes=state_bytes(spec, rt, cpu_layers),
        evictable_bytes=repacked,
    )
    if rt.mtp_layers and not gpus:
        host = _with_mtp(spec, rt, host)
    dm = rt.draft_model
    if dm is not None and rt.draft_file and rt.draft:
        # the draft follows the target's devices (with several GPUs, as the output layer: a simplification of
        # the draft's own layer split); its input embedding and output buffer stay in system memory
        if gpus:
            at = next(i for i, g in enumerate(gpus) if g.position == out_dev) if out_gpu else len(gpus) - 1
            gpus[at] = _with_draft(spec, rt, dm, gpus[at], gpu=True)
            host = replace(host, weights_bytes=host.weights_bytes + dm.input_bytes)
        else:
            host = _with_draft(spec, rt, dm, host, gpu=False)
        host = replace(host, compute_bytes=host.compute_bytes + draft_output_bytes(dm, rt))
    return MemoryEstimate(tuple(gpus), host, s.n_layer, offloaded, rt.cells, rt.backend, tuple(moves))
