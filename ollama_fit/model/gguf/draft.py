"""A separate draft model for speculative decoding (Ollama's draft file, llama-server's --spec-draft-model): what
llama.cpp b11434 loads from its GGUF header, and the pairings with a target it refuses.

Ollama 0.32.15 passes a draft file of architecture `dflash` as `--spec-type draft-dflash` and any other as
`draft-mtp` (llm/llama_server.go `externalDraftType`, L826-835). llama-server then loads the file as a second
llama_model with the target's model parameters (common/speculative.cpp `common_base_params_to_speculative` and
`common_speculative_init_result`) and creates a second context over the target's context size.
"""

from __future__ import annotations

from pathlib import Path

from ollama_fit.errors import BadModelFile, InvalidInput
from ollama_fit.model.draft import DRAFT_DFLASH, DRAFT_MTP, DraftModel, external_draft_type
from ollama_fit.model.gguf.reader import ArrayInfo, GGUFHeader, read_local_header, tensor_nbytes
from ollama_fit.model.spec import ModelShape


def draft_from_header(h: GGUFHeader, name: str = "draft") -> DraftModel:
    """The draft model of a GGUF header (no layer-count cross-check: an MTP-only drafter holds no trunk)."""
    arch = h.architecture
    kind = external_draft_type(arch)
    blocks = int(h.arch("block_count", 0) or 0)
    nextn = int(h.arch("nextn_predict_layers", 0) or 0)
    heads = h.arch("attention.head_count", 0)
    kv_heads = h.arch("attention.head_count_kv", heads)
    if isinstance(kv_heads, (list, tuple)):  # per layer: the blocks after the trunk (a full-attention layer)
        kv_heads = max(kv_heads[blocks - nextn :] if nextn else kv_heads, default=0)
    heads = max(heads) if isinstance(heads, (list, tuple)) else heads
    n_embd = int(h.arch("embedding_length", 0) or 0)
    key = int(h.arch("attention.key_length", 0) or (n_embd // int(heads) if heads else 0))
    value = int(h.arch("attention.value_length", key) or key)
    ff = h.arch("feed_forward_length", 0)
    tokens = h.get("tokenizer.ggml.tokens")  # a big array is counted, not kept (reader.ArrayInfo)
    n_vocab = tokens.count if isinstance(tokens, ArrayInfo) else len(tokens) if isinstance(tokens, tuple) else 0
    target = h.arch("target_layers", ())
    return DraftModel(
        name=name,
        arch=arch,
        kind=kind,
        weights_bytes=sum(tensor_nbytes(t) for t in h.tensors),
        input_bytes=sum(tensor_nbytes(t) for t in h.tensors if t.name == "token_embd.weight"),
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_ff=int(max(ff) if isinstance(ff, (list, tuple)) else ff or 0),
        nextn_layers=nextn,
        # llama-model.cpp `create_memory`: an MTP context caches only the blocks after the trunk (`filter = il >=
        # n_layer()`, L2816; Qwen3.5's hybrid memory becomes a plain cache, `mtp_on_hybrid_qwen` L2669);
        # dflash (no DSV4 hyper-connections) falls through to the plain cache over every layer (L2637-2660)
        cached_layers=blocks if kind == DRAFT_DFLASH else nextn,
        kv_width=int(kv_heads or 0) * (key + value),
        target_layers=tuple(int(i) for i in target) if isinstance(target, (list, tuple)) else (),
    )


def read_draft(path: Path) -> DraftModel:
    """A local draft GGUF; a one-line error when it is missing or is not a GGUF."""
    if not path.is_file():
        raise InvalidInput(
            f"draft file {str(path)!r} not found",
            hint="give the draft GGUF's path (Ollama's DRAFT file: `ollama show --modelfile` names its blob)",
        )
    try:
        header = read_local_header(path)
    except BadModelFile as e:
        raise BadModelFile(f"draft file {path.name}: {e.message}", hint=e.hint) from None
    except OSError as e:
        raise InvalidInput(
            f"cannot read draft file {path.name}: {e.strerror or e}", hint="check its permissions"
        ) from None
    return draft_from_header(header, path.name)


def check_pairing(draft: DraftModel, target: ModelShape) -> None:
    """Refuse a pairing llama-server b11434 refuses at start-up (measured: tests/fixtures/draft-llama-cpu.jsonl)."""
    if draft.kind == DRAFT_MTP and not draft.nextn_layers:
        # src/llama-context.cpp `llama_init_from_model` L3884-3887: "context type MTP requested but model doesn't
        # contain MTP layers", then server-context.cpp L1258 "failed to create MTP context": the server exits
        raise InvalidInput(
            f"draft file {draft.name} ({draft.arch}) has no MTP block: Ollama passes it as --spec-type draft-mtp "
            "and llama-server refuses to start",
            hint="use a draft with `nextn_predict_layers` (an MTP drafter) or a `dflash` drafter",
        )
    if draft.kind == DRAFT_MTP and draft.n_embd != target.n_embd:
        # common/speculative.cpp `common_speculative_impl_draft_mtp` L1437: GGML_ASSERT(n_embd == the target's)
        raise InvalidInput(
            f"draft file {draft.name} is {draft.n_embd} wide, the model {target.n_embd}: llama-server aborts "
            "(the MTP input row width must match the target's)",
            hint="use the MTP drafter made for this model",
        )
    if draft.kind == DRAFT_DFLASH and not draft.target_layers:
        # src/models/dflash.cpp `load_arch_hparams`: "DFlash model requires 'target_layers' in GGUF metadata"
        raise InvalidInput(
            f"draft file {draft.name} has no dflash.target_layers: llama-server refuses to load it",
            hint="convert the drafter with llama.cpp's convert_hf_to_gguf.py --target-model-dir",
        )
