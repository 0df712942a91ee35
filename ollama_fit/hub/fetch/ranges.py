"""Which bytes of a partial download are on disk: a grid of parts and the bytes done in each, kept in a small
sidecar file beside the partial (`<sha256>.ollama-fit.ranges`).

The sidecar is one JSON line (file, sha256, size, part size), created atomically (temporary file + rename),
then one 8-byte little-endian counter per part, each updated in place by a single aligned write: a counter
is the old value or the new one, never half of each, and updating it costs one system call, not a rename.
A counter is written after the bytes it counts, so it never claims bytes that are not in the partial file
(after kill -9 the page cache still holds them; a power cut that loses them is caught by the sha256 check).
Each range records after every chunk it writes, so a resume re-sends about one chunk per connection at most.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    _fd: int | None = None  # the sidecar, open for counter updates
    _base: int = 0  # where the counters start in it

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    @classmethod
    def fresh(cls, sidecar: Path, file: str, sha256: str, size: int, part: int) -> RangeState:
        return cls(sidecar, file, sha256, size, part, [0] * max(1, -(-size // part)))

    @classmethod
    def load(cls, sidecar: Path, sha256: str, size: int) -> RangeState | None:
        """The recorded state, or None when there is none or it does not describe this file."""
        parsed = _parse(sidecar)
        if parsed is None:
            return None
        doc, done, base = parsed
        try:
            state = cls(sidecar, str(doc["file"]), str(doc["sha256"]), int(doc["size"]), int(doc["part"]), done)
        except (KeyError, TypeError, ValueError):
            return None
        if state.sha256 != sha256 or state.size != size or state.part <= 0:
            return None
        if len(state.done) != max(1, -(-size // state.part)):
            return None
        if any(not 0 <= d <= state.length(i) for i, d in enumerate(state.done)):
            return None
        state._base = base
        return state

    @staticmethod
    def read_file(sidecar: Path) -> str | None:
        """The repository path a sidecar belongs to (None when unreadable)."""
        parsed = _parse(sidecar)
        return str(parsed[0].get("file")) if parsed else None

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
        with self.lock:
            return self.frontier() >= self.size

    def frontier(self) -> int:
        """The end of the contiguous prefix on disk (what the hasher may read); callers hold the lock."""
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
                self._write_counter(i)
                offset += take
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

    def close(self) -> None:
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _write_counter(self, i: int) -> None:
        if self._fd is None:  # the first update since it was loaded or made: the whole file, then in place
            self._save()
            self._fd = os.open(self.sidecar, os.O_WRONLY | getattr(os, "O_BINARY", 0))
        data = struct.pack("<Q", self.done[i])
        if hasattr(os, "pwrite"):
            os.pwrite(self._fd, data, self._base + 8 * i)
        else:  # Windows; callers hold self.lock
            os.lseek(self._fd, self._base + 8 * i, os.SEEK_SET)
            os.write(self._fd, data)

    def _save(self) -> None:
        """The whole sidecar, atomically (temporary file + rename)."""
        doc = {"file": self.file, "sha256": self.sha256, "size": self.size, "part": self.part}
        head = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_bytes(head + struct.pack(f"<{self.parts}Q", *self.done))
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.replace(tmp, self.sidecar)
        self._base = len(head)


def _parse(sidecar: Path) -> tuple[dict[str, Any], list[int], int] | None:
    """(header, counters, where the counters start), or None for a missing or malformed sidecar."""
    try:
        data = sidecar.read_bytes()
        head, sep, rest = data.partition(b"\n")
        doc = json.loads(head)
        if not sep or not isinstance(doc, dict) or len(rest) % 8:
            return None
        return doc, list(struct.unpack(f"<{len(rest) // 8}Q", rest)), len(head) + 1
    except (OSError, ValueError):
        return None


def done_bytes(partial: Path) -> int:
    """Bytes of a partial download already on disk (from its sidecar; the file itself is preallocated)."""
    from ollama_fit.hub.fetch.layout import sidecar_of

    sidecar = sidecar_of(partial)
    if sidecar.exists():
        parsed = _parse(sidecar)
        return sum(parsed[1]) if parsed else 0
    return partial.stat().st_size if partial.exists() else 0  # a partial from before range downloads
