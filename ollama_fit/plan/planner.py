"""The planner: the largest model a user would run here, then the best quant that keeps it where it is.

Pure: hardware, catalog and request in, a Plan out (no I/O, no clock, no environment). A candidate fits when
it meets the task's quality floor (the seed measurements: a larger model at Q4_K_M beats a smaller one at
FP16), fits the memory and decodes at the task's speed target. Among those the largest effective size wins
(MoE models count sqrt(active x total), older generations of a family count half their size), except that
a model wholly on the GPU beats a partly offloaded one that is at most 1.5x its size. The quant is raised
only while every layer stays where it was and the speed target still holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.errors import InvalidInput, NothingFits
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.memory.estimate import Runtime, estimate
from ollama_fit.model.catalog import CatalogModel
from ollama_fit.model.quants import KV_TYPES, quant_table
from ollama_fit.model.spec import ModelShape, ModelSpec
from ollama_fit.placement.offload import KIND_TEXT, Placement, Shortfall, all_memory, max_context, place
from ollama_fit.plan.apple_advice import wired_limit_remedy
from ollama_fit.plan.tasks import Task, floor_for, get_task, meets
from ollama_fit.runtime.ollama import NEWEST, OllamaLoad
from ollama_fit.speed import Speed, prompt_speed
from ollama_fit.speed.params import PARAMS
from ollama_fit.speed.prompt import PROMPT_TOKENS
from ollama_fit.units import human

DEFAULT_CTX = 8192
ALTERNATIVES = 3
NEARLY = 1.5  # a wholly-on-GPU model beats a partly offloaded one at most this many times its size
# ... and one at most twice its size when the partly offloaded pick is marginal: its speed range (where 90% of
# measurements fall) reaches below the target, so it may well crawl where the resident one would not
MARGINAL_NEARLY = 2.0
# an older generation of a family ranks as if it were this share of its size: at 2/3, Mistral Small 3.2 24B
# (2025-06, replaced by Mistral Small 4) still outranked Mistral's Ministral 3 14B (2025-12) on a 24 GB Mac
SUPERSEDED_WEIGHT = 1 / 2
# Across families: a model released this many months or more before a candidate of comparable size (at least
# 1/NEARLY of its size) ranks at SUPERSEDED_WEIGHT of its size too; the release dates are the catalog's
AGED_MONTHS = 12


@dataclass(frozen=True)
class PlanRequest:
    """What a plan is asked for: task, context, quant floor, speed target and the runtime's rules."""

    task: str = "chat"
    ctx: int | None = DEFAULT_CTX  # None: the largest context that fits
    kv_type: str = "f16"
    flash_attn: bool | None = None  # None: on where the GPUs support it
    min_quant: str | None = None
    family: str | None = None
    min_speed: float | None = None  # tokens/s; None: the task's target; 0: no target
    quant: str | None = None  # pin the quant: plan that quant (or say why it does not fit)
    parallel: int = 1
    ubatch: int | None = None  # None: the runner's own (Ollama's automatic batch, llama-server's 512)
    model: str | None = None  # plan only this catalog id
    # the Ollama version that will run the model (runtime/ollama.py); None: llama.cpp's llama-server itself
    ollama: tuple[int, int, int] | None = NEWEST
    ollama_from: str = "newest"  # where that version came from: newest (modelled), option, server
    # no --ctx given: plan at least the context Ollama gives a model without num_ctx on this machine (its VRAM
    # tier, lowered as it lowers it when that does not fit), never less than `ctx`
    ctx_auto: bool = False
    vision: bool = True  # pull and plan the repository's vision projector with the pick (False: --text-only)
    draft: int = 0  # draft_num_predict: tokens drafted per step by the GGUF's own prediction block (0: off)
    draft_arch: str | None = None  # the architecture of the model's draft file (inspect --draft-file); None: none
    flash_attn_archs: tuple[str, ...] | None = None  # runtimes that turn flash attention on only for these
    overhead_correction: int = 0  # per-GPU bytes learned from real loads here (ollama/learning.py)
    correction_note: str = ""  # how it was learned, for the explanation
    runtime_notes: tuple[str, ...] = ()  # what the target runtime imposes (old Ollama and flash attention)
    speed_ratio: float = 1.0  # measured / predicted decode speed from real runs here (ollama/learning.py)
    speed_note: str = ""


@dataclass(frozen=True)
class Candidate:
    """A model that fits: its quant, context and placement."""

    model: CatalogModel
    quant: str
    ctx: int
    placement: Placement
    # without --ctx: the larger contexts Ollama would give it that it missed, and why (evaluate)
    ctx_misses: tuple[tuple[int, str], ...] = ()

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
class Projector:
    """A vision projector loaded beside the model (Ollama 0.30+ passes it to llama-server as --mmproj)."""

    repo: str
    path: str
    size: int
    device: str  # where Ollama puts its weights: "GPU 0", or "RAM"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "file": self.path, "bytes": self.size, "device": self.device}


@dataclass(frozen=True)
class Plan:
    """The pick, the alternatives and the reasons, for the machine and the request."""

    choice: Candidate
    alternatives: tuple[Candidate, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    task: str
    report: ProbeReport
    load: OllamaLoad | None = None  # what Ollama runs for the choice; None when planned for llama.cpp
    projector: Projector | None = None  # vision: the projector pulled and registered with the pick

    @property
    def prompt_speed(self) -> Speed | None:
        """How fast the pick reads a PROMPT_TOKENS-token prompt here (the wait for the first token)."""
        c = self.choice
        spec = c.model.spec(c.quant)
        return prompt_speed(spec, c.placement.memory, self.report.hardware, c.placement.gpu_indices)

    def to_dict(self) -> dict[str, Any]:
        prompt = self.prompt_speed
        pp: dict[str, float] | None = None
        if prompt:
            pp = {"tps": round(prompt.tps), "low": round(prompt.low), "high": round(prompt.high)}
            pp |= {"prompt_tokens": PROMPT_TOKENS, "first_token_s": round(PROMPT_TOKENS / prompt.tps, 1)}
        return {
            "runtime": self.load.to_dict() if self.load else {"program": "llama-server"},
            "vision": self.projector.to_dict() if self.projector else None,
            "choice": self.choice.to_dict() | {"prompt_speed": pp},
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
        "file_bytes": weights_bytes,  # the tensors; a GGUF adds its header (kilobytes to a few MB)
        "split": split,
        "resolved": False,  # names from the catalog pattern; the Hub listing gives the exact files
    }


def runtime(
    req: PlanRequest,
    report: ProbeReport,
    ctx: int,
    shape: ModelShape | None = None,
    file_bytes: int = 0,
    mtp_layers: int = 0,
) -> Runtime:
    """The request's runtime on this hardware: for an Ollama target what that version will run (its program,
    batch, flash attention and mmap rules; `shape` and the file's size give its batch headroom check), else
    llama-server as `serve-cmd` starts it; flash attention where every GPU has it, or only for the
    architectures the runtime turns it on for; learned overhead."""
    gpus = report.hardware.gpus
    arch = shape.arch if shape else None
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
    overhead = req.overhead_correction if backend != "cpu" else 0
    if req.ollama is not None:
        load = ollama_load(req, report, ctx, shape, file_bytes, mtp_layers)
        rt = load.runtime(backend, fa, overhead)
        return rt if req.ubatch is None else replace(rt, ubatch=req.ubatch, batch_steps=(), batch_cap=0)
    return Runtime(
        ctx=ctx,
        kv_type=req.kv_type,
        flash_attn=fa,
        ubatch=req.ubatch or 512,
        parallel=req.parallel,
        backend=backend,
        extra_overhead=overhead,
        runner="llama-server",
        mtp_layers=mtp_layers if req.draft else 0,
        draft=req.draft if mtp_layers else 0,
    )


def ollama_load(
    req: PlanRequest,
    report: ProbeReport,
    ctx: int | None,
    shape: ModelShape | None = None,
    file_bytes: int = 0,
    mtp_layers: int = 0,
) -> OllamaLoad:
    """What the request's Ollama version loads at `ctx` (None: the model has no num_ctx) on this hardware (the
    plan's `runtime` in JSON)."""
    from ollama_fit.runtime.ollama import Machine, plan_load

    hw = report.hardware
    # Ollama's mmap rules differ by OS; a plan is pure, so the OS is the one the GPUs imply (Metal: macOS)
    macos = any(g.backend == "metal" for g in hw.gpus)
    machine = Machine(hw.gpus, hw.ram_available_bytes, hw.ram_total_bytes, "darwin" if macos else "linux")
    env = {} if req.flash_attn is None else {"OLLAMA_FLASH_ATTENTION": "1" if req.flash_attn else "0"}
    version = req.ollama or NEWEST
    return plan_load(
        version, shape, machine, ctx, file_bytes, req.parallel, req.kv_type, env, req.draft, mtp_layers, req.draft_arch
    )


def runtime_for(req: PlanRequest, report: ProbeReport, spec: ModelSpec, ctx: int) -> Runtime:
    """The runtime of one file: an Ollama target's batch depends on the file's size (its headroom check)."""
    nextn = int(spec.extra.get("nextn_layers", "0"))  # a header's prediction blocks (catalog specs: none known)
    return runtime(req, report, ctx, spec.shape, spec.file_bytes or spec.weights_bytes, nextn)


def rank_size(m: CatalogModel, aged: frozenset[str] = frozenset()) -> float:
    """The size a model ranks by: its effective size, an older generation of its family (or a model a year
    older than a comparable one of another family: `aged`, from `aged_models`) discounted once."""
    return m.effective_b * (SUPERSEDED_WEIGHT if m.superseded or m.id in aged else 1.0)


def _months(released: str) -> int | None:
    year, _, month = released.partition("-")
    return int(year) * 12 + int(month) - 1 if year.isdigit() and month.isdigit() else None


def aged_models(models: Sequence[CatalogModel]) -> dict[str, CatalogModel]:
    """Models released AGED_MONTHS or more before another candidate of comparable size (its effective size
    at least 1/NEARLY of theirs): id -> the one of those closest to it in size (the newest of equals), which
    the reason cites: "Phi-4 14B against Gemma 4 12B" reads as the comparison it is, a 1T model would not."""
    out: dict[str, CatalogModel] = {}
    dated = [(m, _months(m.released)) for m in models]
    for m, when in dated:
        if when is None or m.superseded:
            continue
        newer = [
            (n_when, n)
            for n, n_when in dated
            if n_when is not None and n_when - when >= AGED_MONTHS and n.effective_b * NEARLY >= m.effective_b
        ]
        if newer:
            out[m.id] = min(newer, key=lambda t: (abs(math.log(t[1].effective_b / m.effective_b)), -t[0]))[1]
    return out


def rank_candidates(task: Task, req: PlanRequest, models: Sequence[CatalogModel]) -> list[CatalogModel]:
    chosen = [m for m in models if task.capability in m.capabilities]
    if req.family:
        chosen = [m for m in chosen if m.family == req.family.lower()]
    if req.model:
        chosen = [m for m in chosen if m.id == req.model.lower()]
    if req.quant:
        chosen = [m for m in chosen if req.quant in m.quants]
    if not chosen:
        what = f"family {req.family!r}" if req.family else f"model {req.model!r}" if req.model else "catalog"
        pinned = f" published at {req.quant}" if req.quant else ""
        raise InvalidInput(
            f"no {task.capability} model{pinned} in the {what} for the {task.name} task",
            hint="`ollama-fit list` shows the models and what each is good for",
        )
    aged = frozenset(aged_models(chosen))
    ordered = sorted(chosen, key=lambda m: m.id)
    ordered.sort(key=lambda m: m.released, reverse=True)  # among equals, the newer release first
    ordered.sort(key=lambda m: (-round(rank_size(m, aged), 1), -m.priority))
    return ordered


def speed_target(req: PlanRequest, task: Task) -> float:
    return task.min_speed if req.min_speed is None else req.min_speed


def _ladder(model: CatalogModel, floor: str, req: PlanRequest) -> list[str]:
    """The model's quants that meet the floor, best first; the last one is the floor's (a pinned quant
    is the whole ladder)."""
    if req.quant:
        return [req.quant] if req.quant in model.quants else []
    table = quant_table()
    allowed = [q for q in model.quants if q in table and meets(q, floor)]
    return sorted(allowed, key=lambda q: (table[q].quality_loss_max_pct, table[q].rank))


def _fast_enough(p: Placement, target: float) -> bool:
    """Unknown speeds pass; an upper bound (a GPU of unknown bandwidth left out) must still reach it."""
    return target <= 0 or p.speed is None or p.speed.tps >= target


@dataclass(frozen=True)
class Miss:
    """A larger model that did not make it, and why."""

    model: CatalogModel
    quant: str
    why: str
    result: Placement | Shortfall  # the placement that was too slow, or how far memory was off

    @property
    def too_slow(self) -> bool:
        return isinstance(self.result, Placement)


def _try(model: CatalogModel, quant: str, rt: Runtime, report: ProbeReport, req: PlanRequest) -> Placement | Shortfall:
    spec = model.spec(quant)
    if req.ollama is not None and report.hardware.gpus:  # its batch headroom check reads the file's size
        rt = runtime_for(req, report, spec, rt.ctx)
    p = place(spec, rt, report.budget, report.hardware)
    # what real runs here taught applies where they ran: wholly on the GPU
    if isinstance(p, Placement) and p.speed is not None and p.on_gpu and req.speed_ratio != 1.0:
        p = replace(p, speed=p.speed.scaled(req.speed_ratio, req.speed_note))
    return p


def _model_ctx(req: PlanRequest, model: CatalogModel) -> int:
    trained = model.shape.context_length
    return min(req.ctx or DEFAULT_CTX, trained)


def _stays(p: Placement, base: Placement) -> bool:
    """Every layer where it was: the same kind of placement and no layer moved off the GPU(s)."""
    return p.keeps(base)


def _upgrade(
    model: CatalogModel, ladder: list[str], base: Placement, rt: Runtime, report: ProbeReport, req: PlanRequest
) -> tuple[str, Placement, list[str]]:
    """Raise the quant, one step up the ladder at a time, while every layer stays where it was and the whole
    speed range stays above the target (a better quant is never smaller or faster: the first step that fails
    ends the climb); the note says why the next step up was not taken."""
    target = speed_target(req, get_task(req.task))
    quant, placement = ladder[-1], base
    for q in reversed(ladder[:-1]):
        p = _try(model, q, rt, report, req)
        why = _why_not_raised(q, p, base, target)
        if why or not isinstance(p, Placement):
            # on a Mac, a larger GPU share may be all the better quant needs
            remedy = wired_limit_remedy(model.spec(q), rt, report) if isinstance(p, Shortfall) else None
            return quant, placement, [f"{why}; {remedy}" if remedy else why]
        quant, placement = q, p
    return quant, placement, []


def _why_not_raised(q: str, p: Placement | Shortfall, base: Placement, target: float) -> str:
    """Why quant `q` cannot replace the base quant ("" when it can)."""
    if isinstance(p, Shortfall):
        return f"{q} would need {human(p.need_bytes)} on {p.device} ({human(p.have_bytes)} usable)"
    if not _stays(p, base):
        moved = base.memory.gpu_layers - p.memory.gpu_layers
        experts = len(p.memory.cpu_expert_layers) - len(base.memory.cpu_expert_layers)
        if moved > 0 or not p.memory.gpu_layers:
            where = f"move {moved} layer(s) to the CPU" if p.memory.gpu_layers else "run on the CPU"
        elif experts > 0:
            where = f"keep the experts of {experts} more layer(s) in RAM"
        else:
            where = "split differently"
        return f"{q} would {where}"
    if not _clears(p, target):  # a raise must not make the pick marginal: its whole range above the target
        span = f" ({p.speed.low:.0f}-{p.speed.high:.0f})" if p.speed else ""
        return f"{q} would decode at ~{_tps(p):.0f} tok/s{span}, which may fall below the {target:g} tok/s target"
    return ""


def _clears(p: Placement, target: float) -> bool:
    """The speed range's low end (most real runs are faster) reaches the target."""
    return target <= 0 or p.speed is None or p.speed.low >= target


def _tps(p: Placement) -> float:
    return p.speed.tps if p.speed else 0.0


def _miss_reason(result: Placement | Shortfall, target: float) -> str:
    if isinstance(result, Shortfall):
        return (
            f"needs {human(result.need_bytes)} on {result.device}, {human(result.have_bytes)} usable "
            f"({human(result.missing_bytes)} short)"
        )
    return f"fits {KIND_TEXT[result.kind]} but would decode at ~{_tps(result):.1f} tok/s, below {target:g} tok/s"


def evaluate(
    model: CatalogModel, floor: str, req: PlanRequest, report: ProbeReport
) -> tuple[Candidate, list[str]] | Miss | None:
    """A model at its floor quant: a miss (with why), or the candidate raised as far as it goes and the
    notes on the quants it could not reach; None when it offers no quant that meets the floor. Without --ctx,
    the largest of the contexts Ollama would give it (`contexts`) at which it fits and is fast enough."""
    ladder = _ladder(model, floor, req)
    if not ladder:
        return None
    target = speed_target(req, get_task(req.task))
    missed: list[tuple[int, str]] = []
    for ctx in contexts(req, report, model):
        rt = runtime(req, report, ctx, model.shape)
        result = _try(model, ladder[-1], rt, report, req)
        if isinstance(result, Placement) and _fast_enough(result, target):
            quant, placement, notes = _upgrade(model, ladder, result, rt, report, req)
            return Candidate(model, quant, rt.ctx, placement, tuple(missed)), notes
        missed.append((ctx, _miss_reason(result, target)))
    return Miss(model, ladder[-1], _miss_reason(result, target), result)


def contexts(req: PlanRequest, report: ProbeReport, model: CatalogModel) -> list[int]:
    """The contexts to plan a model at, largest first: the one asked for; without --ctx, for Ollama, first the
    context `ollama run` would give it here (server/routes.go's VRAM tiers, lowered 262144 -> 32768 as its
    out-of-memory retry does), then the default. Capped at the model's trained context."""
    base = _model_ctx(req, model)
    if not (req.ctx_auto and req.ollama is not None):
        return [base]
    from ollama_fit.runtime.ollama import default_num_ctx

    tier = default_num_ctx([g.memory_total_bytes for g in report.hardware.gpus])
    trained = model.shape.context_length
    steps = [min(c, trained) for c in (tier, 32768) if c <= tier and min(c, trained) > base]
    return [*dict.fromkeys(steps), base]


Outcome = tuple[Candidate, list[str]] | Miss | None
Evaluate = Callable[[CatalogModel], Outcome]  # evaluate() for one plan's floor, request and machine, memoized


def _first_fit(
    candidates: Sequence[CatalogModel], evaluate: Evaluate, beyond: Callable[[CatalogModel], Miss | None]
) -> tuple[Candidate | None, list[str], list[Miss]]:
    """The first candidate that fits, and the larger ones that missed. A model `beyond` every device's reach is
    a miss without its placement worked out; only the nearest larger miss is shown in full, so that one is
    evaluated after all (the others are only counted)."""
    misses: list[Miss] = []
    quick: set[str] = set()
    found: tuple[Candidate | None, list[str]] = (None, [])
    for model in candidates:
        if (miss := beyond(model)) is not None:
            misses.append(miss)
            quick.add(model.id)
            continue
        outcome = evaluate(model)
        if isinstance(outcome, Miss):
            misses.append(outcome)
        elif outcome is not None:
            found = (outcome[0], outcome[1])
            break
    if misses and misses[-1].model.id in quick:
        full = evaluate(misses[-1].model)
        if isinstance(full, Miss):
            misses[-1] = full
    return found[0], found[1], misses


def _beyond_reach(floor: str, req: PlanRequest, report: ProbeReport) -> Callable[[CatalogModel], Miss | None]:
    """A miss for a model whose weights alone, at the lowest quant it may take, exceed every device and RAM
    together (CatalogModel.weights_floor, no tensor table: place() would turn it down after building one and
    estimating it, most of a plan's time on a small machine with a catalog of 1T models)."""
    room = all_memory(report.budget)

    def miss(model: CatalogModel) -> Miss | None:
        ladder = _ladder(model, floor, req)
        need = model.weights_floor(ladder[-1]) if ladder else 0
        if need <= room:
            return None
        why = f"needs at least {human(need)} for its weights alone, {human(room)} usable on every device together"
        return Miss(model, ladder[-1], why, Shortfall("every device together", need, room))

    return miss


def _gpu_first_window(chosen: Candidate, target: float) -> float:
    speed = chosen.placement.speed
    return MARGINAL_NEARLY if target and speed is not None and speed.low < target else NEARLY


def _next_within(
    chosen: Candidate,
    candidates: Sequence[CatalogModel],
    evaluate: Evaluate,
    window: float,
    better: Callable[[Placement], bool],
) -> tuple[Candidate, list[str]] | None:
    """The first model after the pick, at least 1/`window` of its size, whose placement is `better`."""
    start = candidates.index(chosen.model) + 1
    for model in candidates[start:]:
        if rank_size(model) * window < rank_size(chosen.model):
            return None
        outcome = evaluate(model)
        if isinstance(outcome, tuple) and better(outcome[0].placement):
            return outcome
    return None


def _gpu_first(
    chosen: Candidate, candidates: Sequence[CatalogModel], evaluate: Evaluate, report: ProbeReport, target: float
) -> tuple[Candidate, list[str]] | None:
    """A model wholly on the GPU(s) of nearly the same size (at least 1/NEARLY of the pick's, 1/MARGINAL_NEARLY
    where the pick is marginal) beats a partly offloaded pick."""
    if chosen.placement.on_gpu or not report.budget.gpus:
        return None
    return _next_within(chosen, candidates, evaluate, _gpu_first_window(chosen, target), lambda p: p.on_gpu)


def _surely_fast(
    chosen: Candidate, candidates: Sequence[CatalogModel], evaluate: Evaluate, target: float
) -> tuple[Candidate, list[str]] | None:
    """A pick that meets the speed target only at its point estimate (its range reaches below it) gives way to
    the next model of at least 1/MARGINAL_NEARLY its size whose whole range clears the target."""
    if _clears(chosen.placement, target):
        return None
    return _next_within(chosen, candidates, evaluate, MARGINAL_NEARLY, lambda p: _clears(p, target))


def plan(report: ProbeReport, req: PlanRequest, models: Sequence[CatalogModel]) -> Plan:
    task = get_task(req.task)
    floor, warnings = _floor(task, req)
    if req.parallel < 1 or (req.ubatch is not None and req.ubatch < 1) or (req.ctx is not None and req.ctx < 256):
        raise InvalidInput(
            "--ctx must be at least 256, --parallel and --ubatch at least 1", hint="e.g. --ctx 8192 --parallel 1"
        )
    target = speed_target(req, task)
    candidates = rank_candidates(task, req, models)
    reasons = [f"task {task.name}: quality floor {floor} ({task.note})", _target_reason(task, req, target)]
    outcomes: dict[str, Outcome] = {}  # each model is evaluated once per plan, however many rules ask

    def evaluated(model: CatalogModel) -> Outcome:
        if model.id not in outcomes:
            outcomes[model.id] = evaluate(model, floor, req, report)
        return outcomes[model.id]

    chosen, extra, misses = _first_fit(candidates, evaluated, _beyond_reach(floor, req, report))
    if chosen is None:
        raise _nothing_fits(misses, report, req, target)
    gpu_pick = _gpu_first(chosen, candidates, evaluated, report, target)
    gpu_note = ""
    displaced = None
    if gpu_pick:
        displaced = chosen
        window = _gpu_first_window(chosen, target)
        marginal = f", or {window:g}x when that one may fall below {target:g} tok/s" if window != NEARLY else ""
        gpu_note = (
            f"prefers {gpu_pick[0].model.name} wholly on the GPU to {chosen.model.name} "
            f"{KIND_TEXT[chosen.placement.kind]} (~{_tps(chosen.placement):.0f} tok/s): a model wholly on the GPU "
            f"wins over one at most {NEARLY:g}x its size that is not{marginal}"
        )
        chosen, extra = gpu_pick
    sure = None if gpu_pick else _surely_fast(chosen, candidates, evaluated, target)
    if sure:
        displaced = chosen
        gpu_note = (
            f"prefers {sure[0].model.name} (~{_tps(sure[0].placement):.0f} tok/s) to {chosen.model.name} "
            f"(~{_tps(chosen.placement):.0f} tok/s, which may fall below {target:g} tok/s): a pick whose speed range "
            f"reaches below the target gives way to a model at least 1/{MARGINAL_NEARLY:g} its size that clears it"
        )
        chosen, extra = sure
    if req.ctx is None:
        chosen, ctx_note = _maximize_context(chosen, req, report, target)
        reasons.append(ctx_note)
    elif req.ctx > chosen.model.shape.context_length:
        reasons.append(f"context capped at {chosen.model.name}'s trained length, {chosen.ctx} tokens")
    reasons.extend(_explain(chosen, misses, extra, floor, req, report, task))
    if gpu_note:
        reasons.append(gpu_note)
    if any(m.superseded for m in candidates) and not req.model:
        reasons.append(
            f"current generations first: an older generation of a family ranks as {SUPERSEDED_WEIGHT:.2g} of its "
            "size (`--model` still plans it)"
        )
    aged = aged_models(candidates) if not req.model else {}
    # the models the rule moved below the pick: by size alone they would have ranked above it
    pick = rank_size(chosen.model, frozenset(aged))
    passed = [m for m in candidates if m.id in aged and rank_size(m) > pick >= rank_size(m, frozenset(aged))][-2:]
    if passed:
        examples = "; ".join(
            f"{m.name}, released {m.released}, against {aged[m.id].name}, released {aged[m.id].released}"
            for m in passed
        )
        reasons.append(
            f"newest first across families: a model released {AGED_MONTHS} months or more before a candidate of "
            f"comparable size (at least 1/{NEARLY:g} of it) ranks as {SUPERSEDED_WEIGHT:.2g} of its size ({examples})"
        )
    reasons.extend(_memory_reasons(report))
    if chosen.placement.kind == "experts" and chosen.placement.speed is not None:
        handoff = PARAMS.expert_handoff_s * 1e6
        reasons.append(
            "speed with the experts in RAM: what each token reads, timed where it sits, plus "
            f"{handoff:.0f} us per layer handed to the CPU and back; that hand-off is not fitted (no published "
            "experts-in-RAM run in the calibration set), so this speed is less sure than its range says"
        )
    if req.correction_note and report.budget.gpus:
        reasons.append(req.correction_note)
    if req.speed_note and req.speed_ratio != 1.0:
        reasons.append(req.speed_note)
    reasons.extend(req.runtime_notes)
    load = None
    if req.ollama is not None:
        spec = chosen.model.spec(chosen.quant)
        nextn = int(spec.extra.get("nextn_layers", "0"))
        load = ollama_load(req, report, chosen.ctx, spec.shape, spec.file_bytes or spec.weights_bytes, nextn)
        reasons.append(_ollama_reason(load, req))
        if load.draft:
            reasons.append(
                f"drafting {load.draft} tokens a step with the file's prediction block: its memory is planned; the "
                "speeds shown are without its gain (not modelled: a lower bound)"
            )
        if req.draft and not load.draft:
            reasons.append(
                f"--draft {req.draft}: {spec.shape.arch} files of {chosen.model.name} carry no prediction block "
                "that ollama-fit knows of (a GGUF header says so: plan or inspect the file); planned without drafting"
            )
    alternatives = _alternatives(chosen, candidates, evaluated, displaced)
    if chosen.quant == "Q2_K":
        warnings.append(f"{chosen.model.name} at Q2_K: a last resort, expect clearly worse answers")
    return Plan(chosen, alternatives, tuple(reasons), tuple(warnings), task.name, report, load)


def _ollama_reason(load: OllamaLoad, req: PlanRequest) -> str:
    from ollama_fit.runtime.ollama import show

    source = {"server": "the running server", "option": "--ollama-version"}.get(
        req.ollama_from, "the newest modelled; --ollama-version changes it"
    )
    if load.engine == "llama-server":
        how = (
            f"llama-server with -c {load.num_ctx * load.parallel} -np {load.parallel} -b/-ub {load.batch} "
            f"(Ollama's batch for that context){'' if load.mmap else ', weights read into RAM (no mmap)'}"
        )
    else:
        engine = "its own Go engine" if load.engine == "ollama-engine" else "its vendored llama.cpp runner"
        how = f"{engine}, batch {load.batch}"
    return f"planned for Ollama {show(load.version)} ({source}): {how}"


def _floor(task: Task, req: PlanRequest) -> tuple[str, list[str]]:
    if not req.quant:
        return floor_for(task, req.min_quant)
    if req.quant not in quant_table():
        raise InvalidInput(f"unknown quant {req.quant!r}", hint=f"quants: {', '.join(quant_table())}")
    warnings = []
    if not meets(req.quant, task.floor):
        warnings.append(f"--quant {req.quant} is below what the {task.name} task needs ({task.floor}): {task.note}")
    return req.quant, warnings


def _target_reason(task: Task, req: PlanRequest, target: float) -> str:
    if target <= 0:
        return "no speed target (--min-speed 0)"
    if req.min_speed is None:
        return f"speed target {target:g} tok/s for {task.name} (--min-speed changes it, 0 turns it off)"
    return f"speed target {target:g} tok/s (--min-speed)"


def _memory_reasons(report: ProbeReport) -> list[str]:
    host = report.budget.host
    keep = f"{human(host.headroom_bytes)} of RAM kept for the system and the desktop (--ram-headroom)"
    if report.budget.unified_memory:
        gpu = report.budget.gpus[0]
        return [f"unified memory, one pool: the GPU may hold {human(gpu.usable_bytes)}; {keep}"]
    return [keep]


def _maximize_context(c: Candidate, req: PlanRequest, report: ProbeReport, target: float) -> tuple[Candidate, str]:
    rt = runtime_for(req, report, c.model.spec(c.quant), c.ctx)
    trained = c.model.shape.context_length
    best = max_context(
        c.model.spec(c.quant),
        rt,
        report.budget,
        report.hardware,
        c.placement.kind,
        trained,
        accept=lambda p: _fast_enough(p, target) and p.keeps(c.placement),
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
    if c.model.rank_b:
        rule = "ranked where its publisher compares it"
    speed = f" at ~{_tps(c.placement):.0f} tok/s" if c.placement.speed else ""
    out.append(
        f"picked {c.model.name} ({c.model.effective_b:.1f}B effective; {rule}): the largest that fits "
        f"{KIND_TEXT[c.placement.kind]}{speed} at {floor} or better"
    )
    if c.quant != floor:
        stop = f": {upgrade_notes[-1]}" if upgrade_notes and upgrade_notes[-1] else ""
        out.append(
            f"raised to {c.quant}, the best quant that keeps every layer where it was and the speed target{stop}"
        )
    elif upgrade_notes:
        out.append(f"stays at {c.quant}: " + "; ".join(upgrade_notes[-1:]))
    out.extend(_context_reasons(c, req, report))
    if misses:
        larger = misses[-1]
        out.append(f"next larger, {larger.model.name} at {larger.quant}: {larger.why}")
        out.extend(_remedies(larger, req, report, task))
        if len(misses) > 1:
            out.append(f"{len(misses) - 1} other larger model(s) do not fit or are too slow here")
    return out


def _context_reasons(c: Candidate, req: PlanRequest, report: ProbeReport) -> list[str]:
    """Why the pick's context is what it is, when no --ctx chose it: Ollama's default here, or why less."""
    if c.ctx_misses:
        ctx, why = c.ctx_misses[0]
        return [f"context {c.ctx} tokens, below the {ctx} Ollama gives a model here by default: at {ctx} it {why}"]
    if req.ctx_auto and c.ctx > (req.ctx or DEFAULT_CTX):
        return [f"context {c.ctx} tokens: what Ollama gives a model on this machine by default (--ctx sets it)"]
    return []


def _remedies(miss: Miss, req: PlanRequest, report: ProbeReport, task: Task) -> list[str]:
    """What would make the next-larger model a pick, for the reason it missed: memory or speed."""
    target = speed_target(req, task)
    rt = runtime_for(req, report, miss.model.spec(miss.quant), _model_ctx(req, miss.model))
    tips = _speed_remedies(miss, rt, req, report, task, target) if miss.too_slow else []
    if not miss.too_slow:
        tips = _memory_remedies(miss, rt, req, report, task, target)
    return [f"  {t}" for t in tips]


def _lower_quants(miss: Miss, task: Task) -> list[str]:
    """Quants the task allows, below the one that missed, best first."""
    table = quant_table()
    worst = table[miss.quant].quality_loss_max_pct
    quants = [q for q in miss.model.quants if q in table and meets(q, task.lowest)]
    lower = [q for q in quants if table[q].quality_loss_max_pct > worst]
    return sorted(lower, key=lambda q: table[q].quality_loss_max_pct)


def _speed_remedies(
    miss: Miss, rt: Runtime, req: PlanRequest, report: ProbeReport, task: Task, target: float
) -> list[str]:
    table = quant_table()
    tips = []
    found = _first_lower_quant(miss, rt, req, report, task, lambda p: p.on_gpu and _fast_enough(p, target))
    if found:
        q, p = found
        tips.append(
            f"to make it fast enough: at {q} it would fit wholly on the GPU at ~{_tps(p):.0f} tok/s "
            f"({table[q].quality_loss} quality loss; allow with --min-quant {q})"
        )
    spec = miss.model.spec(miss.quant)
    if rt.ctx > 2048 and report.budget.gpus:
        shorter = max_context(
            spec, rt, report.budget, report.hardware, "multi-gpu", rt.ctx - 256, lambda p: _fast_enough(p, target)
        )
        if shorter and shorter.memory.kv_cells >= 2048:
            tips.append(
                f"to make it fast enough: with --ctx {shorter.memory.kv_cells} it would fit wholly on the GPU "
                f"at ~{_tps(shorter):.0f} tok/s"
            )
    more = _more_vram(spec, rt, report)
    if more:
        tips.append(more)
    if not tips:
        tips.append(f"it cannot reach {target:g} tok/s on this machine; --min-speed 0 accepts it")
    return tips


def _more_vram(spec: ModelSpec, rt: Runtime, report: ProbeReport) -> str | None:
    gpus = report.budget.gpus
    if not gpus or report.budget.unified_memory:
        return None
    need = estimate(spec, replace(rt, backend=gpus[0].backend)).device_bytes
    biggest = max(gpus, key=lambda g: g.usable_bytes)
    if len(gpus) > 1 or need <= biggest.usable_bytes:
        return None
    card = need + biggest.headroom_bytes
    return f"a GPU with {human(card)} or more ({human(need - biggest.usable_bytes)} more) would hold it wholly"


def _memory_remedies(
    miss: Miss, rt: Runtime, req: PlanRequest, report: ProbeReport, task: Task, target: float
) -> list[str]:
    spec = miss.model.spec(miss.quant)
    table = quant_table()
    tips = []
    if rt.ctx > 2048:
        shorter = max_context(
            spec, rt, report.budget, report.hardware, "cpu", rt.ctx - 256, accept=lambda p: _fast_enough(p, target)
        )
        if shorter and shorter.memory.kv_cells >= 2048:
            tips.append(f"to fit it: --ctx {shorter.memory.kv_cells}")
    if rt.kv_type == "f16" and rt.flash_attn:
        q8 = place(spec, replace(rt, kv_type="q8_0"), report.budget, report.hardware)
        if isinstance(q8, Placement) and _fast_enough(q8, target):
            tips.append("to fit it: --kv-type q8_0 (a q8_0 KV cache halves its size)")
    apple = wired_limit_remedy(spec, rt, report)
    if apple:
        tips.append(apple)
    found = _first_lower_quant(miss, rt, req, report, task, lambda p: _fast_enough(p, target))
    if found:
        q = found[0]
        tips.append(f"to fit it: {q} ({table[q].quality_loss} quality loss; allow with --min-quant {q})")
    return tips


def _first_lower_quant(
    miss: Miss, rt: Runtime, req: PlanRequest, report: ProbeReport, task: Task, accept: Callable[[Placement], bool]
) -> tuple[str, Placement] | None:
    """The best quant below the one that missed (among those the task allows) whose placement `accept` takes."""
    room = all_memory(report.budget)
    for q in _lower_quants(miss, task):
        if miss.model.weights_floor(q) > room:
            continue  # its weights alone exceed every device together (as in _beyond_reach): no table to build
        p = _try(miss.model, q, rt, report, req)
        if isinstance(p, Placement) and accept(p):
            return q, p
    return None


def _alternatives(
    chosen: Candidate, candidates: Sequence[CatalogModel], evaluate: Evaluate, displaced: Candidate | None
) -> tuple[Candidate, ...]:
    """The larger pick the GPU-first rule set aside (if any), then the next models down the ranking."""
    found: list[Candidate] = [displaced] if displaced else []
    for model in candidates[candidates.index(chosen.model) + 1 :]:
        if len(found) >= ALTERNATIVES:
            break
        outcome = evaluate(model)
        if isinstance(outcome, tuple):
            found.append(outcome[0])
    return tuple(found)


def _nothing_fits(misses: list[Miss], report: ProbeReport, req: PlanRequest, target: float) -> NothingFits:
    budget = report.budget
    where = ", ".join(f"{g.name}: {human(g.usable_bytes)}" for g in budget.gpus) or "no GPU"
    if not misses:
        return NothingFits(
            "no catalog model offers a quant that meets this task's floor",
            hint="`ollama-fit list --all` shows every model and its quants",
        )
    smallest = misses[-1]
    pinned = f" at --quant {req.quant}" if req.quant else ""
    slow = any(m.too_slow for m in misses)
    speed_tip = f", or --min-speed 0 (the {target:g} tok/s target ruled out slower picks)" if slow else ""
    return NothingFits(
        f"nothing fits{pinned}: even {smallest.model.name} at {smallest.quant} {smallest.why}",
        hint=f"usable memory is {where}; {budget.host.name} {human(budget.host.usable_bytes)}. Try a shorter --ctx, "
        f"--kv-type q8_0, --min-quant Q3_K_M (low-sensitivity tasks){speed_tip}",
    )
