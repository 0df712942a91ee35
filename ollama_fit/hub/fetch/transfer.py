"""Several HTTP range requests at once, each written in place into the preallocated partial file.

Workers take the missing parts in file order and GET each with `Range: bytes=a-b`, writing every chunk at its
offset (os.pwrite) and recording it (ranges.py). The first request goes alone: if the server answers a Range
with 200 (it does not honour Range), that answer is used as the one stream of the whole file and no other
connection is opened. At most `connections` requests are in flight, and a HostGate lowers that when the host
says it is overloaded. A part that fails is retried on its own; bytes that arrived are kept.

Memory: each connection holds at most one CHUNK of body (plus the HTTP client's read buffer), so about
2 x CHUNK x connections, whatever the file size.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ollama_fit.errors import HubError
from ollama_fit.hub.backoff import RETRY_STATUS, SLOW_DOWN, is_network, retry_after, wait_for
from ollama_fit.hub.fetch.ranges import CHUNK, RangeState

Opener = Callable[[dict[str, str]], contextlib.AbstractContextManager[Any]]


class HostGate:
    """How many requests may be in flight to one host. A 429 or 503 halves that and pauses new requests for the
    wait (one pause at a time, shared by all workers); every few parts finished without trouble give one
    connection back, up to the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.allowed = limit
        self.in_flight = 0
        self.peak = 0
        self._cond = threading.Condition()
        self._pause = threading.Lock()
        self._calm = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._pause:  # wait out a back-off another worker is sleeping
            pass
        with self._cond:
            while self.in_flight >= self.allowed:
                self._cond.wait(0.5)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def slow_down(self, wait: float, sleep: Callable[[float], None]) -> None:
        if not self._pause.acquire(blocking=False):
            with self._pause:  # another worker is already waiting this out for everyone
                return
        try:
            with self._cond:
                self.allowed = max(1, self.allowed // 2)
                self._calm = 0
            sleep(wait)
        finally:
            self._pause.release()

    def went_well(self) -> None:
        with self._cond:
            self._calm += 1
            if self.allowed < self.limit and self._calm >= 2 * self.allowed:
                self.allowed += 1
                self._calm = 0
                self._cond.notify_all()


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None, slow: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.slow = slow


@dataclass
class Transfer:
    """One run over the missing parts of one file. `run` returns the bytes received; retry messages are handed
    to `tick` on the calling thread, so listeners never see other threads."""

    name: str  # the file, for messages
    state: RangeState
    fd: int
    open_stream: Opener  # headers -> a streaming GET of the file (redirects followed)
    gate: HostGate
    connections: int
    sleep: Callable[[float], None]
    retries: int
    received: int = 0
    _spans: deque[tuple[int, int]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _probed: threading.Event = field(default_factory=threading.Event)
    _messages: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    _threads: list[threading.Thread] = field(default_factory=list)
    _alive: int = 0
    _finished: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _ranged: bool = False  # a 206 came back: the server honours Range
    _single: bool = False  # it does not: one stream of the whole file

    def run(self, tick: Callable[[list[str]], None]) -> int:
        self._spans = deque(self.state.pending(merge=self.connections <= 1))
        self._alive = n = min(self.connections, len(self._spans))
        if n == 0:
            return 0
        self._threads = [threading.Thread(target=self._worker, args=(i == 0,), daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()
        try:
            while not self._finished.wait(0.2):
                tick(self._drain())
        except BaseException:
            self.stop()
            raise
        tick(self._drain())
        if self._error is not None:
            raise self._error
        return self.received

    def stop(self) -> None:
        """Ask every worker to stop after its current chunk, and wait a little for them."""
        self._stop.set()
        self._probed.set()
        deadline = time.monotonic() + 2
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def quiet(self) -> bool:
        """No worker can write any more (the file may be closed)."""
        return not any(t.is_alive() for t in self._threads)

    # ----- workers -----
    def _drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self._messages.get_nowait())
            except queue.Empty:
                return out

    def _worker(self, first: bool) -> None:
        try:
            if not first:
                self._probed.wait()  # the first answer says whether the server honours Range
            while not self._stop.is_set() and not (self._single and not first):
                with self._lock:
                    if not self._spans:
                        return
                    a, b = self._spans.popleft()
                self._span(a, b)
        except BaseException as exc:
            with self._lock:
                self._error = self._error or exc
            self._stop.set()
        finally:
            if first:
                self._probed.set()
            with self._lock:
                self._alive -= 1
                if self._alive == 0:
                    self._finished.set()

    def _span(self, a: int, b: int) -> None:
        """Fetch [a, b), retrying on its own; consecutive failures without a byte count towards giving up."""
        failures = 0
        while a < b and not self._stop.is_set():
            before = a
            try:
                with self.gate.slot():
                    a, b = self._get(a, b)
                if self._stop.is_set():
                    return
                if a == before and a < b:
                    raise _Retry("the server sent no bytes")
                failures = 0  # bytes arrived: resume right away from where they stop
            except _Retry as retry:
                failures += 1
                if failures >= self.retries:
                    raise HubError(
                        f"download of {self.name} kept failing ({retry.reason})",
                        hint="run the same command again: it resumes where it stopped",
                    ) from None
                wait = wait_for(failures, retry.wait)
                self._messages.put(f"{retry.reason}; retrying in {wait:.0f}s")
                if retry.slow:
                    self.gate.slow_down(wait, self.sleep)
                else:
                    self.sleep(wait)
        if failures == 0:
            self.gate.went_well()

    def _get(self, a: int, b: int) -> tuple[int, int]:
        """One GET of [a, b); returns where the bytes written stop and the span's end (the whole file when the
        server turned out not to honour Range). Raises _Retry when nothing useful came back."""
        whole = a == 0 and b == self.state.size
        headers = {} if whole else {"Range": f"bytes={a}-" if b == self.state.size else f"bytes={a}-{b - 1}"}
        pos = recorded = a
        if self._stop.is_set():  # stopped while waiting for a connection: no new request
            return a, b
        try:
            with self.open_stream(headers) as response:
                status = response.status_code
                if status in RETRY_STATUS:
                    hinted = retry_after(response.headers.get("retry-after"))
                    raise _Retry(f"HTTP {status}", hinted, slow=status in SLOW_DOWN)
                from huggingface_hub.utils import hf_raise_for_status

                hf_raise_for_status(response)
                if status == 206:
                    if _range_start(response) != a:
                        raise _Retry("the server answered from the wrong offset")
                    self._ranged = True
                elif headers:  # 200 to a Range request
                    if self._ranged:  # it did honour Range before: a broken answer, not a server without Range
                        raise _Retry("the server ignored Range")
                    self._single = True  # one stream of the whole file, from its first byte
                    with self._lock:
                        self._spans.clear()
                    if self.state.received():
                        self.state.reset()
                    pos = recorded = 0
                    b = self.state.size
                self._probed.set()
                # the pieces as they come off the socket (no re-chunking copy); recorded every CHUNK
                for piece in response.iter_bytes():
                    if self._stop.is_set() or pos >= b:
                        break
                    view = memoryview(piece)[: b - pos]  # never past the span (nor the published size)
                    _pwrite_all(self.fd, view, pos)
                    pos += len(view)
                    if pos - recorded >= CHUNK:
                        recorded = self._record(recorded, pos)
        except _Retry:
            raise
        except Exception as exc:
            if not is_network(exc):
                raise
            if pos == a:
                raise _Retry(type(exc).__name__) from exc
        finally:
            if pos > recorded:
                self._record(recorded, pos)  # written, so true: kept for the retry or the next run
        return pos, b

    def _record(self, start: int, end: int) -> int:
        self.state.record(start, end - start)
        with self._lock:
            self.received += end - start
        return end


_SEEK = threading.Lock()  # where os.pwrite is missing (Windows), a seek and a write must not interleave


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, data, offset)
        else:
            with _SEEK:
                os.lseek(fd, offset, os.SEEK_SET)
                n = os.write(fd, data)
        data, offset = data[n:], offset + n


def _range_start(response: Any) -> int | None:
    """Where a 206 body starts, from `Content-Range: bytes START-END/TOTAL`."""
    value = response.headers.get("content-range", "")
    head = value.removeprefix("bytes ").split("-", 1)[0]
    return int(head) if head.isdigit() else None
