"""Downloads through the real huggingface_hub client against the fake Hub, with faults injected at the
server. Every test checks the final state on disk: a complete verified file, or only a resumable partial."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.hub import Fault
from fetching import assert_complete, listed, make

from ollama_fit.errors import BadModelFile, DiskSpaceError, HubError
from ollama_fit.hub.fetch import PARTIAL, RANGES, done_bytes
from ollama_fit.hub.repos import Hub, HubFile

MiB = 1024**2
REPO = "acme/Fetch-GGUF"
NAME = "Fetch-Q8_0.gguf"


@pytest.fixture(scope="module")
def repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fetch")
    data = b"GGUF" + os.urandom(24 * MiB - 4)
    (folder / NAME).write_bytes(data)
    r = fake_hub.repo(REPO)
    r.add(NAME, folder / NAME)
    for i in (1, 2):
        shard = folder / f"s{i}.gguf"
        shard.write_bytes(b"GGUF" + os.urandom(3 * MiB))
        r.add(f"Q4_K_M/Fetch-Q4_K_M-0000{i}-of-00002.gguf", shard)
    gated = fake_hub.repo("acme/GatedFetch-GGUF", gated=True)
    gated.add(NAME, folder / NAME)
    return r


def test_fresh_download_lands_in_the_hf_cache_layout(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    before = fake_hub.served(REPO, NAME)
    fetched = fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    assert_complete(fetched, repo)
    assert fetched.path.parent.name == repo.commit  # snapshots/<commit>/<file>
    assert (tmp_path / "hub" / "models--acme--Fetch-GGUF" / "refs" / "main").read_text() == repo.commit
    assert fake_hub.served(REPO, NAME) - before == 24 * MiB
    again = fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    assert again.reused
    assert again.downloaded == 0
    assert fake_hub.served(REPO, NAME) - before == 24 * MiB  # not twice


def test_reuses_and_verifies_a_copy_made_by_hf_hub_download(fake_hub, repo, tmp_path):
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, NAME, cache_dir=tmp_path / "hub", endpoint=fake_hub.endpoint)
    before = fake_hub.served(REPO, NAME)
    events = []
    fetcher, _ = make(fake_hub, tmp_path, on_progress=events.append)
    fetched = fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    assert fetched.reused
    assert fake_hub.served(REPO, NAME) == before
    assert [e.kind for e in events] == ["verify", "reused"]  # hashed once...
    events.clear()
    fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    assert [e.kind for e in events] == ["reused"]  # ...then remembered


def test_corrupt_cached_copy_is_replaced(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    fetched = fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    blob = Path(os.path.realpath(fetched.path))
    with blob.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    again = fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    assert not again.reused
    assert_complete(again, repo)


@pytest.mark.parametrize(
    ("fault", "extra_bytes"),
    [
        (Fault(drop_after=5 * MiB), 0),  # connection dropped mid-body: resume with Range
        (Fault(short_by=3 * MiB), 0),  # announced the full length, sent less
        (Fault(long_by=4096), 0),  # more bytes than the file has: never written
    ],
)
def test_broken_bodies_resume_without_downloading_twice(fake_hub, repo, tmp_path, fault, extra_bytes):
    fake_hub.fail(REPO, NAME, fault)
    fetcher, _ = make(fake_hub, tmp_path)
    before = fake_hub.served(REPO, NAME)
    fetched = fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    assert_complete(fetched, repo)
    assert fake_hub.served(REPO, NAME) - before <= 24 * MiB + 1 * MiB


@pytest.mark.parametrize(
    ("faults", "waits"),
    [
        ([Fault(status=500)], [1.0]),
        ([Fault(status=503), Fault(status=502)], [1.0, 2.0]),
        ([Fault(status=429, retry_after=7)], [7.0]),
    ],
)
def test_server_errors_are_retried_with_backoff(fake_hub, repo, tmp_path, faults, waits):
    fake_hub.fail(REPO, NAME, *faults)
    fetcher, slept = make(fake_hub, tmp_path)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, NAME)), repo)
    assert slept == waits


def test_a_wrong_byte_is_caught_deleted_and_downloaded_again(fake_hub, repo, tmp_path):
    fake_hub.fail(REPO, NAME, Fault(corrupt_at=12345))
    events = []
    fetcher, _ = make(fake_hub, tmp_path, on_progress=events.append)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, NAME)), repo)
    assert any(e.kind == "retry" and "sha256 mismatch" in e.message for e in events)


def test_two_wrong_downloads_fail_and_leave_nothing(fake_hub, repo, tmp_path):
    fake_hub.fail(REPO, NAME, Fault(corrupt_at=10), Fault(corrupt_at=20 * MiB))  # one flipped bit per attempt
    fake_hub.fail(REPO, NAME, Fault(corrupt_at=20 * MiB - 1), Fault(corrupt_at=11))
    fetcher, _ = make(fake_hub, tmp_path)
    with pytest.raises(BadModelFile, match="failed its sha256 check twice"):
        fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    fake_hub.faults.pop(f"{REPO}/{NAME}", None)
    blobs = tmp_path / "hub" / "models--acme--Fetch-GGUF" / "blobs"
    assert list(blobs.iterdir()) == []  # no partial, no range record
    assert not (tmp_path / "hub" / "models--acme--Fetch-GGUF" / "snapshots").exists()
    assert not list((tmp_path / "hub").rglob("*.lock"))


@pytest.mark.parametrize("connections", [1, 4])
def test_persistent_failure_gives_up_and_keeps_a_resumable_partial(fake_hub, repo, tmp_path, connections):
    """The first GET is cut after 1 MiB (half of a 2 MiB part with 4 connections), then every GET fails."""
    fake_hub.fail(REPO, NAME, Fault(drop_after=MiB), *[Fault(status=500)] * 40)
    fetcher, slept = make(fake_hub, tmp_path, connections=connections, min_part=MiB)
    with pytest.raises(HubError, match="kept failing") as info:
        fetcher.fetch(REPO, listed(fake_hub, REPO, NAME))
    left = fake_hub.faults.pop(f"{REPO}/{NAME}", [])
    assert left, "every GET after the cut one must have failed"
    assert all(fault.status == 500 for fault in left)  # the cut was served
    assert "resumes" in info.value.hint
    schedule = [1.0, 2.0, 4.0, 8.0, 16.0]  # six attempts in a row without a byte, then give up
    if connections == 1:
        assert slept == schedule
    else:  # each connection backs off on its own: every one waited a prefix of the schedule, one all of it
        assert set(slept) <= set(schedule)
        counts = [slept.count(w) for w in schedule]
        assert counts == sorted(counts, reverse=True)
        assert 1 <= counts[-1] <= counts[0] <= connections
    f = listed(fake_hub, REPO, NAME)
    partial = fetcher.partial(REPO, f)
    kept = done_bytes(partial)
    assert MiB - 64 * 1024 <= kept <= MiB  # what arrived before the cut, and nothing else
    assert not (partial.parent / f.sha256).exists()  # never mistaken for the complete file
    before = fake_hub.served(REPO, NAME)
    again = fetcher.fetch(REPO, f)  # the next run resumes
    assert_complete(again, repo)
    assert again.downloaded == 24 * MiB - kept
    assert fake_hub.served(REPO, NAME) - before == 24 * MiB - kept


def test_gated_and_missing_files_fail_before_any_byte(fake_hub, repo, tmp_path):
    fetcher, _ = make(fake_hub, tmp_path)
    gated = HubFile(NAME, 24 * MiB, repo.files[NAME].sha256())
    with pytest.raises(HubError, match="is gated") as info:
        fetcher.fetch("acme/GatedFetch-GGUF", gated)
    assert "HF_TOKEN" in info.value.hint
    with pytest.raises(HubError, match="not found"):
        fetcher.fetch(REPO, HubFile("Nope-Q2_K.gguf", 10, "0" * 64))
    assert not list((tmp_path / "hub").rglob(f"*{PARTIAL}"))
    token_fetcher, _ = make(fake_hub, tmp_path, token=fake_hub.token)
    assert_complete(token_fetcher.fetch("acme/GatedFetch-GGUF", gated), repo)


def test_not_enough_disk_space_stops_before_the_first_byte(fake_hub, repo, tmp_path, monkeypatch):
    fetcher, _ = make(fake_hub, tmp_path)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 * MiB))
    before = fake_hub.served(REPO, NAME)
    with pytest.raises(DiskSpaceError, match=r"24.0 MiB to download, 10.0 MiB free"):
        fetcher.fetch_all(REPO, [listed(fake_hub, REPO, NAME)])
    assert fake_hub.served(REPO, NAME) == before


def test_offline_reuses_the_cache_and_refuses_the_rest(fake_hub, repo, tmp_path):
    online, _ = make(fake_hub, tmp_path)
    online.fetch(REPO, listed(fake_hub, REPO, NAME))
    offline, _ = make(fake_hub, tmp_path, offline=True)
    assert offline.fetch(REPO, listed(fake_hub, REPO, NAME)).reused
    shard = listed(fake_hub, REPO, "Q4_K_M/Fetch-Q4_K_M-00001-of-00002.gguf")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        offline.fetch(REPO, shard)


def test_split_shards_land_in_one_folder_with_their_names(fake_hub, repo, tmp_path):
    from ollama_fit.hub.repos import group_quants

    (group,) = [g for g in group_quants(Hub(fake_hub.endpoint).list_files(REPO)) if g.split]
    fetcher, _ = make(fake_hub, tmp_path)
    fetched = fetcher.fetch_all(REPO, list(group.files))
    assert [f.path.name for f in fetched] == ["Fetch-Q4_K_M-00001-of-00002.gguf", "Fetch-Q4_K_M-00002-of-00002.gguf"]
    assert fetched[0].path.parent == fetched[1].path.parent
    for f in fetched:
        assert_complete(f, repo)


def test_kill_mid_download_at_several_points_then_resume(fake_hub, repo, tmp_path):
    """kill -9 `ollama-fit pull` (8 connections) as soon as it starts, at about 20% and at 60%; each next run
    continues from the ranges recorded, and in all the file crosses the network once plus about one chunk per
    connection per kill."""
    env = os.environ | {"HF_ENDPOINT": fake_hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "ollama_fit", "pull", f"hf.co/{REPO}:Q8_0", "--no-register", "--json"]
    cmd += ["--connections", "8"]
    start = fake_hub.served(REPO, NAME)
    kept = 0
    fake_hub.delay = 0.04  # at most ~1.5 MiB/s per connection: slow enough to stop it where we want
    try:
        for point in (0.0, 0.2, 0.6):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            partial = None
            while time.monotonic() < deadline and proc.poll() is None:
                found = list((tmp_path / "hf").rglob(f"*{PARTIAL}"))
                if found and done_bytes(found[0]) >= point * 24 * MiB:
                    partial = found[0]
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert partial is not None, "the download never got going"
            assert not partial.with_name(partial.name.removesuffix(PARTIAL)).exists()
            assert done_bytes(partial) >= kept  # nothing recorded was lost
            kept = done_bytes(partial)
            assert partial.stat().st_size == 24 * MiB  # preallocated, written in place
    finally:
        fake_hub.delay = 0.0
    assert kept < 24 * MiB
    fake_hub.settle()
    before = fake_hub.served(REPO, NAME)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    assert result["downloaded_bytes"] == 24 * MiB - kept  # exactly what the range record said was missing
    assert fake_hub.served(REPO, NAME) - before == 24 * MiB - kept
    resent = fake_hub.served(REPO, NAME) - start - 24 * MiB
    assert resent <= 3 * 8 * (MiB + 256 * 1024)  # 3 kills, 8 connections: a chunk each (+ socket slack)
    assert Path(result["local_files"][0]).read_bytes() == repo.files[NAME].source.read_bytes()
    events = [json.loads(line)["event"] for line in done.stderr.splitlines() if line.startswith("{")]
    assert events[0] == "start"
    assert "done" in events
    assert not list((tmp_path / "hf").rglob(f"*{RANGES}"))


def test_cli_pull_of_a_split_quant_and_errors(fake_hub, repo, tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from ollama_fit.cli import cli

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = CliRunner().invoke(cli, ["pull", f"hf.co/{REPO}:Q4_K_M", "--no-register", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["quant"] == "Q4_K_M"
    assert [Path(p).name for p in doc["local_files"]] == [
        "Fetch-Q4_K_M-00001-of-00002.gguf",
        "Fetch-Q4_K_M-00002-of-00002.gguf",
    ]
    for path, name in zip(doc["local_files"], doc["files"], strict=True):
        assert Path(path).read_bytes() == repo.files[name].source.read_bytes()
    again = CliRunner().invoke(cli, ["pull", f"hf.co/{REPO}:Q4_K_M", "--no-register"])
    assert "already in the cache" in again.stdout
    no_default = CliRunner().invoke(cli, ["pull", "hf.co/acme/GatedFetch-GGUF", "--no-register"])
    assert no_default.exit_code == 7
    assert "has no Q4_K_M" in no_default.stderr


def test_cli_pull_of_a_catalog_model(fake_hub, repo, tmp_path, monkeypatch, request):
    from click.testing import CliRunner

    from ollama_fit.cli import cli
    from ollama_fit.model.catalog import find_model

    model = find_model("qwen3:0.6b")
    name = model.file_for("Q8_0")
    source = tmp_path / name
    source.write_bytes(b"GGUF" + os.urandom(MiB))  # pull does not parse it; other tests must not see it
    fake_hub.repo(model.repo).add(name, source)
    request.addfinalizer(lambda: fake_hub.repos[model.repo].files.pop(name, None))
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = CliRunner().invoke(cli, ["pull", "qwen3:0.6b", "--quant", "Q8_0", "--no-register"])
    assert result.exit_code == 0, result.output
    assert f"{model.repo} Q8_0: downloaded 1.0 MiB, sha256 verified" in result.stdout


@pytest.mark.parametrize("fault", [Fault(wrong_range=True), Fault(ignore_range=True)])
def test_a_resume_answered_from_the_wrong_offset_starts_over(fake_hub, repo, tmp_path, fault):
    fake_hub.fail(REPO, NAME, Fault(drop_after=3 * MiB), fault)
    fetcher, _ = make(fake_hub, tmp_path)
    assert_complete(fetcher.fetch(REPO, listed(fake_hub, REPO, NAME)), repo)  # never appended the wrong bytes
