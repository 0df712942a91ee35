"""sha256 of a file whose ranges arrive out of order.

sha256 must see the bytes in file order, and ranges finish in any order. The hasher is a thread that follows
the contiguous prefix on disk (`RangeState.frontier`): whenever the prefix grows it reads the new bytes back
from the partial file (still in the page cache: a memory copy, no disk read in practice) and hashes them.
Parts are handed out in file order and are small (ranges.py), so the prefix stays a few parts behind the
download and hashing overlaps it; when the last byte lands, at most about `connections` parts are left to
hash. Cost: one extra read of the file, the same sha256 work as a single stream, and one HASH_BLOCK of memory.
On resume the bytes already on disk are hashed once, as before.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from ollama_fit.hub.fetch.ranges import RangeState
from ollama_fit.units import MiB

HASH_BLOCK = 4 * MiB


def hash_file(path: Path, length: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        left = length
        while left > 0 and (block := f.read(min(HASH_BLOCK, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


class PrefixHasher:
    """Hashes `partial` in order as `state`'s contiguous prefix grows; starts over when the state is reset."""

    def __init__(self, state: RangeState, partial: Path) -> None:
        self.state = state
        self.partial = partial
        self.error: BaseException | None = None
        self._hash = hashlib.sha256()
        self._pos = 0
        self._generation = state.generation
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)

    def start(self) -> PrefixHasher:
        self._thread.start()
        return self

    def digest(self) -> str:
        """The sha256 of the whole file, once every byte is on disk."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self._hash.hexdigest()

    def stop(self) -> None:
        with self.state.changed:
            self._stop = True
            self.state.changed.notify_all()
        self._thread.join(timeout=5)

    def _next(self) -> int | None:
        """Wait until there is more to hash; the new end of the prefix, or None to stop."""
        state = self.state
        with state.changed:
            while True:
                if self._stop:
                    return None
                if state.generation != self._generation:  # everything was thrown away: start over
                    self._generation = state.generation
                    self._hash = hashlib.sha256()
                    self._pos = 0
                if self._pos >= state.size:
                    return None
                upto = state.frontier()
                if upto > self._pos:
                    return upto
                state.changed.wait(0.5)

    def _run(self) -> None:
        try:
            fd = os.open(self.partial, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as exc:
            self.error = exc
            return
        try:
            while (upto := self._next()) is not None:
                generation = self._generation
                while self._pos < upto and generation == self.state.generation:
                    block = _pread(fd, min(HASH_BLOCK, upto - self._pos), self._pos)
                    if not block:
                        raise OSError(f"{self.partial} is shorter than its recorded progress")
                    self._hash.update(block)
                    self._pos += len(block)
        except BaseException as exc:  # surfaced by digest()
            self.error = exc
        finally:
            os.close(fd)


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: this descriptor is the hasher's own
    return os.read(fd, n)
