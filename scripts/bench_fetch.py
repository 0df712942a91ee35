#!/usr/bin/env python3
"""Fetch throughput and memory: ollama-fit's verified, resumable fetcher vs plain hf_hub_download.

    python scripts/bench_fetch.py [--size-gib 1] [--rounds 3] [--capped-mib 512] [--cap-mib-s 40]

Both download the same sparse multi-GB file from the local fake Hub (tests/fakes/hub.py, loopback only),
alternating, several rounds, in this process. Printed: the throughput ratio ours/theirs (ours includes the
sha256 verification; theirs checks nothing), our peak RSS growth, and the bytes sent twice over a run killed
(kill -9) at 50% and the resumed run. Targets: ratio >= 0.9, RSS growth < 100 MiB, re-sent < 16 MiB
(8 connections, about one chunk each).

The capped case is what a CDN does: each connection is held to --cap-mib-s. It times ours with 1 and 8
connections and hf_hub_download (one connection) on the same file in the same run, and prints the ratios.
Target: 8 connections at least 3x faster than one, and than hf_hub_download.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fakes.hub import FakeHub  # noqa: E402

from ollama_fit.hub.fetch import PARTIAL, Fetcher, done_bytes  # noqa: E402
from ollama_fit.hub.repos import Hub  # noqa: E402

MiB = 1024**2
REPO, NAME = "bench/Big-GGUF", "Big-Q8_0.gguf"


class PeakRss:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.base


def ours(endpoint: str, work: Path, connections: int = 8, name: str = NAME) -> tuple[float, int]:
    cache = work / "ours"
    shutil.rmtree(cache, ignore_errors=True)
    fetcher = Fetcher(Hub(endpoint), cache, None, connections=connections)
    f = next(x for x in Hub(endpoint).list_files(REPO) if x.path == name)
    with PeakRss() as rss:
        start = time.perf_counter()
        fetcher.fetch(REPO, f)
        took = time.perf_counter() - start
    return took, rss.growth


def theirs(endpoint: str, work: Path, name: str = NAME) -> float:
    from huggingface_hub import hf_hub_download

    cache = work / "theirs"
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    hf_hub_download(REPO, name, cache_dir=cache, endpoint=endpoint)
    return time.perf_counter() - start


SERVE = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from fakes.hub import FakeHub
hub = FakeHub().start()
hub.repo({repo!r}).add({name!r}, Path({source!r})).sha256()
hub.rate = {rate!r}
print(hub.endpoint, flush=True)
sys.stdin.read()  # serve until the benchmark closes the pipe
"""


@contextlib.contextmanager
def capped_hub(source: Path, cap: float) -> Iterator[str]:
    """The fake Hub in its own process (as a real server is: it does not share our interpreter lock), its CDN
    capping every connection at `cap` bytes/s."""
    code = SERVE.format(tests=str(ROOT / "tests"), repo=REPO, name=source.name, source=str(source), rate=cap)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def capped(source: Path, work: Path, cap: float) -> dict[str, float]:
    """Seconds for ours at 1 and 8 connections and for hf_hub_download, each connection capped at `cap`."""
    with capped_hub(source, cap) as endpoint:
        return {
            "ours, 1 connection": ours(endpoint, work, 1, source.name)[0],
            "ours, 8 connections": ours(endpoint, work, 8, source.name)[0],
            "hf_hub_download": theirs(endpoint, work, source.name),
        }


def kill_and_resume(hub: FakeHub, work: Path, size: int) -> tuple[int, int]:
    """kill -9 a fetch (8 connections) at 50%, resume here; returns (bytes recorded at the kill, bytes sent
    twice over both runs: what the killed run received but had not recorded, and what was in flight)."""
    cache = work / "resume"
    start = hub.served(REPO, NAME)
    shutil.rmtree(cache, ignore_errors=True)
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from pathlib import Path\nfrom ollama_fit.hub.fetch import Fetcher\nfrom ollama_fit.hub.repos import Hub\n"
        f"hub = Hub({hub.endpoint!r}); f = next(x for x in hub.list_files({REPO!r}) if x.path == {NAME!r})\n"
        f"Fetcher(hub, Path({str(cache)!r}), None).fetch({REPO!r}, f)\n"
    )
    # 10 MiB/s per connection: slow enough to catch it at 50%, and what the client keeps up with, so that
    # what was in the sockets at the kill (sent, never read) stays small
    hub.rate = 10 * MiB
    proc = subprocess.Popen([sys.executable, "-c", code])
    partial = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(cache.rglob(f"*{PARTIAL}"))
        if found and done_bytes(found[0]) >= size // 2:
            partial = found[0]
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hub.rate = None
    if partial is None:
        raise SystemExit("the download finished or stalled before 50%: try a larger --size-gib")
    kept = done_bytes(partial)
    f = next(x for x in Hub(hub.endpoint).list_files(REPO) if x.path == NAME)
    Fetcher(Hub(hub.endpoint), cache, None).fetch(REPO, f)
    hub.settle()
    return kept, hub.served(REPO, NAME) - start - size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--capped-mib", type=int, default=512, help="file size for the capped case")
    parser.add_argument("--cap-mib-s", type=float, default=40.0, help="the CDN's cap per connection")
    args = parser.parse_args()
    os.environ.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        size = int(args.size_gib * 1024**3)
        source = work / NAME
        with source.open("wb") as f:
            f.write(b"GGUF")
            f.truncate(size)  # sparse: costs nothing on disk, reads as zeros
        hub = FakeHub().start()
        hub.repo(REPO).add(NAME, source)
        hub.repos[REPO].files[NAME].sha256()  # the server's hash, computed before timing
        ours_t, theirs_t, growth = [], [], []
        for i in range(args.rounds):
            t, g = ours(hub.endpoint, work)
            ours_t.append(t)
            growth.append(g)
            theirs_t.append(theirs(hub.endpoint, work))
            ours_rate, theirs_rate = size / t / MiB, size / theirs_t[-1] / MiB
            print(f"round {i + 1}: ours {ours_rate:7.1f} MiB/s   hf_hub_download {theirs_rate:7.1f} MiB/s")
        kept, twice = kill_and_resume(hub, work, size)
        hub.stop()
        small = work / "Capped-Q8_0.gguf"
        with small.open("wb") as f:
            f.write(b"GGUF")
            f.truncate(args.capped_mib * MiB)
        times = capped(small, work, args.cap_mib_s * MiB)
    ratio = sorted(theirs_t)[len(theirs_t) // 2] / sorted(ours_t)[len(ours_t) // 2]
    print(f"file {size / MiB:.0f} MiB, {args.rounds} rounds alternating")
    print(f"throughput ratio ours/theirs (median, ours verifies sha256): {ratio:.2f}   target >= 0.9")
    print(f"peak RSS growth during our download: {max(growth) / MiB:.1f} MiB   target < 100 MiB")
    print(f"kill -9 at {kept / size:.0%}, resumed: {twice / MiB:.2f} MiB sent twice in all   target < 16 MiB")
    print(f"capped at {args.cap_mib_s:.0f} MiB/s per connection, {args.capped_mib} MiB file:")
    for label, took in times.items():
        print(f"  {label:20} {args.capped_mib / took:7.1f} MiB/s")
    x8 = times["ours, 8 connections"]
    vs_one, vs_hf = times["ours, 1 connection"] / x8, times["hf_hub_download"] / x8
    print(f"  8 connections vs 1: {vs_one:.2f}x   vs hf_hub_download: {vs_hf:.2f}x   target >= 3x")
    ok = ratio >= 0.9 and max(growth) < 100 * MiB and twice < 16 * MiB and vs_one >= 3 and vs_hf >= 3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
