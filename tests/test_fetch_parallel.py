"""Parallel ranged downloads through the real huggingface_hub client against the fake Hub: ranges in place,
one stream where ranges cannot be used, faults inside one range, back-off, interruption, bounds on memory and
disk. No test depends on speed: sleeps are injected, and the fake answers at once unless a test slows it."""

from __future__ import annotations

import functools
import os
import threading
import tracemalloc
from collections import Counter
from pathlib import Path

import fetching
import pytest
from fakes.hub import Fault
from fetching import assert_complete, listed

from ollama_fit.errors import HubError
from ollama_fit.hub.fetch import RANGES, done_bytes
from ollama_fit.hub.fetch.ranges import CHUNK, RangeState, part_size
from ollama_fit.hub.fetch.transfer import HostGate
from ollama_fit.hub.repos import HubFile

MiB = 1024**2
REPO = "acme/Parallel-GGUF"
BIG = "Parallel-Q8_0.gguf"  # 24 MiB: twelve 2 MiB parts with 4 connections
SMALL = "Parallel-Q2_K.gguf"  # 3 MiB: one stream
N = 4

make = functools.partial(fetching.make, connections=N, min_part=MiB)  # a call may override either


@pytest.fixture(scope="module")
def repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("parallel")
    r = fake_hub.repo(REPO)
    for name, size in ((BIG, 24 * MiB), (SMALL, 3 * MiB)):
        (folder / name).write_bytes(b"GGUF" + os.urandom(size - 4))
        r.add(name, folder / name).sha256()
    return r


@pytest.fixture(autouse=True)
def _clean_faults(fake_hub):
    yield
    fake_hub.faults.pop(f"{REPO}/{BIG}", None)
    fake_hub.ranges = True
    fake_hub.delay = 0.0


def cdn_gets(fake_hub, since: int, name: str = BIG) -> list[dict[str, str]]:
    gets = [h for m, p, h in fake_hub.requests[since:] if m == "GET" and p.startswith("/cdn/") and p.endswith(name)]
    return [{k.lower(): v for k, v in h.items()} for h in gets]


def test_ranges_are_fetched_in_parallel_and_written_in_place(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    since, before = len(fake_hub.requests), fake_hub.served(REPO, BIG)
    fetched = fetcher.fetch(REPO, listed(fake_hub, REPO, BIG))
    assert_complete(fetched, repo)
    ranges = sorted(h["range"] for h in cdn_gets(fake_hub, since))
    assert len(ranges) == 12  # one request per 2 MiB part, each exactly once
    assert ranges[0] == "bytes=0-2097151"
    assert fake_hub.served(REPO, BIG) - before == 24 * MiB  # not a byte twice
    assert max(g.peak for g in fetcher.gates.values()) <= N  # never more than N in flight
    assert fetched.downloaded == 24 * MiB


def test_one_connection_is_one_stream(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path, connections=1)
    since = len(fake_hub.requests)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    (get,) = cdn_gets(fake_hub, since)
    assert "range" not in get


def test_small_files_use_one_stream(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path, min_part=8 * MiB)
    since = len(fake_hub.requests)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, SMALL)), repo)
    assert len(cdn_gets(fake_hub, since, SMALL)) == 1


def test_a_server_without_range_gets_one_stream_and_no_wasted_bytes(fake_hub, repo, tmp_path):
    fake_hub.ranges = False
    fetcher, _ = make(fake_hub, tmp_path)
    since, before = len(fake_hub.requests), fake_hub.served(REPO, BIG)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    assert len(cdn_gets(fake_hub, since)) == 1  # the first answer (200) was used as the whole file
    assert fake_hub.served(REPO, BIG) - before == 24 * MiB


def test_a_resume_against_a_server_without_range_starts_over_from_the_first_byte(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    f = listed(fake_hub, REPO, BIG)
    fake_hub.fail(REPO, BIG, *[Fault(status=500)] * 40)
    with pytest.raises(HubError):
        fetcher.fetch(REPO, f)
    fake_hub.faults.pop(f"{REPO}/{BIG}")
    fake_hub.ranges = False
    assert_complete(fetcher.fetch(REPO, f), repo)  # 200 to the Range request: the bytes come from 0, not appended


def test_a_dropped_connection_inside_one_range_refetches_only_the_rest_of_it(fake_hub, repo, tmp_path):
    fake_hub.fail(REPO, BIG, Fault(at=13 * MiB, drop_after=300 * 1024))
    fetcher, _ = make(fake_hub, tmp_path)
    since, before = len(fake_hub.requests), fake_hub.served(REPO, BIG)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    assert fake_hub.served(REPO, BIG) - before <= 24 * MiB + 300 * 1024
    assert "bytes=12582912-14680063" in {h["range"] for h in cdn_gets(fake_hub, since)}


PART9 = "bytes=8388608-10485759"  # the 2 MiB part [8 MiB, 10 MiB) that holds byte 9 MiB


@pytest.mark.parametrize(
    ("fault", "again"),
    [
        (Fault(at=9 * MiB, wrong_range=True), PART9),  # 206 from the wrong offset: told apart by Content-Range
        (Fault(at=9 * MiB, short_by=MiB), "bytes=9437184-10485759"),  # announced the part, sent 1 MiB: the rest
        (Fault(at=9 * MiB, ignore_range=True), PART9),  # 200 after others got 206: a broken answer, not "no Range"
    ],
)
def test_a_range_answered_wrongly_is_refetched_alone(fake_hub, repo, tmp_path, fault, again):
    fake_hub.fail(REPO, BIG, fault)
    fetcher, _ = make(fake_hub, tmp_path)  # the first range (0-2 MiB) shows the server honours Range
    since, before = len(fake_hub.requests), fake_hub.served(REPO, BIG)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    assert not fake_hub.faults.get(f"{REPO}/{BIG}")  # the wrong answer was given
    ranges = Counter(h["range"] for h in cdn_gets(fake_hub, since))
    parts = {f"bytes={a}-{a + 2 * MiB - 1}" for a in range(0, 22 * MiB, 2 * MiB)} | {f"bytes={22 * MiB}-"}
    assert set(ranges) == parts | {again}  # every part asked for, and the faulty one again
    assert sum(ranges.values()) == len(parts) + 1  # nothing else repeated
    assert ranges[PART9] == (2 if again == PART9 else 1)
    fake_hub.settle()  # a wrong body may still be streaming to the closed connection
    assert fake_hub.served(REPO, BIG) - before <= 24 * MiB + 2 * MiB  # the file and at most one part more


def test_a_bit_flip_in_one_range_is_caught_and_the_file_downloaded_again(fake_hub, repo, tmp_path):
    """A wrong byte cannot be traced to its range (one sha256 per file): the documented retry, then success."""
    fake_hub.fail(REPO, BIG, Fault(corrupt_at=17 * MiB + 5))
    events = []
    fetcher, _ = make(fake_hub, tmp_path, on_progress=events.append)
    before = fake_hub.served(REPO, BIG)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    assert any(e.kind == "retry" and "sha256 mismatch" in e.message for e in events)
    assert fake_hub.served(REPO, BIG) - before == 2 * 24 * MiB


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_a_range_waits_and_lowers_the_connections(fake_hub, repo, tmp_path, status):
    fake_hub.fail(REPO, BIG, Fault(at=5 * MiB, status=status, retry_after=7))
    events = []
    fetcher, waits = make(fake_hub, tmp_path, on_progress=events.append)
    lowered = []
    gate = HostGate(N)
    original = gate.slow_down

    def watch(wait, sleep):
        original(wait, sleep)
        lowered.append(gate.allowed)

    gate.slow_down = watch  # type: ignore[method-assign]
    fetcher.gates[fake_hub.endpoint.split("//")[1]] = gate
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    assert waits == [7.0]
    assert lowered == [N // 2]
    assert any(e.kind == "retry" and f"HTTP {status}" in e.message for e in events)


def test_host_gate_keeps_to_the_lowered_count():
    gate = HostGate(4)
    gate.slow_down(3.0, lambda s: None)
    assert gate.allowed == 2
    inside, most, release = [0], [0], threading.Event()
    lock = threading.Lock()

    def worker():
        with gate.slot():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            release.wait(10)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    while gate.in_flight < 2:
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join(10)
    assert most[0] == 2
    for _ in range(4):
        gate.went_well()
    assert gate.allowed == 3  # calm gives connections back, one at a time


def test_ctrl_c_keeps_every_finished_byte_and_the_next_run_sends_only_the_rest(fake_hub, repo, tmp_path):
    stopped = []

    def interrupt(event):
        if event.kind == "progress" and event.done >= 10 * MiB and not stopped:
            stopped.append(event.done)
            raise KeyboardInterrupt

    fake_hub.delay = 0.03  # at most ~2 MiB/s per connection: progress is seen part-way on any machine
    fetcher, _ = make(fake_hub, tmp_path, on_progress=interrupt)
    f = listed(fake_hub, REPO, BIG)
    with pytest.raises(KeyboardInterrupt):
        fetcher.fetch(REPO, f)
    fake_hub.delay = 0.0
    fake_hub.settle()
    partial = fetcher.partial(REPO, f)
    kept = done_bytes(partial)
    assert 10 * MiB <= kept < 24 * MiB
    state = RangeState.load(partial.with_name(f"{f.sha256}{RANGES}"), str(f.sha256), f.size)
    assert state is not None
    assert len(state.pending(merge=False)) >= 2  # several ranges were left unfinished
    before = fake_hub.served(REPO, BIG)
    again = fetcher.fetch(REPO, f)
    assert_complete(again, repo)
    assert again.downloaded == 24 * MiB - kept
    assert fake_hub.served(REPO, BIG) - before == 24 * MiB - kept


def test_stopped_between_the_last_byte_and_the_rename_the_next_run_sends_nothing(fake_hub, repo, tmp_path):
    def interrupt(event):
        if event.kind == "verify":
            raise KeyboardInterrupt

    fetcher, _ = make(fake_hub, tmp_path, on_progress=interrupt)
    f = listed(fake_hub, REPO, BIG)
    with pytest.raises(KeyboardInterrupt):
        fetcher.fetch(REPO, f)
    assert done_bytes(fetcher.partial(REPO, f)) == 24 * MiB
    fetcher.on_progress = lambda e: None
    before = fake_hub.served(REPO, BIG)
    again = fetcher.fetch(REPO, f)
    assert_complete(again, repo)
    assert again.downloaded == 0
    assert fake_hub.served(REPO, BIG) == before


def test_a_partial_from_the_single_stream_fetcher_is_resumed_as_a_prefix(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    f = listed(fake_hub, REPO, BIG)
    partial = fetcher.partial(REPO, f)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(repo.files[BIG].source.read_bytes()[: 5 * MiB + 123])  # no range record beside it
    before = fake_hub.served(REPO, BIG)
    assert_complete(fetcher.fetch(REPO, f), repo)
    assert fake_hub.served(REPO, BIG) - before == 24 * MiB - 5 * MiB - 123


def test_memory_stays_bounded_whatever_the_file_size(fake_hub, repo, tmp_path):
    """Bound: about 2 chunks per connection plus one hash block (transfer.py, hashing.py): 12 MiB for 4."""
    fetcher, _ = make(fake_hub, tmp_path)
    f = listed(fake_hub, REPO, BIG)
    tracemalloc.start()
    try:
        fetcher.fetch(REPO, f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * CHUNK * N + 4 * MiB + 2 * MiB  # the file is 24 MiB


def test_disk_holds_one_copy_at_most(fake_hub, repo, tmp_path):
    seen = []
    root = tmp_path / "hub"

    def measure(event):
        seen.append(sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file() and not p.is_symlink()))

    fetcher, _ = make(fake_hub, tmp_path, on_progress=measure)
    fake_hub.delay = 0.001
    fetcher.fetch(REPO, listed(fake_hub, REPO, BIG))
    assert len(seen) >= 3
    assert max(seen) <= 24 * MiB + 64 * 1024  # the partial (sparse, filled in place), its record, then the blob


def test_a_stale_partial_of_a_changed_file_is_removed_and_reported(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    f = listed(fake_hub, REPO, BIG)
    old = HubFile(f.path, f.size, "e" * 64)  # the same file before its content changed on the Hub
    stale = fetcher.partial(REPO, old)
    stale.parent.mkdir(parents=True)
    with stale.open("wb") as out:
        out.write(os.urandom(3 * MiB))
        out.truncate(f.size)
    RangeState.fresh(stale.with_name("e" * 64 + RANGES), f.path, old.sha256, f.size, 2 * MiB).record(0, 3 * MiB)
    other = HubFile(SMALL, 3 * MiB, "d" * 64)  # a partial of another file: still resumable, kept
    kept = fetcher.partial(REPO, other)
    kept.write_bytes(b"x" * 1000)
    RangeState.fresh(kept.with_name("d" * 64 + RANGES), SMALL, "d" * 64, 3 * MiB, 3 * MiB).record(0, 1000)
    events = []
    fetcher.on_progress = events.append
    fetched = fetcher.fetch(REPO, f)
    assert fetched.stale_freed >= 3 * MiB
    assert not stale.exists()
    assert not stale.with_name("e" * 64 + RANGES).exists()
    assert kept.exists()
    (cleanup,) = [e for e in events if e.kind == "cleanup"]
    assert "freed" in cleanup.message


def test_a_second_fetch_of_one_file_waits_for_the_first_then_reuses_its_work(fake_hub, repo, tmp_path):
    first, _ = make(fake_hub, tmp_path)
    second, _ = make(fake_hub, tmp_path)
    waiting, results = threading.Event(), []

    def on_progress(event):
        if event.kind == "wait":
            assert "another ollama-fit" in event.message
            waiting.set()

    second.on_progress = on_progress
    f = listed(fake_hub, REPO, BIG)
    before = fake_hub.served(REPO, BIG)
    with first.hold(REPO, [f]):
        other = threading.Thread(target=lambda: results.append(second.fetch(REPO, f)))
        other.start()
        assert waiting.wait(60)  # it waits rather than failing or downloading too
        fetched = first.fetch(REPO, f)  # the holder may fetch (the lock is re-entrant)
    other.join(60)
    assert_complete(fetched, repo)
    assert results[0].reused
    assert fake_hub.served(REPO, BIG) - before == 24 * MiB


def test_part_sizes():
    assert part_size(3 * MiB, 8) == 3 * MiB  # small: one stream
    assert part_size(20 * 1024 * MiB, 1) == 20 * 1024 * MiB  # one connection: one stream
    assert part_size(20 * 1024 * MiB, 8) == 64 * MiB  # capped: the hash stays close behind
    assert part_size(100 * MiB, 8) == 8 * MiB  # at least min_part
    assert part_size(1024 * MiB, 8) % CHUNK == 0


def test_a_hub_api_503_does_not_fail_the_fetch(fake_hub, repo, tmp_path):
    fake_hub.fail_route("resolve", Fault(status=503, retry_after=2))
    fetcher, waits = make(fake_hub, tmp_path)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, BIG)), repo)
    assert 2.0 in waits


def test_the_range_record_reads_back_and_refuses_what_does_not_match(tmp_path):
    sidecar = tmp_path / f"{'a' * 64}{RANGES}"
    state = RangeState.fresh(sidecar, "x.gguf", "a" * 64, 10 * MiB, 4 * MiB)
    state.record(0, 3 * MiB)
    state.record(4 * MiB, 4 * MiB)
    state.record(8 * MiB, 100)
    state.close()
    back = RangeState.load(sidecar, "a" * 64, 10 * MiB)
    assert back is not None
    assert back.done == [3 * MiB, 4 * MiB, 100]
    assert back.frontier() == 3 * MiB
    assert back.pending(merge=False) == [(3 * MiB, 4 * MiB), (8 * MiB + 100, 10 * MiB)]
    assert RangeState.read_file(sidecar) == "x.gguf"
    assert RangeState.load(sidecar, "b" * 64, 10 * MiB) is None  # another file's record
    assert RangeState.load(sidecar, "a" * 64, 11 * MiB) is None
    sidecar.write_bytes(sidecar.read_bytes()[:-3])  # torn: not trusted
    assert RangeState.load(sidecar, "a" * 64, 10 * MiB) is None
    sidecar.write_bytes(b"garbage")
    assert RangeState.load(sidecar, "a" * 64, 10 * MiB) is None


def test_cli_connections_option(fake_hub, repo, tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from ollama_fit.cli import cli

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    since = len(fake_hub.requests)
    result = CliRunner().invoke(cli, ["pull", f"hf.co/{REPO}:Q8_0", "--no-register", "--json", "--connections", "1"])
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.stdout)["local_files"][0]).read_bytes() == repo.files[BIG].source.read_bytes()
    assert len(cdn_gets(fake_hub, since)) == 1  # one stream
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert {tuple(sorted(e)) for e in events} == {("done", "event", "file", "message", "total")}  # same shape
    bad = CliRunner().invoke(cli, ["pull", f"hf.co/{REPO}:Q8_0", "--no-register", "--connections", "0"])
    assert bad.exit_code == 2
    assert "--connections" in bad.stderr
    assert "--connections" in CliRunner().invoke(cli, ["auto", "--help"]).stdout
