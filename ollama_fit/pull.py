"""`pull`: what to download (a plan's pick, a catalog model, or hf.co/org/repo:QUANT) and the download itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.catalog import CatalogModel, find_model
from ollama_fit.errors import HubError
from ollama_fit.fetch import Fetched, Fetcher
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.hub import Hub, HubRef, QuantFiles, group_quants, select
from ollama_fit.plan import PlanRequest

DEFAULT_QUANT = "Q4_K_M"  # what the Hub and Ollama pick for hf.co/org/repo without a tag


@dataclass(frozen=True)
class Target:
    repo: str
    quant: QuantFiles
    model: CatalogModel | None = None  # when it came from the catalog (or a plan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "quant": self.quant.label,
            "files": [f.path for f in self.quant.files],
            "bytes": self.quant.total_bytes,
            "model": self.model.id if self.model else None,
        }


@dataclass(frozen=True)
class PullResult:
    target: Target
    fetched: tuple[Fetched, ...]

    @property
    def first_path(self) -> str:
        return str(self.fetched[0].path)

    def to_dict(self) -> dict[str, Any]:
        return self.target.to_dict() | {
            "local_files": [str(f.path) for f in self.fetched],
            "downloaded_bytes": sum(f.downloaded for f in self.fetched),
            "reused": all(f.reused for f in self.fetched),
        }


def resolve(ref: str | None, quant: str | None, hub: Hub, pick: Callable[[str | None], tuple[str, str]]) -> Target:
    """REF -> the files to fetch. No REF: the plan's pick. A catalog id (qwen3:8b): that model, at --quant or
    the best quant that fits. hf.co/org/repo[:QUANT]: that repository, Q4_K_M when no quant is named.
    `pick(model_id or None)` runs the planner and returns its (model id, quant)."""
    if ref is None or "/" not in ref:
        model_id, chosen = (ref, quant) if ref is not None and quant else pick(ref)
        model = find_model(model_id)
        return Target(model.repo, select(group_quants(hub.list_files(model.repo)), quant or chosen), model)
    hub_ref = HubRef.parse(ref)
    groups = group_quants(hub.list_files(hub_ref.repo))
    wanted = quant or hub_ref.quant
    if wanted is None:
        if not any(g.label == DEFAULT_QUANT for g in groups):
            labels = ", ".join(g.label for g in groups) or "none"
            raise HubError(f"{hub_ref.repo} has no {DEFAULT_QUANT}", hint=f"name one: {hub_ref}:QUANT ({labels})")
        wanted = DEFAULT_QUANT
    return Target(hub_ref.repo, select(groups, wanted))


def pull(target: Target, fetcher: Fetcher) -> PullResult:
    fetched = fetcher.fetch_all(target.repo, list(target.quant.files))
    return PullResult(target, tuple(fetched))


def picker(
    report: Callable[[], ProbeReport], request: PlanRequest, hub: Hub | None
) -> Callable[[str | None], tuple[str, str]]:
    """The plan's (model id, quant), for the whole catalog or one model; the hardware is read only if needed."""

    def pick(model_id: str | None) -> tuple[str, str]:
        from ollama_fit.catalog import catalog
        from ollama_fit.exact import exact_plan

        req = replace(request, model=model_id) if model_id else request
        result = exact_plan(report(), req, catalog(), hub)
        return result.choice.model.id, result.choice.quant

    return pick
