"""`inspect`: exact facts from GGUF headers (a local file or a Hub repository) and what each quant needs here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ollama_fit.hardware.model import ProbeReport
from ollama_fit.hub.repos import Hub, HubRef, QuantFiles, group_quants, select
from ollama_fit.memory.estimate import Runtime, state_bytes
from ollama_fit.model.gguf.cache import HeaderCache
from ollama_fit.model.gguf.reader import GGUFHeader, TensorInfo, read_header, read_local_header
from ollama_fit.model.gguf.shape import spec_from_header
from ollama_fit.model.spec import ModelSpec
from ollama_fit.placement.offload import Placement, Shortfall, place, place_ngl


@dataclass(frozen=True)
class QuantReport:
    quant: str
    files: tuple[str, ...]
    file_bytes: int
    spec: ModelSpec
    placement: Placement | Shortfall

    @property
    def fits(self) -> bool:
        return isinstance(self.placement, Placement)

    def to_dict(self) -> dict[str, Any]:
        p = self.placement
        out: dict[str, Any] = {
            "quant": self.quant,
            "files": list(self.files),
            "file_bytes": self.file_bytes,
            "fits": self.fits,
            "exact": self.spec.exact,
        }
        if isinstance(p, Placement):
            out["memory"] = p.memory.to_dict()
            out["placement"] = p.to_dict()
            out["speed_tps"] = round(p.speed.tps, 1) if p.speed else None
        else:
            out["shortfall"] = {"device": p.device, "need_bytes": p.need_bytes, "have_bytes": p.have_bytes}
        return out


@dataclass(frozen=True)
class Inspection:
    ref: str
    source: str  # "local" or "hub"
    spec: ModelSpec  # the first quant's spec: the model's hyper-parameters
    quants: tuple[QuantReport, ...]
    header_bytes_read: int
    runtime: Runtime
    report: ProbeReport
    gpu_layers: int | None = None  # llama.cpp's -ngl, when given (--gpu-layers); None: the planner's placement

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "gpu_layers": self.gpu_layers,
            "source": self.source,
            "model": summarize(self.spec),
            "runtime": {
                "ctx": self.runtime.ctx,
                "kv_type": self.runtime.kv_type,
                "flash_attn": self.runtime.flash_attn,
                "ubatch": self.runtime.ubatch,
                "parallel": self.runtime.parallel,
                "backend": self.runtime.backend,
                "runner": self.runtime.runner,
                "mtp_layers": self.runtime.mtp_layers,
                "mmap": self.runtime.mmap,
                "draft": self.runtime.draft,
                "draft_file": _draft_dict(self.runtime),
            },
            "estimates": [q.to_dict() for q in self.quants],
            "header_bytes_read": self.header_bytes_read,
        }


def _draft_dict(rt: Runtime) -> dict[str, Any] | None:
    """The draft file the load drafts with, and what it adds (CPU-side sizes; where they sit: `estimates`)."""
    from ollama_fit.memory.estimate import draft_kv_bytes

    d = rt.draft_model
    if d is None or not rt.draft_file or not rt.draft:
        return None
    return {
        "name": d.name,
        "architecture": d.arch,
        "spec_type": rt.draft_file,
        "weights_bytes": d.weights_bytes,
        "kv_bytes": draft_kv_bytes(d, rt),
        "cached_layers": d.cached_layers,
    }


def summarize(spec: ModelSpec) -> dict[str, Any]:
    s = spec.shape
    return {
        "architecture": s.arch,
        "name": spec.extra.get("name", ""),
        "params": spec.params,
        "active_params": spec.active_params,
        "context_length": s.context_length,
        "layers": s.n_layer,
        "embedding_length": s.n_embd,
        "heads": s.n_head,
        "kv_heads": max(s.n_head_kv),
        "key_length": s.key_length,
        "value_length": s.value_length,
        "vocab_size": s.n_vocab,
        "experts": s.n_expert,
        "experts_used": s.n_expert_used,
        "sliding_window": s.sliding_window,
        "tied_embeddings": s.tied_embeddings,
        "chat_template": spec.extra.get("chat_template") == "yes",
        "tensors": len(spec.tensors),
        "memory_model": "modelled" if s.modelled else "bound",
        "kv_layers": sum(1 for i in range(s.n_layer) if s.has_kv(i)) if s.modelled else s.n_layer,
        "recurrent_layers": sum(1 for i in range(s.n_layer) if s.is_recurrent(i)),
        "state_bytes_per_slot": state_bytes(spec, Runtime(parallel=1)),
        "notes": list(spec.memory_notes),
    }


def _estimate(
    quant: str,
    files: tuple[str, ...],
    size: int,
    spec: ModelSpec,
    runtime: RuntimeOf,
    report: ProbeReport,
    gpu_layers: int | None = None,
) -> QuantReport:
    rt = _runtime_of(runtime, spec)
    budget = report.budget
    if rt.backend == "cpu":  # --backend cpu: plan on RAM alone, whatever GPUs there are
        budget = replace(budget, gpus=())
    if gpu_layers is not None:
        return QuantReport(quant, files, size, spec, place_ngl(spec, rt, budget, gpu_layers))
    return QuantReport(quant, files, size, spec, place(spec, rt, budget, report.hardware))


# one runtime for every file, or the runtime of each file (an Ollama target's batch depends on the file's size)
RuntimeOf = Runtime | Callable[[ModelSpec], Runtime]


def _runtime_of(runtime: RuntimeOf, spec: ModelSpec) -> Runtime:
    return runtime if isinstance(runtime, Runtime) else runtime(spec)


def inspect_file(path: Path, rt: RuntimeOf, report: ProbeReport, gpu_layers: int | None = None) -> Inspection:
    """A local GGUF, or the whole model when `path` is one shard of a split file (as serve-cmd reads it)."""
    paths = local_shards(path)
    headers = [read_local_header(p) for p in paths]
    spec = _merged_spec(headers, paths)
    size = sum(p.stat().st_size for p in paths)
    quant = _estimate(spec.quant, tuple(p.name for p in paths), size, spec, rt, report, gpu_layers)
    shown = _runtime_of(rt, spec)
    return Inspection(str(path), "local", spec, (quant,), headers[0].data_offset, shown, report, gpu_layers)


def hub_spec(hub: Hub, repo: str, group: QuantFiles, cache: HeaderCache | None = None) -> tuple[ModelSpec, int]:
    """The exact spec of one quant: every shard's header (tensor tables), hyper-parameters from the first.
    Headers already read (by sha256) come from the cache; returns the spec and the bytes read remotely."""
    from ollama_fit import config

    cache = cache or HeaderCache(config.cache_dir() / "headers")
    tensors: list[TensorInfo] = []
    first: GGUFHeader | None = None
    read_total = 0
    for f in group.files:
        header = cache.get(f.sha256)
        if header is None:
            header, used = read_header(partial(_range, hub, repo, f.path), f.size)
            cache.put(f.sha256, header)
            read_total += used
        first = first or header
        tensors.extend(header.tensors)
    if first is None:
        raise ValueError("a quant without files")
    merged = replace(first, tensors=tuple(tensors))
    return spec_from_header(merged, group.total_bytes, shards=len(group.files)), read_total


def _range(hub: Hub, repo: str, path: str, start: int, end: int) -> bytes:
    return hub.read_range(repo, path, start, end)


def inspect_hub(ref: HubRef, hub: Hub, rt: RuntimeOf, report: ProbeReport, gpu_layers: int | None = None) -> Inspection:
    groups = group_quants(hub.list_files(ref.repo))
    if ref.quant:
        groups = [select(groups, ref.quant)]
    if not groups:
        from ollama_fit.errors import HubError

        raise HubError(f"no GGUF model files in {ref.repo}", hint="is this a GGUF repository?")
    reports = []
    read_total = 0
    for group in groups:
        spec, used = hub_spec(hub, ref.repo, group)
        read_total += used
        paths = tuple(f.path for f in group.files)
        reports.append(_estimate(group.label, paths, group.total_bytes, spec, rt, report, gpu_layers))
    shown = _runtime_of(rt, reports[0].spec)
    return Inspection(str(ref), "hub", reports[0].spec, tuple(reports), read_total, shown, report, gpu_layers)


def inspect_runtime(
    report: ProbeReport,
    ctx: str,
    kv_type: str,
    flash_attn: str,
    ubatch: int | None,
    parallel: int,
    backend: str,
    ollama: tuple[int, int, int] | None = None,
    draft: int = 0,
    draft_file: Path | None = None,
) -> Callable[[ModelSpec], Runtime]:
    """The inspect options as the planner's runtime of each file (for Ollama `ollama`, by default the newest
    modelled; None: llama-server itself); --backend overrides where offloaded layers run. `draft_file`: a draft
    GGUF the model is created with (Ollama's DRAFT), planned with its memory when `draft` > 0."""
    from ollama_fit.plan.planner import PlanRequest, runtime_for
    from ollama_fit.runtime.ollama import NEWEST
    from ollama_fit.validate import at_least_one, parse_ctx

    tokens = parse_ctx(ctx, allow_max=False, command="inspect") or 0  # never None without max
    parallel = at_least_one(parallel, "--parallel")
    if ubatch is not None:
        ubatch = at_least_one(ubatch, "--ubatch")
    fa = None if flash_attn == "auto" else flash_attn == "on"
    if backend == "rpc" and not report.hardware.gpus:
        from ollama_fit.errors import InvalidInput

        raise InvalidInput("--backend rpc needs the device's size", hint="add --vram SIZE (the rpc-server's memory)")
    if backend == "cpu":  # what runs it sees no GPU: Ollama's CPU-only rules (mmap, batch) apply
        report = replace(report, hardware=replace(report.hardware, gpus=()))
    drafter = None
    if draft_file is not None:
        from ollama_fit.model.gguf.draft import read_draft

        drafter = read_draft(draft_file)
    request = PlanRequest(
        ctx=tokens,
        kv_type=kv_type,
        flash_attn=fa,
        ubatch=ubatch,
        parallel=parallel,
        ollama=ollama or NEWEST,
        draft=draft,
        draft_arch=drafter.arch if drafter else None,
    )

    def of(spec: ModelSpec) -> Runtime:
        if drafter is not None and draft:
            from ollama_fit.model.gguf.draft import check_pairing

            check_pairing(drafter, spec.shape)
        rt = runtime_for(request, report, spec, tokens)
        if drafter is not None:
            rt = replace(rt, draft_model=drafter)
        return rt if backend == "auto" else replace(rt, backend=backend, extra_overhead=0)

    return of


def inspect_ref(ref: str, rt: RuntimeOf, report: ProbeReport, gpu_layers: int | None = None) -> Inspection:
    """A path to a .gguf file, or a Hub reference; `gpu_layers` is llama.cpp's -ngl (None: plan it)."""
    if gpu_layers is not None and gpu_layers < 0:
        from ollama_fit.errors import InvalidInput

        raise InvalidInput("--gpu-layers must be 0 or more", hint="llama.cpp's -ngl: 0 keeps every layer on the CPU")
    if is_local_ref(ref):
        return inspect_file(Path(ref), rt, report, gpu_layers)
    return inspect_hub(HubRef.parse(ref), Hub.from_env(), rt, report, gpu_layers)


def local_shards(path: Path) -> list[Path]:
    """A local model: the file, or every shard of a split file when `path` is one of them (NAME-00001-of-
    00003.gguf), in order; a missing shard is an error."""
    from ollama_fit.errors import BadModelFile
    from ollama_fit.hub.repos import SHARD

    m = SHARD.match(path.name)
    if not m:
        return [path]
    count = int(m["count"])
    shards = [path.with_name(f"{m['prefix']}-{i:05d}-of-{m['count']}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise BadModelFile(
            f"{path.name} is one of {count} shards and {', '.join(missing)} is missing",
            hint=f"put every shard in {path.parent}",
        )
    return shards


def is_local_ref(ref: str) -> bool:
    """A path to a .gguf file (existing or not), or any existing path, rather than a Hub reference."""
    path = Path(ref)
    return path.suffix.lower() == ".gguf" or path.exists()


def local_spec(paths: list[Path]) -> ModelSpec:
    """The exact spec of downloaded files: every shard's tensors, hyper-parameters from the first."""
    return _merged_spec([read_local_header(p) for p in paths], paths)


def _merged_spec(headers: list[GGUFHeader], paths: list[Path]) -> ModelSpec:
    merged = replace(headers[0], tensors=tuple(t for h in headers for t in h.tensors))
    return spec_from_header(merged, sum(p.stat().st_size for p in paths), shards=len(paths))
