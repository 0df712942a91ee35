"""Which bytes of a partial download are on disk: a grid of parts and the bytes done in each, kept in a small
sidecar file beside the partial (`<sha256>.ollama-fit.ranges`, JSON, rewritten atomically).

The sidecar is written after the bytes it counts, so it never claims bytes that are not in the partial file
(after kill -9 the page cache still holds them; a power cut that loses them is caught by the sha256 check).
Each range records after every chunk it writes, so a resume re-sends less than one chunk per connection.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ollama_fit.units import MiB

CHUNK = 1 * MiB  # what one connection reads, writes and records at a time
MIN_PART = 8 * MiB  # files under two parts use one stream
MAX_PART = 64 * MiB
PARTS_PER_CONNECTION = 4  # small parts keep the contiguous prefix (and the hash) close behind the download


def part_size(size: int, connections: int, min_part: int = MIN_PART) -> int:
    """The grid: one part (a single stream) for one connection or a small file, else parts of
    size / (4 x connections), rounded up to whole chunks, between min_part and MAX_PART."""
    if connections <= 1 or size < 2 * min_part:
        return max(size, 1)
    wanted = -(-size // (connections * PARTS_PER_CONNECTION))
    wanted = -(-wanted // CHUNK) * CHUNK
    return max(min_part, min(MAX_PART, wanted))


@dataclass
class RangeState:
    """Bytes done per part. Thread-safe: workers call `record`, the hasher waits on `changed`."""

    sidecar: Path
    file: str  # the file's path in the repository (to recognise a partial whose content changed on the Hub)
    sha256: str
    size: int
    part: int
    done: list[int]
    generation: int = 0  # bumped when everything is thrown away (the hasher starts over)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    changed: threading.Condition = field(init=False, repr=False)
    _first_open: int = 0  # parts before this one are complete

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    @classmethod
    def fresh(cls, sidecar: Path, file: str, sha256: str, size: int, part: int) -> RangeState:
        return cls(sidecar, file, sha256, size, part, [0] * max(1, -(-size // part)))

    @classmethod
    def load(cls, sidecar: Path, sha256: str, size: int) -> RangeState | None:
        """The recorded state, or None when there is none or it does not describe this file."""
        try:
            doc = json.loads(sidecar.read_text())
            state = cls(sidecar, str(doc["file"]), str(doc["sha256"]), int(doc["size"]), int(doc["part"]), [])
            state.done = [int(d) for d in doc["done"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if state.sha256 != sha256 or state.size != size or state.part <= 0:
            return None
        if len(state.done) != max(1, -(-size // state.part)):
            return None
        if any(not 0 <= d <= state.length(i) for i, d in enumerate(state.done)):
            return None
        return state

    @staticmethod
    def read_file(sidecar: Path) -> str | None:
        """The repository path a sidecar belongs to (None when unreadable)."""
        try:
            return str(json.loads(sidecar.read_text())["file"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # ----- the grid -----
    @property
    def parts(self) -> int:
        return len(self.done)

    def start(self, i: int) -> int:
        return i * self.part

    def length(self, i: int) -> int:
        return min(self.part, self.size - i * self.part)

    def received(self) -> int:
        return sum(self.done)

    def complete(self) -> bool:
        return self.frontier() >= self.size

    def frontier(self) -> int:
        """The end of the contiguous prefix on disk (what the hasher may read)."""
        while self._first_open < self.parts and self.done[self._first_open] >= self.length(self._first_open):
            self._first_open += 1
        if self._first_open >= self.parts:
            return self.size
        return self.start(self._first_open) + self.done[self._first_open]

    def pending(self, merge: bool) -> list[tuple[int, int]]:
        """What is still missing as [start, end) spans in file order: one per part, or merged where adjacent
        (one stream resumes a grid left by several)."""
        spans: list[tuple[int, int]] = []
        for i, d in enumerate(self.done):
            if d < self.length(i):
                a, b = self.start(i) + d, self.start(i) + self.length(i)
                if merge and spans and spans[-1][1] == a:
                    spans[-1] = (spans[-1][0], b)
                else:
                    spans.append((a, b))
        return spans

    # ----- updates -----
    def record(self, offset: int, n: int) -> None:
        """n bytes were written at offset (only ever right after what is already done in that part)."""
        with self.lock:
            end = offset + n
            while offset < end:
                i = offset // self.part
                take = min(end, self.start(i) + self.length(i)) - offset
                self.done[i] = max(self.done[i], offset + take - self.start(i))
                offset += take
            self._save()
            self.changed.notify_all()

    def reset(self) -> None:
        """Forget every byte (a server that ignores Range, or a sha256 mismatch): start over in place."""
        with self.lock:
            self.done = [0] * self.parts
            self._first_open = 0
            self.generation += 1
            self._save()
            self.changed.notify_all()

    def save(self) -> None:
        with self.lock:
            self._save()

    def _save(self) -> None:
        doc = {"file": self.file, "sha256": self.sha256, "size": self.size, "part": self.part, "done": self.done}
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, json.dumps(doc, separators=(",", ":")).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.sidecar)  # atomic: the old state or the new one, never half of either


def done_bytes(partial: Path) -> int:
    """Bytes of a partial download already on disk (from its sidecar; the file itself is preallocated)."""
    from ollama_fit.fetch.layout import sidecar_of

    sidecar = sidecar_of(partial)
    if sidecar.exists():
        try:
            return sum(int(d) for d in json.loads(sidecar.read_text())["done"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
    return partial.stat().st_size if partial.exists() else 0  # a partial from before range downloads
