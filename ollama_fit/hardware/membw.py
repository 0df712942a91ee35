"""A short measurement of this machine's RAM bandwidth, for CPU decode speed; cached per machine.

STREAM's "copy": memcpy of a buffer larger than any CPU cache into another, bytes read plus bytes written per
second (numpy's copy is a plain memcpy and releases the GIL), with one thread and with every core, a few
passes each; the best pass counts (a busy machine reads low, never high). Under a second once; later probes
read the cache.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ollama_fit.files import write_atomic

BUFFER_BYTES = 256 * 1024**2  # each of the two buffers
PASSES = 4
TIME_LIMIT_S = 1.0  # stop early on a slow machine: a rough figure beats a slow probe
# Below this the machine was busy, not slow: no computer that runs a model reads RAM slower. Such a
# reading is not kept, and the speed model falls back to its stated assumption.
PLAUSIBLE_GBS = 4.0


def measure(threads: int, buffer_bytes: int = BUFFER_BYTES, clock: Callable[[], float] = time.perf_counter) -> float:
    """GB/s moved (read + written) copying one buffer into another, with 1 and with `threads` threads."""
    import numpy as np  # deferred: only a real probe pays for it

    source = np.ones(buffer_bytes // 8, dtype=np.uint64)  # written once, so every page is really mapped
    target = np.zeros_like(source)
    best = 0.0
    started = clock()
    for n in sorted({1, max(1, threads)}):
        pairs = list(zip(np.array_split(target, n), np.array_split(source, n), strict=True))
        with ThreadPoolExecutor(max_workers=n) as pool:
            for _ in range(PASSES):
                t0 = clock()
                list(pool.map(lambda pair: np.copyto(*pair), pairs))
                elapsed = clock() - t0
                if elapsed > 0:
                    best = max(best, 2 * source.nbytes / elapsed / 1e9)
                if clock() - started > TIME_LIMIT_S:
                    return best
    return best


def cached_bandwidth(
    cache: Path, key: str, threads: int, run: Callable[[int], float] = measure, *, remeasure: bool = False
) -> float | None:
    """The measurement for this machine (`key`: CPU model, cores and RAM size), measured once and kept;
    `remeasure` measures again and keeps the best reading (a busy machine reads low, never high)."""
    path = cache / "ram-bandwidth.json"
    known: float | None = None
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and isinstance(saved.get(key), int | float):
            known = float(saved[key])
    except (OSError, ValueError):
        saved = {}
    if known is not None and not remeasure:
        return known
    try:
        value = run(threads)
    except (ImportError, MemoryError, OSError):
        return known
    if value < PLAUSIBLE_GBS or (known is not None and value <= known):
        return known
    entries = saved if isinstance(saved, dict) else {}
    value = round(value, 1)
    entries[key] = value
    with contextlib.suppress(OSError):  # a read-only home: measure again next time
        write_atomic(path, json.dumps(entries, indent=1))
    return value
