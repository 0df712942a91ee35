"""One-line progress bars for a terminal, fitted to its width. Pure strings: cli/progress.py writes each frame after a
carriage return and clears to the end of the line (ERASE), so a shorter frame leaves nothing of a longer one.

A frame never reaches the last column (some terminals wrap there), and gives up fields as the terminal
narrows: first the bar shrinks, then the file name, the rate, the bar and the ETA go, in that order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ollama_fit.units import human

ERASE = "\x1b[K"  # clear from the cursor to the end of the line
BAR_MIN, BAR_MAX = 10, 40
LABEL_MAX = 32
RATE_AFTER = 0.5  # seconds: before that a rate (and an ETA) would be a guess
BAR_CHARS = {"utf-8": ("█", "░"), "ascii": ("#", "-")}


@dataclass
class Rates:
    """Bytes per second of each transfer since its first event: the bytes already on disk when a download
    resumes do not count as received. None until there is something to measure."""

    clock: Callable[[], float] = time.monotonic
    started: dict[str, tuple[float, int]] = field(default_factory=dict)

    def start(self, key: str, done: int) -> None:
        self.started[key] = (self.clock(), done)

    def rate(self, key: str, done: int) -> float | None:
        began, base = self.started.setdefault(key, (self.clock(), done))
        elapsed = self.clock() - began
        if elapsed < RATE_AFTER or done <= base:
            return None
        return (done - base) / elapsed


def clock_text(seconds: float | None) -> str:
    """m:ss (h:mm:ss past an hour); --:-- when unknown."""
    if seconds is None:
        return "--:--"
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _short(label: str) -> str:
    return label if len(label) <= LABEL_MAX else "…" + label[-(LABEL_MAX - 1) :]


def bar_line(
    label: str,
    done: int,
    total: int,
    width: int,
    rate: float | None = None,
    state: str = "",
    charset: str = "utf-8",
) -> str:
    """`label  [████░░░░]  41%  132.0 MiB/322.0 MiB  12.0 MiB/s  ETA 0:16`, fitted to `width` columns.
    `state` (e.g. "verifying") replaces the rate and the ETA."""
    room = max(1, width - 1)
    fraction = min(1.0, done / total) if total > 0 else 1.0
    percent = f"{int(fraction * 100):3d}%"
    # padded to their widest, so that the fields stay put from one frame to the next
    counts = f"{human(done)}/{human(total)}".rjust(len("999.9 MiB/") + len(human(total)))
    if state:
        speed, tail = "", state
    else:
        eta = (total - done) / rate if rate else None
        speed = (f"{human(int(rate))}/s" if rate else "").rjust(len("999.9 MiB/s"))
        tail = f"ETA {clock_text(eta)}".ljust(len("ETA 0:00:00"))
    name = _short(label)
    # the fields each layout keeps, widest first: the first one that fits wins
    layouts = [
        (name, True, percent, counts, speed, tail),
        ("", True, percent, counts, speed, tail),
        ("", True, percent, counts, "", tail),
        ("", False, percent, counts, "", tail),
        ("", False, percent, counts, "", ""),
        ("", False, percent, "", "", ""),
    ]
    for head, with_bar, *rest in layouts:
        fields = [f for f in (head, *rest) if f]
        fixed = sum(len(f) for f in fields) + 2 * len(fields)  # two spaces before each field, or around the bar
        if not with_bar:
            line = "  ".join(fields).strip()
            if len(line) <= room:
                return line
            continue
        cells = min(BAR_MAX, room - fixed - 2)
        if cells >= BAR_MIN:
            full, empty = BAR_CHARS[charset]
            filled = int(cells * fraction)
            bar = "[" + full * filled + empty * (cells - filled) + "]"
            return "  ".join(f for f in (head, bar, *rest) if f).rstrip()
    return percent.strip()[:room]
