"""The Hugging Face cache layout (hf-hub.md section 1.5), kept exactly as huggingface_hub's own tools expect:
`scan_cache_dir()` and `hf cache ls` must find no inconsistency after anything ollama-fit does.

    models--org--repo/blobs/<sha256>                       the verified file
    models--org--repo/blobs/<sha256>.ollama-fit.partial    a download in progress (preallocated, sparse)
    models--org--repo/blobs/<sha256>.ollama-fit.ranges     which bytes of it are done (ranges.py)
    models--org--repo/snapshots/<commit>/<path>            relative symlink to the blob
    models--org--repo/refs/<revision>                      the commit
    .locks/models--org--repo/<sha256>.ollama-fit.lock      held while one ollama-fit works on the file
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PARTIAL = ".ollama-fit.partial"
RANGES = ".ollama-fit.ranges"
LOCK = ".ollama-fit.lock"


def repo_folder(repo: str) -> str:
    return "models--" + repo.replace("/", "--")


def sidecar_of(partial: Path) -> Path:
    return partial.with_name(partial.name.removesuffix(PARTIAL) + RANGES)


def existing_parent(path: Path) -> Path:
    """The path itself, or its nearest ancestor that exists (free space is asked of a real folder)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def link(repo_dir: Path, commit: str, path: str, blob: Path, revision: str) -> Path:
    """snapshots/<commit>/<path> -> ../../blobs/<sha256>, and refs/<revision> -> commit."""
    snapshot = repo_dir / "snapshots" / commit / path
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob, snapshot.parent)
    if snapshot.is_symlink() or snapshot.exists():
        if snapshot.is_symlink() and os.readlink(snapshot) == target:
            return snapshot
        snapshot.unlink()
    try:
        snapshot.symlink_to(target)
    except OSError:  # no symlinks (some Windows setups): a hard link, else a copy, as huggingface_hub does
        try:
            os.link(blob, snapshot)
        except OSError:
            shutil.copyfile(blob, snapshot)
    if revision != commit:
        ref = repo_dir / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return snapshot


def unlink_snapshots(repo_dir: Path, path: str, blob: Path) -> None:
    """Remove every snapshot entry of `path` that is this blob (a link to it, a copy, or a link already left
    dangling; Path.glob skips broken links, so the folders are walked by name), then the snapshot folders
    this leaves empty and the refs that named them."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return
    for commit in list(snapshots.iterdir()):
        entry = commit / path
        if entry.is_symlink():
            target = Path(os.path.abspath(entry.parent / os.readlink(entry)))
            if target == Path(os.path.abspath(blob)) or not target.exists():
                entry.unlink()
        elif entry.is_file():  # no symlinks here: huggingface_hub keeps the file itself in the snapshot
            entry.unlink()
        _prune_empty(entry.parent, stop=snapshots)
    for ref in _refs(repo_dir):
        if not (snapshots / ref.read_text().strip()).is_dir():
            ref.unlink()  # scan_cache_dir: "Reference(s) refer to missing commit hashes"
    _prune_empty(repo_dir / "refs", stop=repo_dir)


def prune_repo(repo_dir: Path) -> None:
    """Remove the repository folder when nothing is left in it but empty folders (what huggingface_hub's own
    delete does once a repository's last revision is gone); otherwise leave the layout intact."""
    if repo_dir.is_dir() and not any(p.is_file() or p.is_symlink() for p in repo_dir.rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _refs(repo_dir: Path) -> list[Path]:
    refs = repo_dir / "refs"
    return [p for p in refs.rglob("*") if p.is_file()] if refs.is_dir() else []
