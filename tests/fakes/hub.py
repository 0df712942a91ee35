"""A local fake of the Hugging Face Hub, faithful to ../shared/reference/hf-hub.md.

Two loopback servers: the Hub (API, /resolve/) on 127.0.0.1 and the "CDN" that serves LFS bytes on
`localhost`, a different hostname, as the real Hub redirects to a CDN. The real huggingface_hub client talks
to it through HF_ENDPOINT / `endpoint=`. Faults are injected per file (matched to the request whose range
covers their offset, when they have one) and per route (the API, /resolve/); every byte served is counted.
For the benchmark the CDN can cap each connection's rate, as real CDNs do; `ranges = False` makes it a server
that ignores Range (200 with the whole file, no Accept-Ranges).

As the real Hub: /resolve/ answers 404 RevisionNotFound for a revision that is neither `main` nor the repo's
commit; a gated repo answers 401 GatedRepo without a token (or with one the Hub does not know) and 403 GatedRepo
to a known account that has not accepted the license (`accounts`, `FakeRepo.allowed_tokens`). Range follows
RFC 9110: `bytes=N-`, `bytes=N-M` and the suffix `bytes=-N` (the last N bytes) get 206; a start past the end,
an inverted range, an empty suffix or several ranges get 416 with `Content-Range: bytes */TOTAL`; a header
that is not a byte range is ignored (200). Every answer's status is logged in `answers`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 64 * 1024
WRONG_ANSWER_SNDBUF = 64 * 1024  # the kernel doubles it


@dataclass
class Fault:
    """What goes wrong on the next GETs of one file's bytes (consumed in order), or on the next requests of a
    route. A fault with `at` (or `corrupt_at`) is taken only by a request whose range covers that offset."""

    status: int | None = None  # answer with this status (429, 500, 503, ...)
    at: int | None = None  # only for the request whose range covers this file offset
    retry_after: int | None = None
    drop_after: int | None = None  # close the connection after this many body bytes
    corrupt_at: int | None = None  # flip the byte at this file offset
    short_by: int | None = None  # announce the full length, send this many bytes less
    long_by: int | None = None  # send this many bytes beyond the file's published size
    wrong_range: bool = False  # answer a Range request with 206 but from byte 0 (a broken proxy)
    ignore_range: bool = False  # answer a Range request with 200 and the whole file


@dataclass
class FakeFile:
    path: str
    source: Path  # bytes on disk (may be sparse)
    lfs: bool = True

    @property
    def size(self) -> int:
        return self.source.stat().st_size

    def sha256(self) -> str:
        """Hashed when the file is added (a multi-GB sparse file takes seconds: never while a client waits),
        again only if a test rewrote the file since."""
        st = self.source.stat()
        stamp = (st.st_size, st.st_mtime_ns)
        if getattr(self, "_stamp", None) != stamp:
            h = hashlib.sha256()
            with self.source.open("rb") as f:
                while block := f.read(8 << 20):
                    h.update(block)
            self._sha, self._stamp = h.hexdigest(), stamp
        return self._sha

    def git_sha1(self) -> str:
        data = self.source.read_bytes() if not self.lfs else self.pointer().encode()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def pointer(self) -> str:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256()}\nsize {self.size}\n"


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    gated: bool = False  # needs a token (the accepted license) to read files
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    allowed_tokens: set[str] = field(default_factory=set)  # gated: the accounts that accepted the license

    def add(self, path: str, source: Path, lfs: bool = True) -> FakeFile:
        f = FakeFile(path, source, lfs)
        if lfs:
            f.sha256()  # now, so the file listing answers at once
        self.files[path] = f
        return f


class FakeHub:
    def __init__(self, token: str = "hf_test_token") -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.bytes_served: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.answers: list[tuple[str, str, int]] = []  # (method, path, status) of every answer sent
        self.token = token  # an account with access to every repo, gated ones included
        self.accounts: set[str] = {token}  # tokens the Hub knows (valid accounts), with access or not
        self.delay = 0.0  # seconds slept after each 64 KiB chunk: a slow network, for kill-and-resume tests
        self.rate: float | None = None  # bytes/s per CDN connection (the benchmark's CDN cap)
        self.ranges = True  # False: the CDN ignores Range, like some mirrors and proxies
        self.route_faults: dict[str, list[Fault]] = {}  # "api" (/api/models/...) or "resolve" (HEAD/GET)
        self.in_flight = 0  # CDN bodies being sent now, and the most at once
        self.peak_in_flight = 0
        self.lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # ----- setup -----
    def repo(self, repo_id: str, **kw: Any) -> FakeRepo:
        """The repo, created on first use; a gated one admits `self.token` unless `allowed_tokens` says who."""
        if repo_id not in self.repos:
            kw.setdefault("allowed_tokens", {self.token})
            self.repos[repo_id] = FakeRepo(repo_id, **kw)
            self.accounts |= self.repos[repo_id].allowed_tokens  # whoever accepted a license has an account
        return self.repos[repo_id]

    def fail(self, repo_id: str, path: str, *faults: Fault) -> None:
        self.faults.setdefault(f"{repo_id}/{path}", []).extend(faults)

    def fail_route(self, route: str, *faults: Fault) -> None:
        """Status faults for the next requests of a route: "api" (file listing, model info) or "resolve"."""
        self.route_faults.setdefault(route, []).extend(faults)

    def take(self, key: str, start: int, end: int) -> Fault:
        """The next fault for a GET of bytes [start, end] of a file: the first queued one without an offset,
        or whose offset this range covers."""
        with self.lock:
            queue = self.faults.get(key) or []
            for i, fault in enumerate(queue):
                offset = fault.at if fault.at is not None else fault.corrupt_at
                if offset is None or start <= offset <= end:
                    return queue.pop(i)
        return Fault()

    def route_fault(self, route: str) -> Fault | None:
        with self.lock:
            queue = self.route_faults.get(route) or []
            return queue.pop(0) if queue else None

    def start(self) -> FakeHub:
        hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=False))
        cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=True))
        for server in (hub, cdn):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        self.endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
        self.cdn = f"http://localhost:{cdn.server_address[1]}"  # another hostname, as the real CDN
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until no body is being sent (to a client that is gone, say), so the byte counts are final."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)

    def served(self, repo_id: str, path: str) -> int:
        return self.bytes_served.get(f"{repo_id}/{path}", 0)


def _handler(hub: FakeHub, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def send_response(self, code: int, message: str | None = None) -> None:
            with hub.lock:
                hub.answers.append((self.command, unquote(urlsplit(getattr(self, "path", "")).path), code))
            super().send_response(code, message)

        # ----- helpers -----
        def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def json(self, data: Any, headers: dict[str, str] | None = None) -> None:
            self.send(200, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

        def error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
            h = {"Content-Type": "application/json", "X-Error-Message": message, **(headers or {})}
            if code:
                h["X-Error-Code"] = code
            self.send(status, json.dumps({"error": message}).encode(), h)

        def bearer(self) -> str | None:
            value = self.headers.get("authorization") or ""
            return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None

        def authorized(self) -> bool:
            """A token of an account the Hub knows (which need not have access to a given gated repo)."""
            return self.bearer() in hub.accounts

        def find_repo(self, repo_id: str) -> FakeRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self.error(401 if not self.authorized() else 404, "RepoNotFound", "Repository Not Found")
            return repo

        # ----- routes -----
        def do_HEAD(self) -> None:
            self.route()

        def do_GET(self) -> None:
            self.route()

        def route(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            with hub.lock:
                hub.requests.append((self.command, path, dict(self.headers)))
            if cdn:
                return self.cdn_get(path)
            if path == "/api/agent-harnesses":
                return self.error(404, None, "Not Found")
            m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$", path)
            if m:
                if self.injected("api"):
                    return None
                return self.api(m.group(1), m.group(2), m.group(3), m.group(4) or "", parse_qs(url.query))
            m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", url.path)  # the revision is quoted with safe=""
            if m:
                if self.injected("resolve"):
                    return None
                return self.resolve(unquote(m.group(1)), unquote(m.group(2)), unquote(m.group(3)))
            self.send(404, b"Not Found", {"Content-Type": "text/plain"})

        def injected(self, route: str) -> bool:
            fault = hub.route_fault(route)
            if fault is None or fault.status is None:
                return False
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            self.error(fault.status, None, "injected failure", extra)
            return True

        def api(self, repo_id: str, kind: str | None, rev: str | None, sub: str, query: dict[str, list[str]]) -> None:
            repo = self.find_repo(repo_id)
            if repo is None:
                return
            if rev not in (None, "main", repo.commit):
                return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if kind == "tree":
                return self.json(self.tree(repo, sub, query.get("recursive", ["false"])[0].lower() == "true"))
            siblings = [
                {"rfilename": f.path, "blobId": f.git_sha1(), "size": f.size}
                | ({"lfs": {"sha256": f.sha256(), "size": f.size, "pointerSize": len(f.pointer())}} if f.lfs else {})
                for f in repo.files.values()
            ]
            self.json(
                {
                    "id": repo.repo_id,
                    "sha": repo.commit,
                    "private": False,
                    "gated": "auto" if repo.gated else False,
                    "tags": ["gguf"],
                    "siblings": siblings,
                }
            )

        def tree(self, repo: FakeRepo, sub: str, recursive: bool) -> list[dict[str, Any]]:
            prefix = sub.strip("/") + "/" if sub else ""
            out: list[dict[str, Any]] = []
            folders: set[str] = set()
            for f in repo.files.values():
                if not f.path.startswith(prefix):
                    continue
                rest = f.path[len(prefix) :]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/", 1)[0])
                    continue
                if recursive:
                    parts = rest.split("/")[:-1]
                    folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
                entry = {"type": "file", "path": f.path, "size": f.size, "oid": f.git_sha1()}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256(), "size": f.size, "pointerSize": len(f.pointer())}
                out.append(entry)
            out += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(folders)]
            return out

        def resolve(self, repo_id: str, rev: str, path: str) -> None:
            repo = self.find_repo(repo_id)
            if repo is None:
                return
            if rev not in ("main", repo.commit):
                return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if repo.gated and not self.authorized():
                return self.error(401, "GatedRepo", "Access to this gated repo is restricted; accept the license")
            if repo.gated and self.bearer() not in repo.allowed_tokens:
                message = f"Access to model {repo_id} is restricted and you are not in the authorized list"
                return self.error(403, "GatedRepo", message)
            f = repo.files.get(path)
            commit = {"X-Repo-Commit": repo.commit}
            if f is None:
                return self.error(404, "EntryNotFound", "Entry not found", commit)
            if not f.lfs:
                return self.serve(repo_id, f, {**commit, "ETag": f'"{f.git_sha1()}"'})
            location = f"{hub.cdn}/cdn/{quote(repo_id)}/{quote(path)}"
            self.send(
                302,
                b"",
                {
                    **commit,
                    "Location": location,
                    "X-Linked-Etag": f'"{f.sha256()}"',
                    "X-Linked-Size": str(f.size),
                    "ETag": f'"{f.git_sha1()}"',
                },
            )

        def cdn_get(self, path: str) -> None:
            m = re.match(r"^/cdn/([^/]+/[^/]+)/(.+)$", path)
            repo = hub.repos.get(m.group(1)) if m else None
            f = repo.files.get(m.group(2)) if repo and m else None
            if f is None or repo is None:
                return self.send(404, b"NoSuchKey", {"Content-Type": "text/plain"})
            self.serve(repo.repo_id, f, {"ETag": f'"{f.sha256()}"'})

        def serve(self, repo_id: str, f: FakeFile, headers: dict[str, str]) -> None:
            key = f"{repo_id}/{f.path}"
            size = f.size
            rng = parse_range(self.headers.get("Range"), size) if hub.ranges else None
            if rng == "unsatisfiable":
                return self.send(416, b"", {"Content-Range": f"bytes */{size}"})
            first, last = rng or (0, size - 1)
            fault = hub.take(key, first, last) if self.command == "GET" else Fault()
            if fault.status:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return self.error(fault.status, None, "injected failure", extra)
            start, end = 0, size - 1
            status = 200
            if rng and (fault.ignore_range or fault.wrong_range):
                # a client drops such an answer at its headers: keep what the kernel buffers for it small, so
                # the bytes counted as served are about those it was sent, not a few MiB of socket buffers
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WRONG_ANSWER_SNDBUF)
                rng = None if fault.ignore_range else (0, size - 1)
            if rng:
                start, end = rng
                status = 206
            length = end - start + 1 + (fault.long_by or 0)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if hub.ranges:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            with hub.lock:
                hub.in_flight += 1
                hub.peak_in_flight = max(hub.peak_in_flight, hub.in_flight)
            try:
                self.stream(key, f, start, length, fault)
            finally:
                with hub.lock:
                    hub.in_flight -= 1

        def stream(self, key: str, f: FakeFile, start: int, length: int, fault: Fault) -> None:
            to_send = length - (fault.short_by or 0) - (fault.long_by or 0)
            limit = fault.drop_after if fault.drop_after is not None else to_send
            sent = 0
            began = time.monotonic()
            block_size = 4 * CHUNK if hub.rate else CHUNK
            with f.source.open("rb") as src:
                src.seek(start)
                while sent < min(to_send, limit):
                    block = bytearray(src.read(min(block_size, min(to_send, limit) - sent)))
                    if not block:
                        break
                    if fault.corrupt_at is not None and start + sent <= fault.corrupt_at < start + sent + len(block):
                        block[fault.corrupt_at - start - sent] ^= 0xFF
                    try:
                        self.wfile.write(block)
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += len(block)
                    with hub.lock:
                        hub.bytes_served[key] = hub.bytes_served.get(key, 0) + len(block)
                    if hub.delay:
                        time.sleep(hub.delay)
                    if hub.rate:  # this connection may not get ahead of its cap
                        ahead = sent / hub.rate - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
            if fault.long_by:
                self.wfile.write(b"\0" * fault.long_by)
            if fault.drop_after is not None or fault.short_by or fault.long_by:
                self.close_connection = True
                self.wfile.flush()
                time.sleep(0.01)
                self.connection.close()

    return Handler


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A `Range` header -> (first, last) byte, both inclusive; "unsatisfiable" (answer 416); None (no header or
    not a byte range: the whole file, 200). Only one range is served; a suffix `bytes=-N` is the last N bytes."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    if "," in spec:  # several ranges (a multipart/byteranges answer): not served by this fake
        return "unsatisfiable"
    m = re.fullmatch(r"\s*(\d*)-(\d*)\s*", spec)
    if m is None or not (m.group(1) or m.group(2)):
        return None  # not a byte range
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or (m.group(2) and int(m.group(2)) < first):
        return "unsatisfiable"
    return first, last
