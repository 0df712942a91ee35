"""The fetcher: what is reused, what is downloaded, the check before the rename, and the lock around it all.

Files land where `hf_hub_download` puts them (layout.py), so either tool reuses the other's downloads. Unlike
huggingface_hub (which since 1.18 restarts from zero and never checks sha256), bytes go to
`blobs/<sha256>.ollama-fit.partial`, over several ranged connections at once (transfer.py), resume from the
recorded ranges (ranges.py), are hashed in file order as the contiguous prefix grows (hashing.py), and are
renamed to the blob only when their sha256 matches what the Hub publishes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_fit import config
from ollama_fit.errors import BadModelFile, DiskSpaceError, HubError
from ollama_fit.hub.backoff import RETRIES
from ollama_fit.hub.fetch.hashing import PrefixHasher, hash_file
from ollama_fit.hub.fetch.layout import (
    LOCK,
    PARTIAL,
    RANGES,
    existing_parent,
    link,
    prune_repo,
    repo_folder,
    sidecar_of,
    unlink_snapshots,
)
from ollama_fit.hub.fetch.lock import file_lock
from ollama_fit.hub.fetch.ranges import MIN_PART, RangeState, done_bytes, part_size
from ollama_fit.hub.fetch.transfer import HostGate, Transfer
from ollama_fit.hub.repos import Hub, HubFile, hub_error
from ollama_fit.units import MiB, human

CONNECTIONS = config.DOWNLOAD_CONNECTIONS
DISK_MARGIN = 64 * MiB  # keep this much free beyond the files themselves


@dataclass(frozen=True)
class Progress:
    """One progress event; the CLI (cli/progress.py) renders it as a bar (TTY) or a JSON line."""

    kind: str  # start, progress, retry, verify, done, reused, wait, cleanup
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
    stale_freed: int = 0  # disk freed by removing partial downloads of an older version of this file


@dataclass
class Fetcher:
    """Downloads files of one Hub into one cache folder. `sleep` is injectable for tests; `connections` is the
    most requests in flight per file (1: one stream); files under two parts of `min_part` use one stream."""

    hub: Hub
    cache_dir: Path
    state_dir: Path | None = None  # where "this blob was verified" markers live (None: verify on every reuse)
    on_progress: Listener = field(default=lambda p: None)
    sleep: Callable[[float], None] = time.sleep
    retries: int = RETRIES
    connections: int = CONNECTIONS
    min_part: int = MIN_PART
    _held: set[Path] = field(default_factory=set, init=False, repr=False)
    gates: dict[str, HostGate] = field(default_factory=dict, init=False, repr=False)  # per host

    # ----- public -----
    def fetch_all(self, repo: str, files: list[HubFile], revision: str = "main") -> list[Fetched]:
        self.preflight(repo, files)
        return [self.fetch(repo, f, revision) for f in files]

    def missing_bytes(self, repo: str, files: list[HubFile]) -> int:
        """What is still to download (bytes already in partial files count as there)."""
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

    @contextlib.contextmanager
    def hold(self, repo: str, files: list[HubFile]) -> Iterator[None]:
        """Hold these files against every other ollama-fit (waiting for one that has them) until the block
        ends: `pull` holds them across download, verification, upload to Ollama and cleanup, so a second pull
        of the same file waits and then finds the work done. Re-entrant within this fetcher."""
        locks = {self._lock_path(repo, str(f.sha256)): f for f in files if f.sha256}
        with contextlib.ExitStack() as stack:
            for path in sorted(set(locks) - self._held):  # always in the same order: no deadlock
                f = locks[path]
                waiting = Progress("wait", f.path, 0, f.size, f"another ollama-fit is on {f.path}: waiting for it")
                stack.enter_context(file_lock(path, on_wait=functools.partial(self.on_progress, waiting)))
                self._held.add(path)
                stack.callback(self._held.discard, path)
            yield

    def fetch(self, repo: str, f: HubFile, revision: str = "main") -> Fetched:
        if not f.sha256:
            raise BadModelFile(f"{f.path} has no published sha256", hint="only LFS files (GGUF models) are fetched")
        with self.hold(repo, [f]):
            blob = self._blob(repo, f)
            freed = self._clean_stale(repo, f)
            whole = blob.exists() and blob.stat().st_size == f.size
            complete = whole and self._trusted(blob, f)
            if not complete and self.hub.offline:
                why = "its cached copy was corrupt (sha256 mismatch)" if whole else "it is not in the cache"
                raise HubError(f"{f.path}: {why} and HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE")
            commit = self._commit(repo, f, revision, cached=complete)
            if complete:
                path = link(self._repo_dir(repo), commit, f.path, blob, revision)
                self.on_progress(Progress("reused", f.path, f.size, f.size, "already in the Hugging Face cache"))
                return Fetched(f, path, 0, reused=True, stale_freed=freed)
            blob.parent.mkdir(parents=True, exist_ok=True)
            downloaded = self._download_verified(repo, f, revision, blob)
            path = link(self._repo_dir(repo), commit, f.path, blob, revision)
            return Fetched(f, path, downloaded, reused=False, stale_freed=freed)

    def cached_path(self, repo: str, f: HubFile) -> Path | None:
        """The snapshot path of this very file (its blob is the listed sha256) already in the cache, or None:
        another snapshot's file of the same name is another upload."""
        snapshots = self._repo_dir(repo) / "snapshots"
        if not snapshots.is_dir():
            return None
        found = [
            s / f.path
            for s in snapshots.iterdir()
            if (s / f.path).exists() and (f.sha256 is None or (s / f.path).resolve().name == f.sha256)
        ]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def forget(self, repo: str, files: list[HubFile]) -> int:
        """Remove our copies once Ollama has its own (the disk would hold the model twice): snapshot links first
        (never a dangling one), then the blobs and their verification marks, then the folders and refs this
        empties, leaving the cache as huggingface_hub's own delete would; returns the bytes freed."""
        freed = 0
        repo_dir = self._repo_dir(repo)
        for f in files:
            blob = self._blob(repo, f)
            unlink_snapshots(repo_dir, f.path, blob)
            if blob.exists():
                freed += blob.stat().st_size
                blob.unlink()
            marker = self._marker(blob)
            if marker is not None:
                marker.unlink(missing_ok=True)
        prune_repo(repo_dir)
        return freed

    def partial(self, repo: str, f: HubFile) -> Path:
        return self._blob(repo, f).with_name(f"{f.sha256}{PARTIAL}")

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
        if hash_file(blob, st.st_size) == f.sha256:
            self._mark_verified(blob)
            return True
        then = "" if self.hub.offline else ": downloading again"
        self.on_progress(Progress("retry", f.path, 0, f.size, f"the cached copy is corrupt (sha256 mismatch){then}"))
        blob.unlink()
        return False

    # ----- cache layout -----
    def _repo_dir(self, repo: str) -> Path:
        return self.cache_dir / repo_folder(repo)

    def _blob(self, repo: str, f: HubFile) -> Path:
        return self._repo_dir(repo) / "blobs" / str(f.sha256)

    def _lock_path(self, repo: str, sha256: str) -> Path:
        return self.cache_dir / ".locks" / repo_folder(repo) / f"{sha256}{LOCK}"

    def _present(self, repo: str, f: HubFile) -> int:
        blob = self._blob(repo, f)
        if blob.exists():
            return blob.stat().st_size
        return min(f.size, done_bytes(self.partial(repo, f)))

    def _clean_stale(self, repo: str, f: HubFile) -> int:
        """Partial downloads of an older version of this file (its content changed on the Hub, so they can
        never be resumed) are removed, unless another ollama-fit is still on them; returns the disk freed."""
        blobs = self._repo_dir(repo) / "blobs"
        freed = 0
        for sidecar in blobs.glob(f"*{RANGES}") if blobs.is_dir() else ():
            sha = sidecar.name.removesuffix(RANGES)
            if sha == f.sha256 or RangeState.read_file(sidecar) != f.path:
                continue
            partial = blobs / f"{sha}{PARTIAL}"
            with contextlib.suppress(_InUse), file_lock(self._lock_path(repo, sha), _in_use):
                if partial.exists():
                    freed += _on_disk(partial)
                    partial.unlink()
                sidecar.unlink(missing_ok=True)
        if freed:
            message = f"removed a partial download of an older version of this file ({human(freed)} freed)"
            self.on_progress(Progress("cleanup", f.path, 0, f.size, message))
        return freed

    def _commit(self, repo: str, f: HubFile, revision: str, cached: bool) -> str:
        """The commit the snapshot folder is named after: the Hub's X-Repo-Commit for this file (a HEAD,
        retried like every Hub request), or refs/<revision> when offline with the file cached."""
        if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
            return revision
        ref = self._repo_dir(repo) / "refs" / revision
        if self.hub.offline:
            if cached and ref.exists():
                return ref.read_text().strip()
            raise HubError(f"{f.path} is not in the cache and HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE")
        etag, commit = self.hub.file_metadata(repo, f.path, revision)
        if etag and etag != f.sha256:
            raise HubError(f"{f.path} changed on the Hub while listing it", hint="run the command again")
        return commit or revision

    # ----- the download -----
    def _download_verified(self, repo: str, f: HubFile, revision: str, blob: Path) -> int:
        """Download (resuming), verify; on a sha256 mismatch start over once, then fail leaving nothing.
        A wrong byte cannot be traced to one range (the Hub publishes one sha256 per file), so the whole file
        is downloaded again, in place: never a second copy on disk."""
        total = 0
        part = self.partial(repo, f)
        for attempt in (1, 2):
            state = self._state(f, part)
            try:
                got, digest = self._download(repo, f, revision, part, state)
            finally:
                state.close()
            total += got
            self.on_progress(Progress("verify", f.path, f.size, f.size))
            if digest == f.sha256:
                os.replace(part, blob)  # atomic: the blob appears complete and verified, or not at all
                sidecar_of(part).unlink(missing_ok=True)
                self._mark_verified(blob)
                self.on_progress(Progress("done", f.path, f.size, f.size))
                return total
            part.unlink(missing_ok=True)  # bad bytes never stay
            sidecar_of(part).unlink(missing_ok=True)
            if attempt == 1:
                self.on_progress(Progress("retry", f.path, 0, f.size, "sha256 mismatch: downloading again"))
        raise BadModelFile(
            f"{f.path} failed its sha256 check twice (expected {f.sha256[:12] if f.sha256 else '?'}...)",
            hint="the download was corrupted on the way; try again later or from another network",
        )

    def _state(self, f: HubFile, part: Path) -> RangeState:
        """The recorded progress of this partial, or a fresh grid. A partial without a sidecar (written before
        range downloads) is a prefix of the file: it is resumed as one."""
        sha = str(f.sha256)
        sidecar = sidecar_of(part)
        size = part.stat().st_size if part.exists() else None
        state = RangeState.load(sidecar, sha, f.size) if size == f.size else None
        if state is not None:
            return state
        state = RangeState.fresh(sidecar, f.path, sha, f.size, part_size(f.size, self.connections, self.min_part))
        legacy = size if size is not None and not sidecar.exists() and size <= f.size else 0
        if legacy:
            state.record(0, legacy)
        else:
            part.unlink(missing_ok=True)  # nothing recorded about these bytes: not ours to trust
            state.save()  # before the partial exists: it never claims bytes that are not there
        return state

    def _download(self, repo: str, f: HubFile, revision: str, part: Path, state: RangeState) -> tuple[int, str]:
        """Bring every range of the partial to its end; returns bytes received and the whole file's sha256."""
        fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        transfer = None
        try:
            os.ftruncate(fd, f.size)  # preallocated (sparse): each range is written in place
            hasher = PrefixHasher(state, part).start()
            self.on_progress(Progress("start", f.path, state.received(), f.size))
            transfer = Transfer(
                f.path,
                state,
                fd,
                self._opener(repo, f, revision),
                self._gate(),
                self.connections,
                self.sleep,
                self.retries,
            )

            def tick(messages: list[str]) -> None:
                for message in messages:
                    self.on_progress(Progress("retry", f.path, state.received(), f.size, message))
                self.on_progress(Progress("progress", f.path, state.received(), f.size))

            try:
                received = transfer.run(tick)
                if not state.complete():  # never wait on the hasher for bytes that will not come
                    raise HubError(
                        f"the download of {f.path} stopped short", hint="run the same command again: it resumes"
                    )
            except BaseException:
                hasher.stop()
                raise
            return received, hasher.digest()
        except HubError:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskSpaceError(
                    f"the disk filled up while downloading {f.path}", hint="free some space and run it again"
                ) from exc
            raise hub_error(exc, repo, f.path) from exc
        except Exception as exc:
            raise hub_error(exc, repo, f.path) from exc
        finally:
            if transfer is None or transfer.quiet():
                os.close(fd)  # else a worker may still write: the descriptor stays open until we exit

    def _opener(self, repo: str, f: HubFile, revision: str) -> Callable[[dict[str, str]], Any]:
        from huggingface_hub.utils import get_session

        url = self.hub.url(repo, f.path, revision)

        def open_stream(extra: dict[str, str]) -> Any:
            headers = self.hub.headers() | {"Accept-Encoding": "identity"} | extra
            return get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=self.hub.timeout)

        return open_stream

    def _gate(self) -> HostGate:
        """One gate per host, shared by every file this fetcher downloads from it."""
        from urllib.parse import urlsplit

        host = urlsplit(self.hub.endpoint).netloc
        return self.gates.setdefault(host, HostGate(max(1, self.connections)))


def _on_disk(path: Path) -> int:
    """Bytes a (possibly sparse) file really takes on disk."""
    st = path.stat()
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


class _InUse(Exception):
    pass


def _in_use() -> None:
    raise _InUse
