"""What a given Ollama version does with a GGUF load, read from its source (docs/ollama.md lists each rule with
the file and version it comes from): which program runs the model, the context and batch it gets, flash
attention, the KV cache type, mmap, the llama-server command line since 0.30, and the `Runtime` the memory
estimator is given for it.

Pure functions of the version, the model's shape and the hardware: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.errors import InvalidInput
from ollama_fit.hardware.model import Gpu
from ollama_fit.memory.estimate import Runtime
from ollama_fit.model.draft import DRAFT_MTP, external_draft_type
from ollama_fit.model.spec import ModelShape
from ollama_fit.units import GiB, MiB

Version = tuple[int, int, int]

NEWEST: Version = (0, 32, 15)  # the newest version these rules were read from (and tested against, for real)
LLAMA_SERVER_SINCE: Version = (0, 30, 0)  # PR #16031: every GGUF model runs in llama.cpp's llama-server
OLDEST: Version = (0, 13, 0)  # the oldest version modelled: the runner did real fit/alloc passes from 0.12.11
# fs/ggml/ggml.go `OllamaEngineRequired` (v0.24.0): before 0.30 these ran in Ollama's own Go engine, the rest
# in its vendored llama.cpp runner
ENGINE_ARCHS = frozenset(
    [
        "bert",
        "deepseek2",
        "deepseekocr",
        "gemma3",
        "gemma3n",
        "gemma4",
        "gptoss",
        "gpt-oss",
        "laguna",
        "llama4",
        "mistral3",
        "mllama",
        "nemotron_h",
        "nemotron_h_moe",
        "nemotron_h_omni",
        "nomic-bert",
        "olmo3",
        "qwen25vl",
        "qwen3",
        "qwen3moe",
        "qwen35",
        "qwen35moe",
        "qwen3next",
        "qwen3vl",
        "qwen3vlmoe",
        "glm4moelite",
        "glmocr",
        "lfm2",
        "lfm2moe",
    ]
)
# server/sched.go (v0.32.15) `Scheduler.load`: one slot whatever OLLAMA_NUM_PARALLEL says
SINGLE_SLOT_ARCHS = frozenset(
    [
        "mllama",
        "qwen3vl",
        "qwen3vlmoe",
        "qwen35",
        "qwen35moe",
        "qwen3next",
        "lfm2",
        "lfm2moe",
        "nemotron_h",
        "nemotron_h_moe",
        "nemotron_h_omni",
    ]
)
# server/sched.go `generationBatchForContext`: the batch for num_ctx x parallel (limit, batch); above: 2048
BATCH_STEPS = ((4096, 512), (32768, 1024), (1 << 62, 2048))
# `generationBatchHasHeadroom` / `generationBatchSurcharge`: a batch above 512 is kept only while the predicted
# VRAM is at most this share of what is available and its surcharge still fits under 80% of it
BATCH_HEADROOM = {2048: (0.60, 2 * GiB), 1024: (0.75, 768 * MiB)}
DEFAULT_BATCH = 512  # api.DefaultOptions().NumBatch
# routes.go: the default context by total VRAM (minus OLLAMA_GPU_OVERHEAD per GPU)
CTX_TIERS = ((47 * GiB, 262144), (23 * GiB, 32768))
CTX_FALLBACK = 4096
NUM_KEEP = 4  # api.DefaultOptions().NumKeep, passed as --keep with --context-shift
# api.DefaultOptions().DraftNumPredict (api/types.go L1119): kept for a model created with a draft file, zeroed
# for the others unless draft_num_predict is set (server/routes.go L154)
DEFAULT_DRAFT_TOKENS = 4
# llm/llama_server.go `mmprojOffloadHeadroom`: a projector goes to the GPU only where the projector and this
# much more are free, and LLAMA_ARG_FIT_TARGET becomes projector + this (llama.cpp's own margin is the same 1 GiB)
PROJECTOR_HEADROOM = GiB


def parse_version(text: str, strict: bool = True) -> Version:
    """'0.32.15', 'v0.30.0-rc2' or '0.24' -> (0, 32, 15); a development build ('0.0.0') counts as the newest.
    Not `strict` (what a server reports): anything else is (0, 0, 0), older than every version."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match and not strict:
        return (0, 0, 0)
    if not match:
        raise InvalidInput(
            f"invalid Ollama version {text!r}", hint=f"give it as `ollama --version` prints it, e.g. {show(NEWEST)}"
        )
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
    return NEWEST if version == (0, 0, 0) else version


def show(version: Version) -> str:
    return ".".join(map(str, version))


def check_modelled(version: Version) -> None:
    if version < OLDEST:
        raise InvalidInput(
            f"Ollama {show(version)} is older than the oldest version ollama-fit models ({show(OLDEST)})",
            hint=f"give --ollama-version {show(OLDEST)} or newer, or update Ollama (the newest modelled is "
            f"{show(NEWEST)})",
        )


def engine_for(version: Version, arch: str | None) -> str:
    """The program that runs a GGUF model: the Runtime.runner name the estimator knows."""
    if version >= LLAMA_SERVER_SINCE:
        return "llama-server"
    return "ollama-engine" if arch in ENGINE_ARCHS else "ollama"


def default_num_ctx(gpu_totals: Sequence[int], gpu_overhead: int = 0) -> int:
    """routes.go: the context of a model run without num_ctx (and without OLLAMA_CONTEXT_LENGTH), from the
    total VRAM less OLLAMA_GPU_OVERHEAD per GPU (Metal: the recommended working set). CPU only: 4096."""
    total = sum(max(0, t - gpu_overhead) for t in gpu_totals)
    return next((ctx for floor, ctx in CTX_TIERS if total >= floor), CTX_FALLBACK)


def slots(version: Version, arch: str | None, requested: int) -> int:
    """OLLAMA_NUM_PARALLEL, except for the architectures the scheduler gives one slot (0.30 and later)."""
    if version >= LLAMA_SERVER_SINCE and arch in SINGLE_SLOT_ARCHS:
        return 1
    return max(1, requested)


def predict_server_vram(file_bytes: int, s: ModelShape, effective_ctx: int) -> int:
    """llm/llama_server.go `PredictServerVRAM`: the whole file plus an f16 KV cache of every layer at the
    fewest KV heads and embedding / most heads as the head size. Ollama's own rough guess, used only for its
    batch and mmap decisions (which is why it is copied exactly, head size and all)."""
    kv_heads = min(s.n_head_kv, default=0) or 1  # HeadCountKVMin: a recurrent layer's 0 counts, then 1
    head_dim = s.n_embd // max(1, s.n_head)
    return file_bytes + 2 * s.n_layer * kv_heads * head_dim * effective_ctx * 2


def flash_attention(gpus: Sequence[Gpu], env: str | None = None) -> str:
    """`LlamaServerFlashAttention`: OLLAMA_FLASH_ATTENTION decides when set; else off where a GPU lacks it,
    else auto (llama.cpp then turns it on where the backend supports it; on the CPU it does)."""
    if env is not None and env.strip() != "":
        return "off" if env.strip().lower() in ("0", "f", "false") else "on"
    return "auto" if all(g.flash_attention for g in gpus) else "off"


def generation_batch(
    effective_ctx: int, predicted: int, available: int, flash_attn: str, cuda_memory: Sequence[int] = ()
) -> int:
    """sched.go `automaticGenerationBatch`: 512 up to 4096 tokens of num_ctx x parallel, 1024 up to 32768, 2048
    above; stepped down while the predicted VRAM leaves too little headroom on the GPUs (none on a CPU-only
    machine: nothing is available there, so nothing is checked). CUDA without flash attention: 512, or 256
    on cards of 8 GiB or less above 4096 tokens. `cuda_memory`: each CUDA card's free (else total) bytes."""
    if flash_attn == "off" and cuda_memory:
        return 256 if effective_ctx > 4096 and any(m <= 8 * GiB for m in cuda_memory) else DEFAULT_BATCH
    batch = next(b for limit, b in BATCH_STEPS if effective_ctx <= limit)
    while batch > DEFAULT_BATCH and not _batch_fits(batch, predicted, available):
        batch //= 2
    return batch


def _batch_fits(batch: int, predicted: int, available: int) -> bool:
    if not predicted or not available:
        return True
    threshold = available * 80 // 100
    share, surcharge = BATCH_HEADROOM[batch]
    return predicted <= threshold and predicted <= available * share and surcharge <= threshold - predicted


def separate_projector(version: Version) -> bool:
    """Whether a model created with a projector GGUF beside it loads both: from 0.30 llama-server takes it as
    --mmproj; before, the Go engine refused split vision models ("split vision models aren't supported")."""
    return version >= LLAMA_SERVER_SINCE


def projector_on_gpu(gpus: Sequence[Gpu], projector_bytes: int) -> bool:
    """llm/llama_server.go `shouldDisableMMProjOffload` (num_gpu unset): the projector is offloaded unless
    there is no GPU or some GPU has less than projector + 1 GiB (free, else total, memory)."""
    need = projector_bytes + PROJECTOR_HEADROOM
    return bool(gpus) and all((g.memory_free_bytes or g.memory_total_bytes) >= need for g in gpus)


def use_mmap(
    gpus: Sequence[Gpu], predicted: int, available: int, free_ram: int, total_ram: int, os: str, file_bytes: int
) -> bool:
    """sched.go `applyLlamaServerMmapDefaults` (the user's use_mmap aside): off on CPU-only machines, with
    CUDA on Windows, for a partial offload on Metal, and on Linux when the model is expected to fit discrete
    GPUs but free RAM is below the file plus max(8 GB, RAM/10) (host-memory pressure)."""
    if not gpus:
        return False
    if os == "windows" and any(g.backend == "cuda" for g in gpus):
        return False
    if any(g.backend == "metal" for g in gpus) and predicted > available > 0:
        return False
    if os == "linux" and not any(g.unified_memory for g in gpus) and 0 < predicted <= available * 80 // 100:
        # Ollama adds the files of other models it has mapped; a plan loads one
        return free_ram >= file_bytes + max(8 * 10**9, total_ram // 10)
    return True


@dataclass(frozen=True)
class OllamaLoad:
    """What one Ollama version will run for one model: the program, its settings and (0.30+) its argv."""

    version: Version
    engine: str  # llama-server, ollama-engine (the Go engine) or ollama (its vendored llama.cpp runner)
    num_ctx: int  # per slot
    parallel: int
    batch: int  # -b = -ub for llama-server; the Go engine's one batch
    flash_attn: str  # on, off or auto as passed
    kv_type: str
    mmap: bool
    context_shift: bool = True  # sched.go `supportsContextShift`: every family but deepseek2
    argv: tuple[str, ...] = ()  # llama-server's command line as Ollama builds it; empty before 0.30
    # speculative decoding with the GGUF's own prediction block (llama_server.go `appendDraftArgs`): the tokens
    # drafted per step (the model's draft_num_predict; 0: off, Ollama's default for a model without a draft file)
    draft: int = 0
    mtp_layers: int = 0  # the prediction blocks loaded for it (0 when not drafting)
    # a draft file (server/images.go: the layer `application/vnd.ollama.image.draft` becomes Model.DraftPath,
    # routes.go `llamaServerConfigForModel` passes it as DraftModelPath): its --spec-type (external_draft_type),
    # "" without one or when not drafting
    draft_file: str = ""

    def runtime(self, backend: str, flash_attn_resolved: bool, extra_overhead: int = 0) -> Runtime:
        """The estimator's view of this load. A llama-server load keeps Ollama's batch rule, so that a context
        search by the planner gets the batch Ollama would pick at each context."""
        steps = BATCH_STEPS if self.engine == "llama-server" else ()
        return Runtime(
            ctx=self.num_ctx,
            kv_type=self.kv_type,
            flash_attn=flash_attn_resolved,
            ubatch=self.batch,
            parallel=self.parallel,
            backend=backend,
            extra_overhead=extra_overhead,
            runner=self.engine,
            batch_steps=steps,
            batch_cap=self.batch if steps else 0,
            mmap=self.mmap,
            mtp_layers=self.mtp_layers,
            draft=self.draft,
            draft_file=self.draft_file,
        )

    def _draft_dict(self) -> dict[str, Any] | None:
        if not self.draft:
            return None
        out: dict[str, Any] = {"type": self.draft_file or DRAFT_MTP, "tokens": self.draft}
        return out | {"file": True} if self.draft_file else out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ollama_version": show(self.version),
            "engine": self.engine,
            "num_ctx": self.num_ctx,
            "parallel": self.parallel,
            "batch": self.batch,
            "flash_attn": self.flash_attn,
            "kv_type": self.kv_type,
            "mmap": self.mmap,
            "context_shift": self.context_shift,
            "draft": self._draft_dict(),
            "argv": list(self.argv) or None,
        }


@dataclass(frozen=True)
class Machine:
    """What Ollama's scheduler looks at: the GPUs, free and total RAM, the OS."""

    gpus: tuple[Gpu, ...] = ()
    free_ram: int = 0
    total_ram: int = 0
    os: str = "linux"


def plan_load(
    version: Version,
    shape: ModelShape | None,
    machine: Machine,
    num_ctx: int | None,
    file_bytes: int = 0,
    parallel: int = 1,
    kv_type: str = "f16",
    env: Mapping[str, str] | None = None,
    draft: int = 0,
    mtp_layers: int = 0,
    draft_arch: str | None = None,
) -> OllamaLoad:
    """The load Ollama `version` makes of a model (`shape`, its GGUF of `file_bytes`; None: not known yet) on
    `machine` for a request at `num_ctx` (None: the model has none, Ollama's default applies) with
    OLLAMA_NUM_PARALLEL = `parallel`. `env`: the server's OLLAMA_* settings that change the load
    (OLLAMA_FLASH_ATTENTION, OLLAMA_CONTEXT_LENGTH, OLLAMA_GPU_OVERHEAD). `draft`: the model's
    draft_num_predict; it drafts with the GGUF's prediction block (`mtp_layers` of them) from 0.30 on, or with
    a draft file of architecture `draft_arch` (None: the model has none). A model with a draft file drafts 4
    tokens unless draft_num_predict says otherwise: routes.go `modelOptionsWithEmbeddingBatchDefault` zeroes the
    default (api.DefaultOptions DraftNumPredict 4) only for a model without one; give that default as `draft`."""
    env = env or {}
    check_modelled(version)
    arch = shape.arch if shape else None
    engine = engine_for(version, arch)
    n_slots = slots(version, arch, parallel)
    if num_ctx is None:
        fixed = int(env.get("OLLAMA_CONTEXT_LENGTH", "0") or 0)
        overhead = int(env.get("OLLAMA_GPU_OVERHEAD", "0") or 0)
        num_ctx = fixed or default_num_ctx([g.memory_total_bytes for g in machine.gpus], overhead)
    trained = shape.context_length if shape else 0
    ctx = max(4, min(num_ctx, trained) if trained else num_ctx)
    fa = flash_attention(machine.gpus, env.get("OLLAMA_FLASH_ATTENTION"))
    shift = arch != "deepseek2"
    if engine != "llama-server":  # the Go engine reads its weights into memory; the llama.cpp runner maps them
        mapped = engine == "ollama"
        return OllamaLoad(version, engine, ctx, n_slots, min(DEFAULT_BATCH, ctx), fa, kv_type, mapped, shift)
    predicted = predict_server_vram(file_bytes, shape, ctx * n_slots) if shape and file_bytes else 0
    available = sum(g.memory_free_bytes for g in machine.gpus)
    cuda = [g.memory_free_bytes or g.memory_total_bytes for g in machine.gpus if g.backend == "cuda"]
    batch = generation_batch(ctx * n_slots, predicted, available, fa, cuda)
    mmap = use_mmap(machine.gpus, predicted, available, machine.free_ram, machine.total_ram, machine.os, file_bytes)
    if draft_arch is not None:
        # NewLlamaServerRunner (llama_server.go L901-913): with a draft file the GGUF's own block is not used as
        # the draft (EnableMTP stays off) and the type is the file's; `appendDraftArgs` L807-823
        drafting = max(0, draft)
        load = OllamaLoad(
            version, engine, ctx, n_slots, batch, fa, kv_type, mmap, shift, draft=drafting,
            draft_file=external_draft_type(draft_arch) if drafting else "",
        )  # fmt: skip
        return replace(load, argv=tuple(server_argv(load)))
    drafting = draft if draft > 0 and mtp_layers > 0 else 0  # `hasMTPDraft`, `appendDraftArgs`
    load = OllamaLoad(
        version, engine, ctx, n_slots, batch, fa, kv_type, mmap, shift, draft=drafting,
        mtp_layers=mtp_layers if drafting else 0,
    )  # fmt: skip
    return replace(load, argv=tuple(server_argv(load)))


def server_argv(load: OllamaLoad, model: str = "MODEL", port: str = "PORT", draft_model: str = "DRAFT") -> list[str]:
    """llm/llama_server.go `startLlamaServer` (v0.32.15) for a text model with no num_gpu, num_thread or
    main_gpu set: llama-server then fits the layers itself (--fit, on by default)."""
    argv = ["llama-server", "--model", model, "--port", port, "--host", "127.0.0.1", "--no-webui", "--offline"]
    argv += ["-c", str(load.num_ctx * load.parallel), "-np", str(load.parallel)]
    argv += ["--log-verbosity", "4", "--no-log-prefix", "--no-log-timestamps"]
    if load.draft:  # `appendDraftArgs` (L807-823), after the log (and jinja / mmproj) arguments
        spec_type = load.draft_file or DRAFT_MTP
        argv += ["--spec-type", spec_type, "--spec-draft-n-max", str(load.draft)]
        if spec_type == DRAFT_MTP:
            argv += ["--spec-draft-backend-sampling"]
        if load.draft_file:
            argv += ["--spec-draft-model", draft_model]
    if not load.mmap:
        argv += ["--load-mode", "none"]
    if load.kv_type != "f16":
        argv += ["--cache-type-k", load.kv_type, "--cache-type-v", load.kv_type]
    argv += ["--flash-attn", load.flash_attn, "-b", str(load.batch), "-ub", str(load.batch)]
    if load.context_shift:
        argv += ["--context-shift", "--keep", str(NUM_KEEP)]
    return argv
