"""Helpers shared by the download tests (test_fetch.py, test_fetch_parallel.py): a Fetcher on the fake Hub with
its sleeps recorded, the listed file, and the check of a finished download."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ollama_fit.hub.fetch import PARTIAL, RANGES, Fetcher
from ollama_fit.hub.repos import Hub, HubFile


class Waits(list):
    """An injected `sleep`: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make(fake_hub, tmp_path: Path, *, token: str | None = None, offline: bool = False, **kw: Any):
    """A Fetcher on the fake Hub caching under tmp_path; its waits and the Hub's are recorded, not slept."""
    waits = Waits()
    hub = Hub(fake_hub.endpoint, token=token, offline=offline, sleep=waits)
    return Fetcher(hub, tmp_path / "hub", tmp_path / "state", sleep=waits, **kw), waits


def listed(fake_hub, repo: str, path: str) -> HubFile:
    """The file as the Hub lists it (size and sha256)."""
    return next(f for f in Hub(fake_hub.endpoint).list_files(repo) if f.path == path)


def assert_complete(fetched, repo_obj, path: str | None = None) -> None:
    """The snapshot link holds the file's bytes, points at blobs/<sha256>, and nothing of the work is left: no
    partial, no range record, no lock."""
    path = path or fetched.file.path
    data = repo_obj.files[path].source.read_bytes()
    assert fetched.path.read_bytes() == data
    assert fetched.path.is_symlink()
    blob = Path(os.path.realpath(fetched.path))
    assert blob.name == hashlib.sha256(data).hexdigest()
    repo_folder = fetched.path.parents[2 + path.count("/")]  # snapshots/<commit>/<path>
    assert blob.parent == (repo_folder / "blobs").resolve()
    assert not list(blob.parent.glob(f"*{PARTIAL}"))
    assert not list(blob.parent.glob(f"*{RANGES}"))
    assert not list(repo_folder.parent.rglob("*.lock"))  # the lock is gone with the work
