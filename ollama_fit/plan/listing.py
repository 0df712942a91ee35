"""`list`: the catalog on this machine (the best quant of each model that fits), and `list --installed`:
the models Ollama already has, and whether each fits here at its context."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ollama_fit.hardware.model import ProbeReport
from ollama_fit.memory.estimate import (
    compute_bytes,
    draft_compute_bytes,
    draft_kv_bytes,
    draft_output_bytes,
    kv_bytes,
    state_bytes,
)
from ollama_fit.model.catalog import CatalogModel
from ollama_fit.model.draft import DraftModel
from ollama_fit.model.spec import ModelShape, ModelSpec, Tensor
from ollama_fit.placement.offload import KIND_TEXT
from ollama_fit.plan.planner import Candidate, Miss, PlanRequest, evaluate, rank_candidates
from ollama_fit.plan.tasks import floor_for, get_task
from ollama_fit.runtime.ollama import DEFAULT_DRAFT_TOKENS, LLAMA_SERVER_SINCE, NEWEST


@dataclass(frozen=True)
class CatalogRow:
    model: CatalogModel
    candidate: Candidate | None
    why_not: str = ""
    too_slow: bool = False  # it fits, but below the speed target (why_not says how fast)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model.to_dict(), "fits": self.candidate is not None}
        if self.candidate:
            c = self.candidate
            out |= {
                "quant": c.quant,
                "ctx": c.ctx,
                "where": c.placement.kind,
                "device_bytes": c.placement.memory.device_bytes,
                "host_bytes": c.placement.memory.host_required_bytes,
                "speed_tps": round(c.placement.speed.tps, 1) if c.placement.speed else None,
            }
        else:
            out["why_not"] = self.why_not
            out["too_slow"] = self.too_slow
        return out


def catalog_rows(
    report: ProbeReport, req: PlanRequest, models: Sequence[CatalogModel], *, show_all: bool = False
) -> list[CatalogRow]:
    """The best quant of each model that fits; older generations only with `show_all` (or when asked for
    by --model or --family)."""
    task = get_task(req.task)
    floor, _ = floor_for(task, req.min_quant)
    rows = []
    for model in rank_candidates(task, req, models):
        if model.superseded and not (show_all or req.model or req.family):
            continue
        outcome = evaluate(model, floor, req, report)
        if isinstance(outcome, tuple):
            rows.append(CatalogRow(model, outcome[0]))
        elif isinstance(outcome, Miss):
            rows.append(CatalogRow(model, None, outcome.why, outcome.too_slow))
    return rows


# ----- installed models -----


@dataclass(frozen=True)
class InstalledRow:
    name: str
    size_bytes: int
    ctx: int
    need_bytes: int | None  # predicted device (or RAM) bytes at ctx; None when the metadata is too thin
    fits: bool | None
    where: str
    # a model created with a draft file (Ollama's DRAFT / draft_files): how it drafts, or why its draft's context
    # is not counted ("" without one)
    draft: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "ctx": self.ctx,
            "need_bytes": self.need_bytes,
            "fits": self.fits,
            "where": self.where,
            "draft": self.draft,
        }


@dataclass(frozen=True)
class InstalledDraft:
    """The draft file /api/show names (its Modelfile's DRAFT line), read where this machine can reach it."""

    tokens: int  # draft_num_predict
    model: DraftModel | None  # None: the file is not readable here
    where: str  # the path Ollama gave


def installed_draft(modelfile: str, parameters: str) -> InstalledDraft | None:
    """The draft of an installed model: Ollama's Modelfile names its blob (server/images.go L601-604); the blob is
    read as Ollama's path gives it, else under this machine's Ollama folder by its digest file name."""
    from ollama_fit import config
    from ollama_fit.errors import BadModelFile
    from ollama_fit.model.gguf.draft import draft_from_header
    from ollama_fit.model.gguf.reader import read_local_header

    # parser.Command.String: `DRAFT path`, the path quoted only with a newline or an edge space (parser.go `quote`)
    line = re.search(r"(?m)^DRAFT[ \t]+(.+?)[ \t]*$", modelfile)
    if line is None:
        return None
    asked = re.search(r"(?m)^draft_num_predict\s+(\d+)", parameters)
    tokens = int(asked.group(1)) if asked else DEFAULT_DRAFT_TOKENS
    text = line.group(1)
    for mark in ('"""', '"'):
        if len(text) > 2 * len(mark) and text.startswith(mark) and text.endswith(mark):
            text = text[len(mark) : -len(mark)]
            break
    path = Path(text)
    for candidate in (path, config.ollama_models_dir() / "blobs" / path.name):
        try:
            header = read_local_header(candidate)
        except (OSError, BadModelFile):
            continue
        return InstalledDraft(tokens, draft_from_header(header, path.name), str(path))
    return InstalledDraft(tokens, None, str(path))


def _shape_from_info(info: dict[str, Any]) -> ModelShape | None:
    """The hyper-parameters from Ollama's model_info (GGUF keys; Ollama empties long arrays, which are left
    out), read as a GGUF header's are; None when they are too thin."""
    from ollama_fit.errors import BadModelFile
    from ollama_fit.model.gguf.reader import GGUFHeader
    from ollama_fit.model.gguf.shape import shape_from_metadata

    keys = {k: tuple(v) if isinstance(v, list) else v for k, v in info.items() if v != []}
    try:
        return shape_from_metadata(GGUFHeader(3, keys, (), 0, 32))
    except BadModelFile:
        return None


def installed_row(
    name: str,
    size: int,
    info: dict[str, Any],
    ctx: int | None,
    report: ProbeReport,
    version: tuple[int, int, int] = NEWEST,
    draft: InstalledDraft | None = None,
) -> InstalledRow:
    """An approximate check from what Ollama shows: the blob size as weights, KV and compute from the
    hyper-parameters in model_info (Ollama empties long arrays, so no tensor table), as Ollama `version` loads
    it at `ctx` (None: the model has no num_ctx, so the context Ollama gives it here). A draft file's weights are
    in the size already (the manifest's layers); its context (KV cache, graph, logits) is added when it is read."""
    from ollama_fit.plan.planner import PlanRequest, ollama_load, runtime

    shape = _shape_from_info(info)
    if shape is None:
        return InstalledRow(name, size, ctx or 0, None, None, "unknown (no hyper-parameters in model_info)")
    spec = ModelSpec(shape, (Tensor("weights", (size,), "I8"),), "installed")
    budget = report.budget
    backend = budget.gpus[0].backend if budget.gpus else "cpu"
    request = PlanRequest(ollama=version)
    ctx = ollama_load(request, report, ctx, shape, size).num_ctx  # no num_ctx: the one Ollama gives it here
    rt = runtime(request, report, ctx, shape, size)
    note = ""
    if draft is not None and draft.tokens and version >= LLAMA_SERVER_SINCE:
        if draft.model is None:
            note = f"draft file {draft.where} not readable here: its context is not counted"
        else:
            rt = replace(rt, draft=draft.tokens, draft_file=draft.model.kind, draft_model=draft.model)
            note = f"{draft.model.kind} with {draft.model.arch} draft file, {draft.tokens} tokens a step"
    need = size + kv_bytes(spec, rt) + state_bytes(spec, rt) + compute_bytes(spec, rt)
    if rt.draft_model is not None:
        need += draft_kv_bytes(rt.draft_model, rt) + draft_compute_bytes(spec, rt.draft_model, rt)
        need += draft_output_bytes(rt.draft_model, rt)
    if budget.gpus:
        from ollama_fit.memory.estimate import GPU_OVERHEAD

        need += GPU_OVERHEAD[backend]
        best = max(g.usable_bytes for g in budget.gpus)
        if need <= best:
            return InstalledRow(name, size, ctx, need, True, KIND_TEXT["gpu"], note)
    # GPU + RAM, or one pool on unified memory (the GPU's budget is a share of the RAM's)
    pool = budget.host.usable_bytes + (0 if budget.unified_memory else sum(g.usable_bytes for g in budget.gpus))
    fits_ram = need <= pool
    where = KIND_TEXT["partial" if budget.gpus else "cpu"] if fits_ram else "does not fit"
    return InstalledRow(name, size, ctx, need, fits_ram, where, note)


def installed_rows(ollama: Any, report: ProbeReport, ctx: int | None = None) -> list[InstalledRow]:
    """Each model Ollama has, at its own num_ctx (else the context Ollama gives it here, or `ctx` when asked),
    as the running Ollama version loads it."""
    from ollama_fit.runtime.ollama import OLDEST

    version = max(ollama.check().release, OLDEST)
    rows = []
    for name, size in ollama.models():
        shown = ollama.show(name)
        info = dict(getattr(shown, "modelinfo", None) or {}) if shown is not None else {}
        params = str(getattr(shown, "parameters", "") or "") if shown is not None else ""
        found = re.search(r"(?m)^num_ctx\s+(\d+)", params)
        modelfile = str(getattr(shown, "modelfile", "") or "") if shown is not None else ""
        draft = installed_draft(modelfile, params)
        rows.append(installed_row(name, size, info, int(found.group(1)) if found else ctx, report, version, draft))
    return rows
