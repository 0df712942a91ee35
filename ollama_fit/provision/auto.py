"""`auto`: plan -> (confirmation, in cli/auto.py) -> check Ollama and disk -> fetch -> register -> smoke test -> learn.

One result object comes back; progress goes through the fetcher's callback. Nothing here prints or asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_fit.errors import OllamaError
from ollama_fit.hub.fetch import Fetcher, Progress
from ollama_fit.hub.repos import Hub, group_quants, select
from ollama_fit.memory.estimate import kv_bytes
from ollama_fit.ollama.client import Ollama, ServerInfo, canonical
from ollama_fit.ollama.learning import Observation, Observations, observe
from ollama_fit.ollama.register import Records, file_map, parameter_changes, preflight
from ollama_fit.plan.planner import Plan, PlanRequest, runtime
from ollama_fit.provision.pull import PullResult, RegisterOptions, Target, pull
from ollama_fit.runtime.llama_server import DEFAULT_FIT_TARGET, ServeCommand, serve_command

SMOKE_PROMPT = "Reply with a short greeting."
# Before v0.13.4 Ollama turned flash attention on by default only for these architectures
OLLAMA_FA_ARCHS = ("gemma3", "gpt-oss", "qwen3", "qwen3moe", "qwen3vl")
FA_AUTO = (0, 13, 4)


def for_ollama(request: PlanRequest, ollama: Ollama) -> tuple[PlanRequest, list[str]]:
    """Plan for what this Ollama server really does: its flash-attention default, and the server-side
    settings (KV cache type, parallel slots) a plan cannot set through the API. Unreachable: unchanged,
    the pre-flight says so later."""
    from dataclasses import replace

    try:
        info = ollama.check()
    except OllamaError:
        return request, []
    version = info.release
    warnings = []
    if request.ollama_from != "option":  # plan for the Ollama that will run it
        from ollama_fit.runtime.ollama import OLDEST, show

        request = replace(request, ollama=max(version, OLDEST), ollama_from="server")
        if version < OLDEST:
            note = f"Ollama {info.version} is older than any version modelled: planned with {show(OLDEST)}'s rules"
            request = replace(request, runtime_notes=(*request.runtime_notes, note))
    if version < FA_AUTO and request.flash_attn is None and request.kv_type == "f16":
        note = (
            f"Ollama {info.version} turns flash attention on only for {', '.join(OLLAMA_FA_ARCHS[:3])} and "
            "qwen3 MoE: other models are planned without it (start Ollama with OLLAMA_FLASH_ATTENTION=1 and "
            "pass --flash-attn on to plan with it)"
        )
        request = replace(request, flash_attn_archs=OLLAMA_FA_ARCHS, runtime_notes=(*request.runtime_notes, note))
    if request.kv_type != "f16":
        extra = " and OLLAMA_FLASH_ATTENTION=1" if version < (0, 30) else ""
        warnings.append(
            f"Ollama uses the KV cache type its server runs with: start `ollama serve` with "
            f"OLLAMA_KV_CACHE_TYPE={request.kv_type}{extra}, or the planned memory does not hold"
        )
    if request.parallel != 1:
        warnings.append(
            f"Ollama serves as many requests at once as its server allows: start `ollama serve` with "
            f"OLLAMA_NUM_PARALLEL={request.parallel}, as planned"
        )
    return request, warnings


SMOKE_TOKENS = 16


@dataclass(frozen=True)
class Smoke:
    answered: bool
    text: str = ""
    tokens_per_second: float = 0.0
    predicted_tps: float | None = None
    error: str = ""
    hints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "text": self.text,
            "tokens_per_second": round(self.tokens_per_second, 1),
            "predicted_tps": round(self.predicted_tps, 1) if self.predicted_tps else None,
            "error": self.error,
            "hints": list(self.hints),
        }


@dataclass(frozen=True)
class AutoResult:
    status: str  # done, unchanged, dry-run, needs-confirmation, declined
    plan: Plan
    pull: PullResult | None = None
    smoke: Smoke | None = None
    observation: Observation | None = None
    observation_stored: bool = False  # only real (not simulated) machines keep what they teach
    serve: ServeCommand | None = None

    @property
    def name(self) -> str | None:
        reg = self.pull.registration if self.pull else None
        return reg.name if reg else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "plan": self.plan.to_dict(),
            "pull": self.pull.to_dict() if self.pull else None,
            "smoke_test": self.smoke.to_dict() if self.smoke else None,
            "observation": self.observation.to_dict() if self.observation else None,
            "observation_stored": self.observation_stored,
            "llama_server": self.serve.to_dict() if self.serve else None,
            "run": f"ollama run {self.name}" if self.name else None,
        }


def target_of(plan: Plan, hub: Hub) -> Target:
    """The plan's files: the pick's quant, and its vision projector where the plan has one."""
    c = plan.choice
    listing = hub.list_files(c.model.repo)
    wanted = plan.projector.path if plan.projector else None
    found = next((f for f in listing if f.path == wanted), None)
    return Target(c.model.repo, select(group_quants(listing), c.quant), c.model, c.ctx, found)


@dataclass(frozen=True)
class Prepared:
    """What the confirmation states, decided before asking: the files, the bytes still missing (a partial
    download counts as there), where they land, the Ollama name, and whether that model is already there."""

    target: Target
    missing_bytes: int
    cache_dir: Path
    keep: bool
    name: str | None = None  # None: llama.cpp target, nothing registered
    server: ServerInfo | None = None
    ollama_dir: Path | None = None  # where Ollama keeps its copy, when it runs here
    registered: bool = False  # the same name from the same files: nothing to download or upload
    updates: tuple[str, ...] = ()  # registered, but re-created with these parameter changes

    @property
    def changes_nothing(self) -> bool:
        """Nothing to download, register or change: no reason to ask."""
        return (self.registered and not self.updates) or (self.name is None and self.missing_bytes == 0)


def prepare(
    plan: Plan,
    hub: Hub,
    fetcher: Fetcher,
    ollama: Ollama | None,
    options: RegisterOptions,
    records: Records | None = None,
) -> Prepared:
    """Everything that could stop the run, checked before the question (Ollama, the name, disk space)."""
    from ollama_fit import config

    target = target_of(plan, hub)
    files = list(target.files)
    missing = fetcher.missing_bytes(target.repo, files)
    cache = fetcher.cache_dir
    if ollama is None:
        fetcher.preflight(target.repo, files)
        return Prepared(target, missing, cache, keep=True)
    name = options.name_for(target)
    digests = file_map([(f.name, str(f.sha256)) for f in files])
    download = (missing, fetcher.device(target.repo))
    pre = preflight(
        ollama,
        name,
        digests,
        target.total_bytes,
        target.quant.split,
        options.force,
        records or Records.load(),
        download,
    )
    shown = ollama.show(name) if pre.state == "same" else None
    updates = parameter_changes(shown, options.parameters) if shown is not None else ()
    if updates and not all(ollama.has_blob(d) for d in digests.values()):
        shown, updates = None, ()  # re-registered from the files, as keep_registered will do
    if shown is None:
        fetcher.preflight(target.repo, files)
    ollama_dir = config.ollama_models_dir() if pre.server.local else None
    return Prepared(target, missing, cache, options.keep_gguf, name, pre.server, ollama_dir, shown is not None, updates)


def execute(
    plan: Plan,
    request: PlanRequest,
    hub: Hub,
    fetcher: Fetcher,
    ollama: Ollama | None,
    options: RegisterOptions,
    observations: Observations | None = None,
    records: Records | None = None,
    target: Target | None = None,
) -> AutoResult:
    """Everything after the confirmation. With `ollama` None (llama.cpp target) the files are kept and the
    llama-server command comes back instead of a registration. Phases are announced through the fetcher's
    progress listener."""
    target = target or target_of(plan, hub)
    if ollama is None:
        result = pull(target, fetcher)
        c = plan.choice
        rt = runtime(request, plan.report, c.ctx)
        gpus = len(plan.report.hardware.gpus)
        margin = plan.report.budget.gpus[0].headroom_bytes if plan.report.budget.gpus else DEFAULT_FIT_TARGET
        path = result.fetched[0].path
        serve = serve_command(target.repo, target.quant.label, path, rt, c.placement, gpu_count=gpus, fit_target=margin)
        return AutoResult("done", plan, result, serve=serve)
    result = pull(target, fetcher, ollama, options, records)
    reg = result.registration
    if reg is None or reg.status == "unchanged":
        return AutoResult("unchanged", plan, result)
    fetcher.on_progress(Progress("smoke", reg.name, 0, 0, f"loading {reg.name} in Ollama for a smoke test"))
    smoke = smoke_test(ollama, reg.name, plan)
    observation, stored = None, False
    # only a model wholly on the GPU(s) compares like with like: with part on the CPU, Ollama may split the
    # layers differently from the plan
    if smoke.answered and plan.choice.placement.kind in ("gpu", "multi-gpu"):
        observation = learn(ollama, reg.name, plan, smoke)
        if observation and observations is not None and not plan.report.hardware.simulated:
            observations.record(plan.report.hardware, observation)
            stored = True
    return AutoResult("done", plan, result, smoke, observation, stored)


def smoke_test(ollama: Ollama, name: str, plan: Plan) -> Smoke:
    """A few tokens through Ollama; a failure is reported with what to check, and the model stays."""
    speed = plan.choice.placement.speed
    predicted = speed.tps if speed else None
    try:
        answer = ollama.generate(name, SMOKE_PROMPT, SMOKE_TOKENS)
    except OllamaError as exc:
        return Smoke(
            False,
            error=exc.message,
            predicted_tps=predicted,
            hints=(
                f"try it by hand: ollama run {name}",
                "read the server log (`journalctl -u ollama` or the terminal running `ollama serve`)",
                "another program may hold GPU memory: check nvidia-smi / Activity Monitor",
            ),
        )
    if not answer.text.strip():
        return Smoke(
            False,
            error="the model answered with nothing",
            predicted_tps=predicted,
            hints=("the chat template may be missing: see the warnings above",),
        )
    return Smoke(True, answer.text.strip(), answer.tokens_per_second, predicted)


def reported_vram(plan: Plan) -> int:
    """What /api/ps will say the plan's model holds in VRAM, so that a real load is compared like with like.
    It is the model's own prediction, not one earlier runs already corrected (the median of the corrections
    then settles instead of halving towards zero run after run), with the projector Ollama loads beside it.
    Since 0.30 Ollama sums llama-server's GPU buffer lines (llm/llama_server.go `memoryParsingWriter`): that
    leaves out the GPU's own context (the plan's overhead), and, keeping one line per device and kind, the
    full-attention cache of a model that also has sliding-window layers (its KV line comes first)."""
    mem = plan.choice.placement.memory
    predicted = mem.device_bytes - sum(g.learned_bytes for g in mem.gpus)
    if plan.projector is not None and plan.projector.device != "RAM":
        predicted += plan.projector.size
    if plan.load is None or plan.load.engine != "llama-server":
        return predicted
    predicted -= sum(g.overhead_bytes - g.learned_bytes for g in mem.gpus)
    spec = plan.choice.model.spec(plan.choice.quant)
    s = spec.shape
    full = [i for i in range(s.n_layer) if s.has_kv(i) and not s.is_swa(i)]
    if full and len(full) < sum(1 for i in range(s.n_layer) if s.has_kv(i)):
        fa = all(g.flash_attention for g in plan.report.hardware.gpus)
        predicted -= kv_bytes(spec, plan.load.runtime(mem.backend, fa), full)
    return predicted


def learn(ollama: Ollama, name: str, plan: Plan, smoke: Smoke | None = None) -> Observation | None:
    """What Ollama really loaded (/api/ps) and how fast it decoded, against the prediction."""
    try:
        loaded = ollama.ps()
    except OllamaError:
        return None
    entry = next((m for m in loaded if canonical(str(getattr(m, "model", "") or "")) == canonical(name)), None)
    if entry is None or not getattr(entry, "size_vram", 0):
        return None
    c = plan.choice
    mem = c.placement.memory
    predicted = reported_vram(plan)
    speed = c.placement.speed
    speeds = (0.0, 0.0)
    if smoke is not None and smoke.answered and speed is not None:
        speeds = (speed.modelled_tps, smoke.tokens_per_second)
    return observe(entry, name, c.quant, c.ctx, predicted, len(mem.gpus), *speeds)
