"""A separate draft model for speculative decoding (Ollama's draft file, llama-server's --spec-draft-model): the
numbers of its GGUF that its memory depends on, and the --spec-type Ollama passes for it. Read from a header by
model/gguf/draft.py; kept apart so that the estimator does not import the GGUF reader."""

from __future__ import annotations

from dataclasses import dataclass

# llm/llama_server.go `draftTypeMTP`, `draftTypeDFlash` (Ollama v0.32.15 L803-804): the --spec-type Ollama passes
# for a GGUF's own prediction block or a draft file (`externalDraftType`, L826-835: "draft-dflash" for a draft GGUF
# of architecture `dflash`, "draft-mtp" for any other)
DRAFT_MTP = "draft-mtp"
DRAFT_DFLASH = "draft-dflash"


@dataclass(frozen=True)
class DraftModel:
    """The numbers of a draft GGUF that its memory depends on (sizes in bytes)."""

    name: str  # the file's name, for messages
    arch: str
    kind: str  # the --spec-type Ollama passes for it: draft-mtp or draft-dflash
    # every tensor of the file: a draft-mtp file is loaded with `load_mtp` (the --spec-type sets it for the draft
    # as for the target: common/common.cpp `common_model_params_to_llama` L1683), so its prediction block too; a
    # dflash file has no tensor llama.cpp skips (src/models/dflash.cpp `load_arch_tensors`)
    weights_bytes: int
    input_bytes: int  # token_embd: the input layer, kept in system memory beside GPUs
    n_embd: int
    n_vocab: int
    n_ff: int
    nextn_layers: int  # prediction blocks (`{arch}.nextn_predict_layers`)
    cached_layers: int  # layers the draft context caches: the blocks (draft-mtp) or every layer (dflash)
    kv_width: int  # K + V elements per cell of one cached layer
    target_layers: tuple[int, ...] = ()  # dflash: the target layers whose inputs it reads


def external_draft_type(arch: str) -> str:
    """llm/llama_server.go `externalDraftType` (v0.32.15 L826): the --spec-type of a model's draft file."""
    return DRAFT_DFLASH if arch == "dflash" else DRAFT_MTP
