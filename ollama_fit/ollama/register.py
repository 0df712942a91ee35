"""Register downloaded GGUF files with Ollama: names, ownership, idempotence, cleanup, disk.

Ollama keeps no note of who created a model, so ollama-fit records the models it created (name -> blob
digests, parameters, and the manifest digest Ollama lists for it) in its state folder. A name that exists and
is not in that record, whose manifest changed since (a user's `ollama create` under the same name), or whose
blob digests differ, is only replaced with --force. The same files with the same parameters are a no-op;
the same files with new parameters (another --ctx) update the model in place, nothing downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_fit import config
from ollama_fit.errors import DiskSpaceError, InvalidInput, OllamaError
from ollama_fit.files import write_atomic
from ollama_fit.hub.fetch import Fetched, Listener, Progress, existing_parent
from ollama_fit.ollama.client import Ollama, ServerInfo, canonical
from ollama_fit.units import human

_PART = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,79}$", re.IGNORECASE)
_NAMESPACE = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,79}$", re.IGNORECASE)


def valid_name(name: str) -> bool:
    """Ollama's rule: [namespace/]model[:tag], parts of [A-Za-z0-9_.-] (no '.' in the namespace), 80 max."""
    path, _, tag = name.partition(":")
    parts = path.split("/")
    if len(parts) > 2 or (tag and not _PART.match(tag)) or not _PART.match(parts[-1]):
        return False
    return len(parts) == 1 or bool(_NAMESPACE.match(parts[0]))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")[:80] or "model"


def model_name(repo: str, quant: str, catalog_id: str | None = None) -> str:
    """The deterministic name: catalog models as `family:size-quant` (qwen3:8b-q4_k_m, like Ollama's library),
    other repositories as `repo:quant` without the org, its `org_` prefix or the -GGUF suffix
    (bartowski/google_gemma-3-12b-it-GGUF at Q4_K_M -> gemma-3-12b-it:q4_k_m)."""
    if catalog_id:
        base, _, size = catalog_id.partition(":")
        return f"{_slug(base)}:{_slug(f'{size}-{quant}' if size else quant)}"
    name = repo.rsplit("/", 1)[-1]
    name = re.sub(r"[-_.]gguf$", "", name, flags=re.IGNORECASE)
    org = repo.split("/", 1)[0].lower()
    if "_" in name and name.split("_", 1)[0].lower() not in ("", org):
        name = name.split("_", 1)[1]  # bartowski's "<source org>_<model>"
    return f"{_slug(name)}:{_slug(quant)}"


@dataclass
class Records:
    """The models ollama-fit created: name -> {"files": {...}, "repo", "quant"}; written atomically."""

    path: Path
    data: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Records:
        path = path or config.state_dir() / "registered.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        return cls(path, data if isinstance(data, dict) else {})

    def get(self, name: str) -> dict[str, Any] | None:
        return self.data.get(canonical(name))

    def put(self, name: str, entry: dict[str, Any]) -> None:
        self.data[canonical(name)] = entry
        self._save()

    def drop(self, name: str) -> None:
        if self.data.pop(canonical(name), None) is not None:
            self._save()

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True))


@dataclass(frozen=True)
class Registration:
    name: str
    status: str  # created, replaced, updated (same files, new parameters), unchanged
    files: dict[str, str]
    parameters: dict[str, Any]
    server: ServerInfo
    warnings: tuple[str, ...] = ()
    freed_bytes: int = 0
    uploaded_bytes: int = 0
    changes: tuple[str, ...] = ()  # what an update changed: "num_ctx 4096 -> 8192"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "files": self.files,
            "parameters": self.parameters,
            "server": self.server.to_dict(),
            "warnings": list(self.warnings),
            "freed_bytes": self.freed_bytes,
            "uploaded_bytes": self.uploaded_bytes,
            "changes": list(self.changes),
        }


def file_map(names_and_digests: list[tuple[str, str]]) -> dict[str, str]:
    return {name: f"sha256:{digest}" for name, digest in names_and_digests}


@dataclass(frozen=True)
class Preflight:
    server: ServerInfo
    state: str  # absent, same, ours-different, replaced (by someone else since), foreign


def preflight(
    ollama: Ollama,
    name: str,
    files: dict[str, str],
    total_bytes: int,
    split: bool,
    force: bool,
    records: Records,
    download: tuple[int, int] = (0, -1),
) -> Preflight:
    """Everything that can stop a registration, checked before any download. `download` is (bytes still to
    download, the device they land on): on the same disk as Ollama's models both copies must fit at once."""
    if not valid_name(name):
        raise InvalidInput(
            f"{name!r} is not a valid Ollama model name",
            hint="use letters, digits, '_', '.', '-' as [namespace/]model[:tag], 80 per part",
        )
    info = ollama.check()
    if split and not info.shards:
        raise OllamaError(
            f"Ollama {info.version} cannot import a split GGUF (that needs Ollama 0.30 or newer)",
            hint="update Ollama, choose a quant published as one file (--quant), or use --target llama.cpp",
        )
    state = _state(ollama, name, files, records)
    if state in ("foreign", "replaced", "ours-different") and not force:
        why = {
            "foreign": "not created by ollama-fit",
            "replaced": "replaced since ollama-fit created it",
            "ours-different": "created by ollama-fit from other files",
        }[state]
        raise OllamaError(
            f"Ollama already has a model named {name} ({why})", hint="choose another --name, or --force to replace it"
        )
    if state != "same" and info.local:
        _check_disk(total_bytes, info, download)
    return Preflight(info, state)


def _state(ollama: Ollama, name: str, files: dict[str, str], records: Records) -> str:
    """Ours only if our record says so AND Ollama still lists the manifest we created (records written
    before manifests were recorded are trusted as they are)."""
    manifest = ollama.manifest_digest(name)
    if manifest is None:
        return "absent"
    record = records.get(name)
    if record is None:
        return "foreign"
    if record.get("manifest") not in (None, manifest):
        return "replaced"
    return "same" if record.get("files") == files else "ours-different"


def _check_disk(total_bytes: int, info: ServerInfo, download: tuple[int, int]) -> None:
    folder = config.ollama_models_dir()
    probe = existing_parent(folder)
    need = total_bytes * (2 if info.shards else 1)  # 0.30+ rewrites the model once more while validating it
    missing, device = download
    shared = probe.stat().st_dev == device
    if shared:
        need += missing  # our download and Ollama's copy sit on this disk together until ours is removed
    free = shutil.disk_usage(probe).free
    if need > free:
        where = " (with the download, on the same disk)" if shared and missing else ""
        raise DiskSpaceError(
            f"not enough disk space for Ollama's copy in {folder}{where}: {human(need)} needed, {human(free)} free",
            hint="free some space, or set OLLAMA_MODELS (or HF_HOME) to a bigger disk",
        )


def register(
    ollama: Ollama,
    pre: Preflight,
    name: str,
    fetched: list[Fetched],
    parameters: dict[str, Any],
    records: Records,
    origin: dict[str, str],
    on_progress: Listener = lambda p: None,
) -> Registration:
    """Upload (skipping blobs the server has), create, read back; a failed create leaves no model behind.
    Each phase is announced through `on_progress`: "upload" events with bytes, then "uploaded", "create"."""
    files = file_map([(f.path.name, str(f.file.sha256)) for f in fetched])
    uploaded = _upload(ollama, fetched, files, name, on_progress)
    existed = pre.state != "absent"
    on_progress(Progress("create", name, 0, 0, f"creating {name} in Ollama"))
    shown = _create_recorded(ollama, name, files, parameters, records, origin, existed=existed)
    warnings = _readback_warnings(shown, parameters, pre.server)
    status = "replaced" if existed else "created"
    return Registration(name, status, files, parameters, pre.server, tuple(warnings), uploaded_bytes=uploaded)


UPLOAD_EVERY = 0.2  # seconds between upload progress events


def _upload(
    ollama: Ollama,
    fetched: list[Fetched],
    files: dict[str, str],
    name: str,
    on_progress: Listener,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Stream each file to Ollama (a blob it has is skipped); progress as "upload" events over all files."""
    total = sum(f.file.size for f in fetched)
    done, last = 0, clock()
    on_progress(Progress("upload", name, 0, total, "uploading to Ollama"))

    def sent(n: int) -> None:
        nonlocal done, last
        done += n
        if clock() - last >= UPLOAD_EVERY:
            last = clock()
            on_progress(Progress("upload", name, done, total))

    uploaded = 0
    for f in fetched:
        before = done
        uploaded += ollama.upload(Path(os.path.realpath(f.path)), files[f.path.name], sent)
        done = before + f.file.size  # a blob Ollama already had counts as there
    note = f"{human(uploaded)} uploaded to Ollama" if uploaded else "Ollama already had the file(s): nothing uploaded"
    on_progress(Progress("uploaded", name, total, total, note))
    return uploaded


def _create_recorded(
    ollama: Ollama,
    name: str,
    files: dict[str, str],
    parameters: dict[str, Any],
    records: Records,
    origin: dict[str, str],
    *,
    existed: bool,
) -> Any:
    """Create the model from blobs Ollama holds and read it back, keeping our record true at every step: it
    is written before the create (should Ctrl-C land after Ollama wrote the model, the next run knows it is
    ours), restored (or dropped) when the create fails, and completed with the manifest after it. A model
    that did not exist before is deleted again on failure: no half-registered model."""
    previous = records.get(name)
    records.put(name, {"files": files, **origin})
    try:
        ollama.create(name, files, parameters)
        shown = ollama.show(name)
        if shown is None:
            raise OllamaError(f"Ollama reported success but does not know {name}", hint="see `ollama serve` logs")
    except OllamaError:
        if not existed:
            ollama.delete(name)
        if previous is None:
            records.drop(name)
        else:  # the model Ollama still has is the one recorded before
            records.put(name, previous)
        raise
    records.put(name, _record(ollama, name, files, parameters, origin))
    return shown


def _record(
    ollama: Ollama, name: str, files: dict[str, str], parameters: dict[str, Any], origin: dict[str, str]
) -> dict[str, Any]:
    """What we created, with the manifest digest Ollama now lists: a later change by anyone else shows."""
    return {"files": files, "parameters": parameters, "manifest": ollama.manifest_digest(name), **origin}


def keep_registered(
    ollama: Ollama,
    pre: Preflight,
    name: str,
    files: dict[str, str],
    parameters: dict[str, Any],
    records: Records,
    origin: dict[str, str],
) -> Registration | None:
    """A model we registered from these same files: 'unchanged' when its parameters are those asked for,
    'updated' (re-created from the blobs Ollama holds, nothing downloaded) when they differ. None when it has
    to be registered from the files: not ours, other files, gone, or a blob missing."""
    shown = ollama.show(name) if pre.state == "same" else None
    if shown is None:
        return None
    changes = parameter_changes(shown, parameters)
    if not changes:
        return Registration(name, "unchanged", files, parameters, pre.server)
    if not all(ollama.has_blob(digest) for digest in files.values()):
        return None
    shown = _create_recorded(ollama, name, files, parameters, records, origin, existed=True)
    warnings = tuple(_readback_warnings(shown, parameters, pre.server))
    return Registration(name, "updated", files, parameters, pre.server, warnings, changes=changes)


def parameter_changes(shown: Any, parameters: dict[str, Any]) -> tuple[str, ...]:
    """What re-creating a shown model with `parameters` would change ("num_ctx 8192 -> 32768")."""
    had = shown_parameters(getattr(shown, "parameters", None) or "")
    return tuple(f"{k} {had.get(k, 'unset')} -> {v}" for k, v in parameters.items() if had.get(k) != str(v))


def shown_parameters(text: str) -> dict[str, str]:
    """/api/show's `parameters` text ("num_ctx    4096" per line) -> {"num_ctx": "4096"}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out[key] = value.strip().strip('"')
    return out


def _readback_warnings(shown: Any, parameters: dict[str, Any], server: ServerInfo) -> list[str]:
    warnings = []
    template = (getattr(shown, "template", None) or "").strip()
    if template in ("", "{{ .Prompt }}") and not server.shards:
        warnings.append(
            "Ollama found no chat template in the GGUF: answers may ramble or never stop; "
            "give the model a TEMPLATE and stop words, or use Ollama 0.30+ (it reads the GGUF's own)"
        )
    text = getattr(shown, "parameters", None) or ""
    ctx = parameters.get("num_ctx")
    if ctx is not None and not re.search(rf"(?m)^num_ctx\s+{ctx}\s*$", text):
        warnings.append(f"num_ctx {ctx} did not stick (Ollama shows: {text.strip() or 'no parameters'})")
    return warnings
