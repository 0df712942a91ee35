"""The planner: the largest model that fits at the task's quality floor, then the best quant that fits.

Pure: hardware, catalog and request in, a Plan out (no I/O, no clock, no environment). Rules from the seed
measurements: a larger model at Q4_K_M beats a smaller one at FP16; raise the quant only once the model is
chosen; tasks set the floor (tasks.py); MoE models rank by sqrt(active x total) but cost their total size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.apple_advice import wired_limit_remedy
from ollama_fit.catalog import CatalogModel
from ollama_fit.errors import InvalidInput, NothingFits
from ollama_fit.estimate import Runtime
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.placement import KIND_ORDER, KIND_TEXT, Placement, Shortfall, max_context, place
from ollama_fit.quants import KV_TYPES, quant_table
from ollama_fit.tasks import Task, floor_for, get_task, meets
from ollama_fit.units import human

DEFAULT_CTX = 8192
DEFAULT_MIN_SPEED = 5.0  # tokens/s: below this, chat feels broken; --min-speed 0 turns the floor off
ALTERNATIVES = 3


@dataclass(frozen=True)
class PlanRequest:
    task: str = "chat"
    ctx: int | None = DEFAULT_CTX  # None: the largest context that fits
    kv_type: str = "f16"
    flash_attn: bool | None = None  # None: on where the GPUs support it
    min_quant: str | None = None
    family: str | None = None
    min_speed: float = DEFAULT_MIN_SPEED
    parallel: int = 1
    ubatch: int = 512
    model: str | None = None  # plan only this catalog id
    flash_attn_archs: tuple[str, ...] | None = None  # runtimes that turn flash attention on only for these
    overhead_correction: int = 0  # per-GPU bytes learned from real loads here (calibrate.py)
    correction_note: str = ""  # how it was learned, for the explanation
    runtime_notes: tuple[str, ...] = ()  # what the target runtime imposes (old Ollama and flash attention)


def parse_ctx(text: str) -> int | None:
    """'8192', '32k' or 'max' (None: the largest context that fits); one rule for every command."""
    from ollama_fit.validate import parse_ctx as parse

    return parse(text)


@dataclass(frozen=True)
class Candidate:
    model: CatalogModel
    quant: str
    ctx: int
    placement: Placement

    def to_dict(self) -> dict[str, Any]:
        q = quant_table()[self.quant]
        speed = self.placement.speed
        return {
            "model": self.model.to_dict(),
            "quant": self.quant,
            "ctx": self.ctx,
            "memory": self.placement.memory.to_dict(),
            "placement": self.placement.to_dict(),
            "speed_tps": round(speed.tps, 1) if speed else None,
            "speed": speed.to_dict() if speed else None,
            "quality": {"loss": q.quality_loss, "ppl_increase": q.ppl_increase, "source": q.source},
            "source": source(self.model, self.quant, self.placement.memory.weights_bytes),
            "exact": self.model.exact_for(self.quant) is not None,
        }


@dataclass(frozen=True)
class Plan:
    choice: Candidate
    alternatives: tuple[Candidate, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    task: str
    report: ProbeReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice.to_dict(),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "task": self.task,
            "hardware": self.report.to_dict(),
        }


HF_FILE_LIMIT = 50 * 1000**3  # the Hub stores files up to 50 GB: bigger quants are published as shards


def source(model: CatalogModel, quant: str, weights_bytes: int) -> dict[str, Any]:
    exact = model.exact_for(quant)
    if exact:  # the files the Hub lists, shards included
        return {
            "repo": model.repo,
            "files": list(exact.files),
            "file_bytes": exact.file_bytes,
            "split": len(exact.files) > 1,
            "resolved": True,
        }
    name = model.file_for(quant)
    split = weights_bytes > HF_FILE_LIMIT or "-of-" in name
    return {
        "repo": model.repo,
        "files": [] if split and "-of-" not in name else [name],
        "pattern": name,
        "split": split,
        "resolved": False,  # names from the catalog pattern; the Hub listing gives the exact files
    }


def runtime(req: PlanRequest, report: ProbeReport, ctx: int, arch: str | None = None) -> Runtime:
    """The request's runtime on this hardware (flash attention where every GPU has it, or only for the
    architectures the runtime turns it on for; learned overhead)."""
    gpus = report.hardware.gpus
    fa = req.flash_attn if req.flash_attn is not None else all(g.flash_attention for g in gpus)
    if req.flash_attn is None and req.flash_attn_archs is not None and arch not in req.flash_attn_archs:
        fa = False
    if req.kv_type not in KV_TYPES:
        raise InvalidInput(f"unknown KV cache type {req.kv_type!r}", hint=f"use one of {', '.join(KV_TYPES)}")
    if req.kv_type not in ("f16", "bf16", "f32") and not fa:
        raise InvalidInput(
            f"a {req.kv_type} KV cache needs flash attention",
            hint="drop --flash-attn off, or use --kv-type f16",
        )
    backend = report.budget.gpus[0].backend if report.budget.gpus else "cpu"
    return Runtime(
        ctx=ctx,
        kv_type=req.kv_type,
        flash_attn=fa,
        ubatch=req.ubatch,
        parallel=req.parallel,
        backend=backend,
        extra_overhead=req.overhead_correction if backend != "cpu" else 0,
    )


def rank_candidates(task: Task, req: PlanRequest, models: Sequence[CatalogModel]) -> list[CatalogModel]:
    chosen = [m for m in models if task.capability in m.capabilities]
    if req.family:
        chosen = [m for m in chosen if m.family == req.family.lower()]
    if req.model:
        chosen = [m for m in chosen if m.id == req.model.lower()]
    if not chosen:
        what = f"family {req.family!r}" if req.family else f"model {req.model!r}" if req.model else "catalog"
        raise InvalidInput(
            f"no {task.capability} model in the {what} for the {task.name} task",
            hint="`ollama-fit list` shows the models and what each is good for",
        )
    return sorted(chosen, key=lambda m: (-round(m.effective_b, 1), -m.priority, m.id))


def _ladder(model: CatalogModel, floor: str) -> list[str]:
    """The model's quants that meet the floor, best first; the last one is the floor's."""
    table = quant_table()
    allowed = [q for q in model.quants if q in table and meets(q, floor)]
    return sorted(allowed, key=lambda q: (table[q].quality_loss_max_pct, table[q].rank))


def _fast_enough(p: Placement, req: PlanRequest) -> bool:
    """Unknown speeds pass; an upper bound (a GPU of unknown bandwidth left out) must still reach it."""
    return req.min_speed <= 0 or p.speed is None or p.speed.tps >= req.min_speed


@dataclass(frozen=True)
class Miss:
    model: CatalogModel
    quant: str
    why: str


def _try(model: CatalogModel, quant: str, rt: Runtime, report: ProbeReport) -> Placement | Shortfall:
    return place(model.spec(quant), rt, report.budget, report.hardware)


def _model_ctx(req: PlanRequest, model: CatalogModel) -> int:
    trained = model.shape.context_length
    return min(req.ctx or DEFAULT_CTX, trained)


def _upgrade(
    model: CatalogModel,
    ladder: list[str],
    floor_p: Placement,
    rt: Runtime,
    report: ProbeReport,
    req: PlanRequest,
) -> tuple[str, Placement, list[str]]:
    """Raise the quant as far as memory allows without a worse placement or a too-slow result."""
    notes: list[str] = []
    for q in ladder[:-1]:
        p = _try(model, q, rt, report)
        if isinstance(p, Placement) and KIND_ORDER[p.kind] <= KIND_ORDER[floor_p.kind] and _fast_enough(p, req):
            return q, p, notes
        if isinstance(p, Shortfall):
            notes.append(f"{q} would need {human(p.need_bytes)} on {p.device} ({human(p.have_bytes)} usable)")
    return ladder[-1], floor_p, notes


def _miss_reason(model: CatalogModel, quant: str, result: Placement | Shortfall, req: PlanRequest) -> str:
    if isinstance(result, Shortfall):
        return (
            f"needs {human(result.need_bytes)} on {result.device}, {human(result.have_bytes)} usable "
            f"({human(result.missing_bytes)} short)"
        )
    speed = result.speed.tps if result.speed else 0
    where = KIND_TEXT[result.kind]
    return f"fits {where} but would decode at ~{speed:.1f} tok/s, below --min-speed {req.min_speed:g}"


def evaluate(
    model: CatalogModel, floor: str, req: PlanRequest, report: ProbeReport
) -> tuple[Candidate, list[str]] | Miss | None:
    """A model at its floor quant: a miss (with why), or the candidate raised as far as it goes and the
    notes on the quants it could not reach; None when it offers no quant that meets the floor."""
    ladder = _ladder(model, floor)
    if not ladder:
        return None
    rt = runtime(req, report, _model_ctx(req, model), model.shape.arch)
    result = _try(model, ladder[-1], rt, report)
    if not isinstance(result, Placement) or not _fast_enough(result, req):
        return Miss(model, ladder[-1], _miss_reason(model, ladder[-1], result, req))
    quant, placement, notes = _upgrade(model, ladder, result, rt, report, req)
    return Candidate(model, quant, rt.ctx, placement), notes


def plan(report: ProbeReport, req: PlanRequest, models: Sequence[CatalogModel]) -> Plan:
    task = get_task(req.task)
    floor, warnings = floor_for(task, req.min_quant)
    if req.parallel < 1 or req.ubatch < 1 or (req.ctx is not None and req.ctx < 256):
        raise InvalidInput("--ctx must be at least 256, --parallel and --ubatch at least 1")
    candidates = rank_candidates(task, req, models)
    reasons = [f"task {task.name}: quality floor {floor} ({task.note})"]
    misses: list[Miss] = []
    chosen: Candidate | None = None
    extra: list[str] = []
    for model in candidates:
        outcome = evaluate(model, floor, req, report)
        if isinstance(outcome, Miss):
            misses.append(outcome)
        elif outcome is not None:
            chosen, extra = outcome
            break
    if chosen is None:
        raise _nothing_fits(misses, report)
    if req.ctx is None:
        chosen, ctx_note = _maximize_context(chosen, req, report)
        reasons.append(ctx_note)
    elif req.ctx > chosen.model.shape.context_length:
        reasons.append(f"context capped at {chosen.model.name}'s trained length, {chosen.ctx} tokens")
    reasons.extend(_explain(chosen, misses, extra, floor, req, report, task))
    if req.correction_note and report.budget.gpus:
        reasons.append(req.correction_note)
    reasons.extend(req.runtime_notes)
    alternatives = _alternatives(chosen, candidates, floor, req, report)
    if chosen.quant == "Q2_K":
        warnings.append(f"{chosen.model.name} at Q2_K: a last resort, expect clearly worse answers")
    return Plan(chosen, alternatives, tuple(reasons), tuple(warnings), task.name, report)


def _maximize_context(c: Candidate, req: PlanRequest, report: ProbeReport) -> tuple[Candidate, str]:
    rt = runtime(req, report, c.ctx, c.model.shape.arch)
    trained = c.model.shape.context_length
    best = max_context(
        c.model.spec(c.quant),
        rt,
        report.budget,
        report.hardware,
        c.placement.kind,
        trained,
        accept=lambda p: _fast_enough(p, req),
    )
    if best is None:
        return c, f"context {c.ctx}: no larger context fits"
    ctx = min(best.memory.kv_cells, trained)
    capped = " (its trained length)" if ctx >= trained else ""
    return Candidate(c.model, c.quant, ctx, best), f"--ctx max: {ctx} tokens is the largest context that fits{capped}"


def _explain(
    c: Candidate,
    misses: list[Miss],
    upgrade_notes: list[str],
    floor: str,
    req: PlanRequest,
    report: ProbeReport,
    task: Task,
) -> list[str]:
    out = []
    rule = "MoE ranked by sqrt(active x total parameters)" if c.model.is_moe else "largest model first"
    out.append(
        f"picked {c.model.name} ({c.model.effective_b:.1f}B effective; {rule}): the largest that fits "
        f"{KIND_TEXT[c.placement.kind]} at {floor} or better"
    )
    if c.quant != floor:
        out.append(f"raised to {c.quant}, the best quant that still fits")
    elif upgrade_notes:
        out.append(f"stays at {c.quant}: " + "; ".join(upgrade_notes[-1:]))
    if misses:
        larger = misses[-1]
        out.append(f"next larger, {larger.model.name} at {larger.quant}: {larger.why}")
        out.extend(_remedies(larger, req, report, task))
        if len(misses) > 1:
            out.append(f"{len(misses) - 1} other larger model(s) do not fit either")
    return out


def _remedies(miss: Miss, req: PlanRequest, report: ProbeReport, task: Task) -> list[str]:
    """What would make the next-larger model fit: shorter context, a q8_0 KV cache, a higher macOS
    wired limit, or a smaller quant."""
    model = miss.model
    rt = runtime(req, report, _model_ctx(req, model), model.shape.arch)
    spec = model.spec(miss.quant)
    tips = []
    shorter = None
    if rt.ctx > 2048:
        shorter = max_context(
            spec,
            rt,
            report.budget,
            report.hardware,
            "cpu",
            rt.ctx - 256,
            accept=lambda p: _fast_enough(p, req),
        )
    if shorter and shorter.memory.kv_cells >= 2048:
        tips.append(f"it would fit with --ctx {shorter.memory.kv_cells}")
    if rt.kv_type == "f16" and rt.flash_attn:
        q8 = place(spec, replace(rt, kv_type="q8_0"), report.budget, report.hardware)
        if isinstance(q8, Placement) and _fast_enough(q8, req):
            tips.append("it would fit with --kv-type q8_0 (a q8_0 KV cache halves its size)")
    apple = wired_limit_remedy(spec, rt, report)
    if apple:
        tips.append(apple)
    table = quant_table()
    for q in sorted(model.quants, key=lambda q: table[q].quality_loss_max_pct):
        if not meets(q, task.lowest) or table[q].quality_loss_max_pct <= table[miss.quant].quality_loss_max_pct:
            continue  # only quants the task may use, below the one that missed
        p = _try(model, q, rt, report)
        if isinstance(p, Placement) and _fast_enough(p, req):
            tips.append(f"it would fit at {q} ({table[q].quality_loss} quality loss; allow with --min-quant {q})")
            break
    return [f"  to fit it: {t}" for t in tips]


def _alternatives(
    chosen: Candidate, candidates: Sequence[CatalogModel], floor: str, req: PlanRequest, report: ProbeReport
) -> tuple[Candidate, ...]:
    found: list[Candidate] = []
    start = candidates.index(chosen.model) + 1
    for model in candidates[start:]:
        outcome = evaluate(model, floor, req, report)
        if isinstance(outcome, tuple):
            found.append(outcome[0])
        if len(found) == ALTERNATIVES:
            break
    return tuple(found)


def _nothing_fits(misses: list[Miss], report: ProbeReport) -> NothingFits:
    budget = report.budget
    where = ", ".join(f"{g.name}: {human(g.usable_bytes)}" for g in budget.gpus) or "no GPU"
    if not misses:
        return NothingFits("no catalog model offers a quant that meets this task's floor")
    smallest = misses[-1]
    return NothingFits(
        f"nothing fits: even {smallest.model.name} at {smallest.quant} {smallest.why}",
        hint=f"usable memory is {where}; RAM {human(budget.host.usable_bytes)}. Try a shorter --ctx, "
        "--kv-type q8_0, --min-quant Q3_K_M (low-sensitivity tasks), or --min-speed 0",
    )
