"""A short measurement of this machine's RAM read bandwidth, for CPU decode speed; cached per machine.

Every core ORs together its own slice of a buffer larger than any CPU cache (integer work light enough to
leave the memory as the limit; numpy releases the GIL while it reduces), a few times; the best pass
counts. About 0.2-0.5 s once; later probes read the cache.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BUFFER_BYTES = 256 * 1024**2
PASSES = 3
TIME_LIMIT_S = 1.0  # stop early on a slow machine: a rough figure beats a slow probe
# Below this the machine was busy, not slow: no computer that runs a model reads RAM slower. Such a
# reading is not kept, and the speed model falls back to its stated assumption.
PLAUSIBLE_GBS = 4.0


def measure(threads: int, buffer_bytes: int = BUFFER_BYTES, clock: Callable[[], float] = time.perf_counter) -> float:
    """GB/s read by `threads` threads summing their slices of one buffer (the best of a few passes)."""
    import numpy as np  # deferred: only a real probe pays for it

    threads = max(1, threads)
    data = np.ones(buffer_bytes // 8, dtype=np.uint64)  # written once, so every page is really mapped
    slices = np.array_split(data, threads)
    best = 0.0
    started = clock()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(PASSES):
            t0 = clock()
            list(pool.map(np.bitwise_or.reduce, slices))
            elapsed = clock() - t0
            if elapsed > 0:
                best = max(best, data.nbytes / elapsed / 1e9)
            if clock() - started > TIME_LIMIT_S:
                break
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
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: measure again next time
    return value
