"""Exact figures for a plan: read the chosen quant's GGUF header(s) on the Hub and plan again with them.

The planner stays pure; this module does the I/O around it. A pick is re-planned until its own figures are
exact (at most a few rounds: each round can only move to a model whose header was not read yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ollama_fit.errors import BadModelFile, HubError
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.model.catalog import CatalogModel, ExactQuant
from ollama_fit.plan.planner import Plan, PlanRequest, Projector, plan
from ollama_fit.units import human

if TYPE_CHECKING:  # the Hub side is imported only when a Hub is given: plan --offline starts faster
    from ollama_fit.hub.repos import Hub, HubFile, QuantFiles

MAX_ROUNDS = 6


@dataclass
class _Listings:
    """The Hub listings a plan has fetched, by repository."""

    hub: Hub
    cache: dict[str, list[HubFile]]

    def files(self, repo: str) -> list[HubFile]:
        if repo not in self.cache:
            self.cache[repo] = self.hub.list_files(repo)
        return self.cache[repo]

    def groups(self, repo: str) -> list[QuantFiles]:
        from ollama_fit.hub.repos import group_quants

        return group_quants(self.files(repo))

    def group(self, repo: str, quant: str) -> QuantFiles:
        from ollama_fit.hub.repos import select

        return select(self.groups(repo), quant)

    def published(self, model: CatalogModel) -> tuple[str, ...]:
        """The model's quants its repository really has (a BF16 where the catalog expected F16, say)."""
        from ollama_fit.model.quants import quant_table

        labels = {g.label.upper() for g in self.groups(model.repo)}
        return tuple(q for q in quant_table() if q in labels)


def exact_plan(report: ProbeReport, req: PlanRequest, models: Sequence[CatalogModel], hub: Hub | None) -> Plan:
    """Plan from the catalog, then with the exact header of each pick; says which figures are exact."""
    result = plan(report, req, models)
    if hub is None:
        return _note(result, "memory figures from the catalog's published shapes (Hub not consulted)")
    listings = _Listings(hub, {})
    current = list(models)
    for _ in range(MAX_ROUNDS):
        choice = result.choice
        if choice.model.exact_for(choice.quant):
            break
        from ollama_fit.plan.inspect import hub_spec

        try:
            published = listings.published(choice.model)
            if choice.quant not in published:  # plan again with the quants that exist
                current = [replace(m, quants=published) if m.id == choice.model.id else m for m in current]
                result = plan(report, req, current)
                continue
            group = listings.group(choice.model.repo, choice.quant)
            spec, _ = hub_spec(hub, choice.model.repo, group)
        except (HubError, BadModelFile) as exc:  # unreachable, or a published file that is not a sound GGUF
            return _note(result, f"memory figures from the catalog's published shapes ({exc.message})")
        found = ExactQuant(choice.quant, spec, tuple(f.path for f in group.files), group.total_bytes)
        current = [m.with_exact(found) if m.id == choice.model.id else m for m in current]
        result = plan(report, req, current)
    try:
        result = _with_projector(report, req, current, result, listings)
    except HubError as exc:
        return _note(result, f"vision projector not checked ({exc.message})")
    c = result.choice
    exact = c.model.exact_for(c.quant)
    if exact is None:
        return _note(result, "memory figures from the catalog's published shapes")
    where = f"{c.model.repo}/{exact.files[0]}"
    return _note(
        result,
        f"memory figures for {c.model.name} {c.quant} are exact (GGUF header of {where}); "
        "alternatives use the catalog's shapes",
    )


def _with_projector(
    report: ProbeReport, req: PlanRequest, models: Sequence[CatalogModel], result: Plan, listings: _Listings
) -> Plan:
    """The pick with its repository's vision projector, where Ollama will load one (0.30+, no --text-only):
    planned again with the projector's weights kept out of the device it goes to, as Ollama's fit target
    keeps them (projector + 1 GiB, the 1 GiB being the headroom every plan keeps). Should that move the pick
    to another model, that model's projector is taken instead (the repositories differ, the rule does not)."""
    from ollama_fit.hub.repos import projector
    from ollama_fit.runtime.ollama import projector_on_gpu, separate_projector

    if not req.vision or req.ollama is None or not separate_projector(req.ollama):
        return result
    seen: set[str] = set()
    while (repo := result.choice.model.repo) not in seen:
        seen.add(repo)
        found = projector(listings.files(repo))
        if found is None:
            return result
        on_gpu = projector_on_gpu(report.hardware.gpus, found.size)
        planned = plan(_reserve(report, found.size, on_gpu), req, models)
        device = "GPU 0" if on_gpu else "RAM"
        result = replace(planned, projector=Projector(repo, found.path, found.size, device))
    if result.projector is not None:
        p = result.projector
        result = _note(
            result,
            f"vision: {p.name} ({human(p.size)}) loads beside {result.choice.model.name} on {p.device}, as Ollama "
            "places it (on the GPU only with it + 1 GiB free there); its memory is kept out of that budget "
            "(--text-only leaves it out)",
        )
    return result


def _reserve(report: ProbeReport, size: int, on_gpu: bool) -> ProbeReport:
    """The report with `size` bytes kept free on the first GPU (or in RAM): the planner leaves them alone."""
    budget = report.budget
    if on_gpu:
        first = budget.gpus[0]
        budget = replace(budget, gpus=(replace(first, headroom_bytes=first.headroom_bytes + size), *budget.gpus[1:]))
    if not on_gpu or budget.unified_memory:  # on unified memory the GPU's share comes out of the one pool
        budget = replace(budget, host=replace(budget.host, headroom_bytes=budget.host.headroom_bytes + size))
    return replace(report, budget=budget)


def _note(result: Plan, text: str) -> Plan:
    return replace(result, reasons=(*result.reasons, text))
