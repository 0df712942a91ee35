"""Verified, resumable downloads into the Hugging Face cache.

Files land where `hf_hub_download` puts them (`models--org--repo/blobs/<sha256>`, a snapshot symlink, the
ref), so either tool reuses the other's downloads. Unlike huggingface_hub (which since 1.18 restarts from
zero and never checks sha256), bytes go to `blobs/<sha256>.ollama-fit.partial`, resume from there with a
Range request, are hashed while written (the bytes already present are hashed once on resume), and are
renamed to the blob only when their sha256 matches what the Hub publishes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ollama_fit.errors import BadModelFile, Busy, DiskSpaceError, HubError
from ollama_fit.hub import Hub, HubFile, hub_error
from ollama_fit.units import MiB, human

CHUNK = 1 * MiB
RETRIES = 6  # attempts per file for network errors, 408/429/5xx
MAX_WAIT = 60.0  # seconds: the longest back-off or Retry-After honoured
DISK_MARGIN = 64 * MiB  # keep this much free beyond the files themselves
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
PARTIAL = ".ollama-fit.partial"


@dataclass(frozen=True)
class Progress:
    """One progress event; cli.py renders it as a bar (TTY) or a JSON line."""

    kind: str  # start, progress, retry, verify, done, reused
    file: str
    done: int
    total: int
    message: str = ""


Listener = Callable[[Progress], None]


@dataclass(frozen=True)
class Fetched:
    file: HubFile
    path: Path  # the snapshot path (a symlink to the verified blob)
    downloaded: int  # bytes received over the network in this run
    reused: bool  # already complete in the cache


@dataclass
class Fetcher:
    """Downloads files of one Hub into one cache folder. `sleep` and `clock` are injectable for tests."""

    hub: Hub
    cache_dir: Path
    state_dir: Path | None = None  # where "this blob was verified" markers live (None: verify on every reuse)
    on_progress: Listener = field(default=lambda p: None)
    sleep: Callable[[float], None] = time.sleep
    retries: int = RETRIES

    # ----- public -----
    def fetch_all(self, repo: str, files: list[HubFile], revision: str = "main") -> list[Fetched]:
        self.preflight(repo, files)
        return [self.fetch(repo, f, revision) for f in files]

    def missing_bytes(self, repo: str, files: list[HubFile]) -> int:
        """What is still to download (partial files count as already there)."""
        return sum(max(0, f.size - self._present(repo, f)) for f in files)

    def device(self, repo: str) -> int:
        """The filesystem the downloads land on (to add up needs shared with Ollama's folder)."""
        return existing_parent(self._repo_dir(repo)).stat().st_dev

    def preflight(self, repo: str, files: list[HubFile]) -> None:
        """Enough free disk for what is still missing?"""
        missing = self.missing_bytes(repo, files)
        folder = self._repo_dir(repo)
        free = shutil.disk_usage(existing_parent(folder)).free
        if missing + DISK_MARGIN > free:
            raise DiskSpaceError(
                f"not enough disk space in {folder}: {human(missing)} to download, {human(free)} free",
                hint="free some space, or point HF_HOME (or HF_HUB_CACHE) at a bigger disk",
            )

    def fetch(self, repo: str, f: HubFile, revision: str = "main") -> Fetched:
        if not f.sha256:
            raise BadModelFile(f"{f.path} has no published sha256", hint="only LFS files (GGUF models) are fetched")
        blob = self._blob(repo, f)
        complete = blob.exists() and blob.stat().st_size == f.size and self._trusted(blob, f)
        commit = self._commit(repo, f, revision, cached=complete)
        if complete:
            path = self._link(repo, commit, f.path, blob, revision)
            self.on_progress(Progress("reused", f.path, f.size, f.size, "already in the Hugging Face cache"))
            return Fetched(f, path, 0, reused=True)
        if self.hub.offline:
            raise HubError(f"{f.path} is not in the cache and HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE")
        blob.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(blob, f.path):
            downloaded = self._download_verified(repo, f, revision, blob)
        path = self._link(repo, commit, f.path, blob, revision)
        return Fetched(f, path, downloaded, reused=False)

    def cached_path(self, repo: str, path: str) -> Path | None:
        """The snapshot path of a file already in the cache (any commit), or None."""
        snapshots = self._repo_dir(repo) / "snapshots"
        if not snapshots.is_dir():
            return None
        found = [s / path for s in snapshots.iterdir() if (s / path).exists()]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def forget(self, repo: str, files: list[HubFile]) -> int:
        """Remove our copies once Ollama has its own (the disk would hold the model twice): the blobs, their
        snapshot links and verification marks; returns the bytes freed."""
        freed = 0
        snapshots = self._repo_dir(repo) / "snapshots"
        for f in files:
            blob = self._blob(repo, f)
            if blob.exists():
                freed += blob.stat().st_size
                blob.unlink()
            for link in snapshots.glob(f"*/{f.path}") if snapshots.is_dir() else ():
                if link.is_symlink() or link.exists():
                    link.unlink()
            marker = self._marker(blob)
            if marker is not None:
                marker.unlink(missing_ok=True)
        return freed

    # ----- verification of what is already in the cache -----
    def _marker(self, blob: Path) -> Path | None:
        return self.state_dir / "verified" / blob.name if self.state_dir else None

    def _mark_verified(self, blob: Path) -> None:
        marker = self._marker(blob)
        if marker is not None:
            st = blob.stat()
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{st.st_size} {st.st_mtime_ns}")

    def _trusted(self, blob: Path, f: HubFile) -> bool:
        """A cached blob counts only once its sha256 was checked (huggingface_hub never checks it). Checked
        once, then remembered by size and mtime; a blob that fails is removed so it is downloaded again."""
        marker = self._marker(blob)
        st = blob.stat()
        if marker is not None and marker.exists() and marker.read_text() == f"{st.st_size} {st.st_mtime_ns}":
            return True
        self.on_progress(Progress("verify", f.path, 0, f.size, "checking the cached copy"))
        hasher = _Hasher()
        hasher.update_from_file(blob, st.st_size)
        if hasher.hexdigest() == f.sha256:
            self._mark_verified(blob)
            return True
        self.on_progress(Progress("retry", f.path, 0, f.size, "the cached copy is corrupt: downloading again"))
        blob.unlink()
        return False

    # ----- cache layout (hf-hub.md section 1.5) -----
    def _repo_dir(self, repo: str) -> Path:
        return self.cache_dir / ("models--" + repo.replace("/", "--"))

    def _blob(self, repo: str, f: HubFile) -> Path:
        return self._repo_dir(repo) / "blobs" / str(f.sha256)

    def partial(self, repo: str, f: HubFile) -> Path:
        return self._blob(repo, f).with_name(f"{f.sha256}{PARTIAL}")

    def _present(self, repo: str, f: HubFile) -> int:
        blob = self._blob(repo, f)
        if blob.exists():
            return blob.stat().st_size
        part = self.partial(repo, f)
        return part.stat().st_size if part.exists() else 0

    def _commit(self, repo: str, f: HubFile, revision: str, cached: bool) -> str:
        """The commit the snapshot folder is named after: the Hub's X-Repo-Commit for this file (a HEAD through
        huggingface_hub), or refs/<revision> when offline with the file cached."""
        if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
            return revision
        ref = self._repo_dir(repo) / "refs" / revision
        if self.hub.offline:
            if cached and ref.exists():
                return ref.read_text().strip()
            raise HubError(f"{f.path} is not in the cache and HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE")
        from huggingface_hub import get_hf_file_metadata

        try:
            meta = get_hf_file_metadata(
                self.hub.url(repo, f.path, revision),
                token=self.hub.token or False,
                timeout=self.hub.timeout,
                endpoint=self.hub.endpoint,
            )
        except Exception as exc:
            raise hub_error(exc, repo, f.path) from exc
        if meta.etag and meta.etag != f.sha256:
            raise HubError(f"{f.path} changed on the Hub while listing it", hint="run the command again")
        return meta.commit_hash or revision

    def _link(self, repo: str, commit: str, path: str, blob: Path, revision: str) -> Path:
        snapshot = self._repo_dir(repo) / "snapshots" / commit / path
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
        ref = self._repo_dir(repo) / "refs" / revision
        if revision != commit:
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        return snapshot

    @contextlib.contextmanager
    def _lock(self, blob: Path, name: str) -> Iterator[None]:
        lock_path = blob.with_name(blob.name + ".ollama-fit.lock")
        with lock_path.open("a") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:  # Windows: no advisory lock; the partial file is still safe to resume
                pass
            except OSError:
                raise Busy(f"another ollama-fit is downloading {name}", hint="wait for it to finish") from None
            yield

    # ----- the download -----
    def _download_verified(self, repo: str, f: HubFile, revision: str, blob: Path) -> int:
        """Download (resuming), verify; on a sha256 mismatch start over once, then fail leaving nothing."""
        total = 0
        for attempt in (1, 2):
            got, digest = self._download(repo, f, revision)
            total += got
            part = self.partial(repo, f)
            self.on_progress(Progress("verify", f.path, f.size, f.size))
            if digest == f.sha256:
                os.replace(part, blob)  # atomic: the blob appears complete and verified, or not at all
                self._mark_verified(blob)
                self.on_progress(Progress("done", f.path, f.size, f.size))
                return total
            part.unlink(missing_ok=True)  # bad bytes never stay
            if attempt == 1:
                self.on_progress(Progress("retry", f.path, 0, f.size, "sha256 mismatch: downloading again"))
        raise BadModelFile(
            f"{f.path} failed its sha256 check twice (expected {f.sha256[:12] if f.sha256 else '?'}...)",
            hint="the download was corrupted on the way; try again later or from another network",
        )

    def _download(self, repo: str, f: HubFile, revision: str) -> tuple[int, str]:
        """Bring the partial file to full size; returns bytes received and the sha256 of the whole file."""
        part = self.partial(repo, f)
        hasher = _Hasher()
        with part.open("ab") as out:
            out.seek(0, os.SEEK_END)
            have = out.tell()
            if have > f.size:  # longer than the file can be: not ours to trust
                out.truncate(0)
                have = 0
            hasher.update_from_file(part, have)  # resume: the bytes already here are hashed once
            self.on_progress(Progress("start", f.path, have, f.size))
            received = self._stream(repo, f, revision, out, hasher, have)
        return received, hasher.hexdigest()

    def _stream(self, repo: str, f: HubFile, revision: str, out: IO[bytes], hasher: _Hasher, have: int) -> int:
        received = 0
        failures = 0
        while have < f.size:
            try:
                got = self._get(repo, f, revision, out, hasher, have)
                received += got
                have += got
                if got == 0:
                    raise _Retry("the server sent no bytes", None)
                failures = 0  # progress was made: only consecutive failures count
            except _Restart:
                out.truncate(0)
                out.seek(0)
                hasher.reset()
                have = 0
            except _Retry as retry:
                failures += 1
                if failures >= self.retries:
                    raise HubError(
                        f"download of {f.path} kept failing ({retry.reason})",
                        hint="run the same command again: it resumes where it stopped",
                    ) from None
                wait = retry.wait if retry.wait is not None else min(MAX_WAIT, 2.0 ** (failures - 1))
                self.on_progress(Progress("retry", f.path, have, f.size, f"{retry.reason}; retrying in {wait:.0f}s"))
                self.sleep(wait)
        return received

    def _get(self, repo: str, f: HubFile, revision: str, out: IO[bytes], hasher: _Hasher, have: int) -> int:
        from huggingface_hub.utils import get_session, hf_raise_for_status

        headers = self.hub.headers() | {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        received = 0
        try:
            with get_session().stream(
                "GET",
                self.hub.url(repo, f.path, revision),
                headers=headers,
                follow_redirects=True,
                timeout=self.hub.timeout,
            ) as response:
                if response.status_code in RETRY_STATUS:
                    raise _Retry(f"HTTP {response.status_code}", _retry_after(response.headers.get("retry-after")))
                hf_raise_for_status(response)
                if have and (response.status_code == 200 or _range_start(response) != have):
                    raise _Restart()  # Range ignored or answered from elsewhere: start over, never append wrong bytes
                last = time.monotonic()
                for chunk in response.iter_bytes(CHUNK):
                    room = f.size - (have + received)
                    chunk = chunk[:room]  # never write past the published size
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    if time.monotonic() - last > 0.2:
                        last = time.monotonic()
                        self.on_progress(Progress("progress", f.path, have + received, f.size))
                    if have + received >= f.size:
                        break
        except (_Retry, _Restart):
            out.flush()
            raise
        except HubError:
            raise
        except Exception as exc:
            out.flush()
            if not _is_network(exc):
                raise hub_error(exc, repo, f.path) from exc
            if received:
                return received  # keep what arrived: the loop resumes from there with a Range request
            raise _Retry(type(exc).__name__, None) from exc
        out.flush()
        return received


def existing_parent(path: Path) -> Path:
    """The path itself, or its nearest ancestor that exists (free space is asked of a real folder)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _Restart(Exception):
    pass


def _range_start(response: Any) -> int | None:
    """Where a 206 body starts, from `Content-Range: bytes START-END/TOTAL`."""
    value = response.headers.get("content-range", "")
    head = value.removeprefix("bytes ").split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _retry_after(value: str | None) -> float | None:
    try:
        return min(MAX_WAIT, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def _is_network(exc: BaseException) -> bool:
    from huggingface_hub.utils import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


class _Hasher:
    """sha256 in a worker thread (hashlib releases the GIL), so hashing overlaps the network and the disk.
    The queue is bounded: memory stays at a few chunks whatever the file size."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread: threading.Thread | None = None
        self._hash = hashlib.sha256()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def update_from_file(self, path: Path, length: int) -> None:
        with path.open("rb") as f:
            left = length
            while left > 0:
                block = f.read(min(8 * MiB, left))
                if not block:
                    break
                self.update(block)
                left -= len(block)

    def reset(self) -> None:
        self._finish()
        self._hash = hashlib.sha256()

    def _finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self._finish()
        return self._hash.hexdigest()
