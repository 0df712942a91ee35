"""`pull`: what to download (a plan's pick, a catalog model, or hf.co/org/repo:QUANT) and the download itself."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ollama_fit.errors import HubError
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.hub.fetch import Fetched, Fetcher
from ollama_fit.hub.fetch.layout import repo_folder
from ollama_fit.hub.repos import Hub, HubFile, HubRef, QuantFiles, group_quants, select
from ollama_fit.model.catalog import CatalogModel, find_model
from ollama_fit.ollama.client import Ollama
from ollama_fit.ollama.register import Records, Registration, file_map, keep_registered, model_name, preflight, register
from ollama_fit.plan.planner import PlanRequest

DEFAULT_QUANT = "Q4_K_M"  # what the Hub and Ollama pick for hf.co/org/repo without a tag


@dataclass(frozen=True)
class Target:
    repo: str
    quant: QuantFiles
    model: CatalogModel | None = None  # when it came from the catalog (or a plan)
    ctx: int | None = None  # the plan's context, when a plan chose it
    projector: HubFile | None = None  # the vision projector registered beside the model (Ollama 0.30+)

    @property
    def files(self) -> tuple[HubFile, ...]:
        """Everything fetched and registered: the model's file(s), then its projector."""
        return (*self.quant.files, *((self.projector,) if self.projector else ()))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "quant": self.quant.label,
            "files": [f.path for f in self.quant.files],
            "projector": self.projector.path if self.projector else None,
            "bytes": self.total_bytes,
            "model": self.model.id if self.model else None,
        }


@dataclass(frozen=True)
class PullResult:
    target: Target
    fetched: tuple[Fetched, ...]
    registration: Registration | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.target.to_dict() | {
            "local_files": [str(f.path) for f in self.fetched],
            "downloaded_bytes": sum(f.downloaded for f in self.fetched),
            "reused": all(f.reused for f in self.fetched),
            "stale_freed_bytes": sum(f.stale_freed for f in self.fetched),
            "registration": self.registration.to_dict() if self.registration else None,
        }


@dataclass(frozen=True)
class RegisterOptions:
    name: str | None = None  # default: register.model_name
    force: bool = False
    keep_gguf: bool = False
    ctx: int = 8192  # pinned as num_ctx so the plan holds
    draft: int = 0  # draft_num_predict: drafting with the file's own prediction block (0: Ollama's default, off)

    def name_for(self, target: Target) -> str:
        return self.name or model_name(target.repo, target.quant.label, target.model.id if target.model else None)

    @property
    def parameters(self) -> dict[str, Any]:
        """The Ollama parameters the model is created with."""
        return {"num_ctx": self.ctx} | ({"draft_num_predict": self.draft} if self.draft else {})


Pick = Callable[[str | None], "Picked"]
Lister = Callable[[str], list[HubFile]]
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def cached_files(cache_dir: Path, repo: str, revision: str = "main") -> list[HubFile]:
    """The files of `repo` the Hugging Face cache holds (the snapshot refs/<revision> names, else the newest),
    each with its size and, for LFS files, the sha256 its blob is named after: the listing to work from when
    HF_HUB_OFFLINE is set. The bytes are checked against that sha256 before use (Fetcher.fetch)."""
    repo_dir = cache_dir / repo_folder(repo)
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / revision
    snapshot = snapshots / ref.read_text().strip() if ref.is_file() else None
    if snapshot is None or not snapshot.is_dir():
        found = [s for s in snapshots.iterdir() if s.is_dir()] if snapshots.is_dir() else []
        snapshot = max(found, key=lambda s: s.stat().st_mtime) if found else None
    if snapshot is None:
        raise HubError(
            f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE"
        )
    out = []
    for path in sorted(snapshot.rglob("*")):
        if not path.is_file():  # also skips links whose blob is gone
            continue
        blob = path.resolve().name
        out.append(
            HubFile(path.relative_to(snapshot).as_posix(), path.stat().st_size, blob if SHA256.match(blob) else None)
        )
    return out


def lister(hub: Hub, cache_dir: Path) -> Lister:
    """How to list a repository: the Hub, or with HF_HUB_OFFLINE the cache."""
    return (lambda repo: cached_files(cache_dir, repo)) if hub.offline else hub.list_files


@dataclass(frozen=True)
class Picked:
    """What a plan chose for `pull`: the model, its quant and context, and its projector file (or None)."""

    model_id: str
    quant: str
    ctx: int | None = None
    projector: str | None = None


def resolve(
    ref: str | None, quant: str | None, hub: Hub, pick: Pick, files: Lister | None = None, vision: bool = False
) -> Target:
    """REF -> the files to fetch. No REF: the plan's pick (with the projector the plan chose). A catalog id
    (qwen3:8b): that model, at --quant or the best quant that fits. hf.co/org/repo[:QUANT]: that repository,
    Q4_K_M when no quant is named; with `vision`, the repository's projector too. `pick(model_id or None)`
    runs the planner; `files` lists a repository (default: the Hub; see `lister`)."""
    list_files = files or hub.list_files
    if ref is None or "/" not in ref:
        picked = Picked(ref, quant) if ref is not None and quant else pick(ref)
        model = find_model(picked.model_id)
        listing = list_files(model.repo)
        found = _projector(listing, picked.projector, vision and picked.projector is None and quant is not None)
        return Target(model.repo, select(group_quants(listing), quant or picked.quant), model, picked.ctx, found)
    hub_ref = HubRef.parse(ref)
    listing = list_files(hub_ref.repo)
    groups = group_quants(listing)
    wanted = quant or hub_ref.quant
    if wanted is None:
        if not any(g.label == DEFAULT_QUANT for g in groups):
            labels = ", ".join(g.label for g in groups) or "none"
            raise HubError(f"{hub_ref.repo} has no {DEFAULT_QUANT}", hint=f"name one: {hub_ref}:QUANT ({labels})")
        wanted = DEFAULT_QUANT
    return Target(hub_ref.repo, select(groups, wanted), projector=_projector(listing, None, vision))


def _projector(listing: list[HubFile], chosen: str | None, any_found: bool) -> HubFile | None:
    """The projector a plan chose (by path), or with `any_found` the repository's own (hub.projector)."""
    from ollama_fit.hub.repos import projector

    if chosen is not None:
        return next((f for f in listing if f.path == chosen), None)
    return projector(listing) if any_found else None


def pull(
    target: Target,
    fetcher: Fetcher,
    ollama: Ollama | None = None,
    options: RegisterOptions | None = None,
    records: Records | None = None,
) -> PullResult:
    """Fetch, and with `ollama` register: everything that could stop the registration is checked before the
    first byte; a model already registered from the same files is left as it is, without downloading. The
    files stay locked from the checks to the cleanup, so a second pull of them waits, then finds it done."""
    if ollama is None:
        return PullResult(target, tuple(fetcher.fetch_all(target.repo, list(target.files))))
    with fetcher.hold(target.repo, list(target.files)):
        # read once the files are ours: a pull that held them before us may have just recorded its model
        records = Records.load(records.path if records else None)
        return _pull_and_register(target, fetcher, ollama, options or RegisterOptions(), records)


def _pull_and_register(
    target: Target, fetcher: Fetcher, ollama: Ollama, options: RegisterOptions, records: Records
) -> PullResult:
    name = options.name_for(target)
    files = file_map([(f.name, str(f.sha256)) for f in target.files])
    files_list = list(target.files)
    download = (fetcher.missing_bytes(target.repo, files_list), fetcher.device(target.repo))
    pre = preflight(ollama, name, files, target.total_bytes, target.quant.split, options.force, records, download)
    parameters = options.parameters
    origin = {"repo": target.repo, "quant": target.quant.label}
    kept = keep_registered(ollama, pre, name, files, parameters, records, origin)
    if kept is not None:  # ours, from these files: unchanged, or updated to the new parameters
        # a copy left by an interrupted run goes too, unless it is to be kept
        freed = 0 if options.keep_gguf else fetcher.forget(target.repo, files_list)
        return PullResult(target, (), replace(kept, freed_bytes=freed))
    fetched = fetcher.fetch_all(target.repo, files_list)
    registration = register(ollama, pre, name, fetched, parameters, records, origin, fetcher.on_progress)
    if not options.keep_gguf:
        freed = fetcher.forget(target.repo, [f.file for f in fetched])
        registration = replace(registration, freed_bytes=freed)
    return PullResult(target, tuple(fetched), registration)


def picker(
    report: Callable[[], ProbeReport],
    request: PlanRequest,
    hub: Hub | None,
    adjust: Callable[[PlanRequest, ProbeReport], PlanRequest] = lambda req, rep: req,
) -> Pick:
    """The plan's (model id, quant, context), for the whole catalog or one model; the hardware is read only
    when a plan is needed, and `adjust` adds what this machine learned (cli.learned)."""

    def pick(model_id: str | None) -> Picked:
        from ollama_fit.model.catalog import catalog
        from ollama_fit.plan.exact import exact_plan

        rep = report()
        req = adjust(replace(request, model=model_id) if model_id else request, rep)
        result = exact_plan(rep, req, catalog(), hub)
        c = result.choice
        return Picked(c.model.id, c.quant, c.ctx, result.projector.path if result.projector else None)

    return pick
