"""What a registered pull leaves in the Hugging Face cache (exactly what huggingface_hub's own tools expect),
and two pulls of one file at once (the work is done once)."""

from __future__ import annotations

import threading

import pytest
from conftest import tiny_shape
from fakes.ollama import FakeOllama
from ggufs import write_gguf

from ollama_fit.hub.fetch import Fetcher
from ollama_fit.hub.repos import Hub, group_quants, select
from ollama_fit.ollama.client import Ollama
from ollama_fit.ollama.register import Records
from ollama_fit.provision.pull import RegisterOptions, Target, pull

REPO = "acme/Cache-GGUF"
Q4 = "Cache-Q4_K_M.gguf"
Q8 = "Cache-Q8_0.gguf"


@pytest.fixture(scope="module")
def cache_repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    repo = fake_hub.repo(REPO)
    repo.add(Q4, write_gguf(folder / Q4, tiny_shape(), "Q4_K_M")).sha256()
    repo.add(Q8, write_gguf(folder / Q8, tiny_shape(), "Q8_0")).sha256()
    return repo


@pytest.fixture
def ollama(tmp_path, monkeypatch):
    server = FakeOllama().start()
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama-models"))
    yield server
    server.stop()


def target(fake_hub, quant="Q4_K_M") -> Target:
    return Target(REPO, select(group_quants(Hub(fake_hub.endpoint).list_files(REPO)), quant))


def scan(cache):
    from huggingface_hub import scan_cache_dir

    return scan_cache_dir(cache)


def test_a_registered_pull_leaves_a_consistent_cache(fake_hub, cache_repo, ollama, tmp_path):
    from huggingface_hub import hf_hub_download

    cache = tmp_path / "hub"
    # another file of the same repository, put there by huggingface_hub itself: it must survive intact
    hf_hub_download(REPO, Q8, cache_dir=cache, endpoint=fake_hub.endpoint)
    fetcher = Fetcher(Hub(fake_hub.endpoint), cache, tmp_path / "state")
    result = pull(target(fake_hub), fetcher, Ollama(ollama.host), RegisterOptions(), Records(tmp_path / "r.json"))
    assert result.registration is not None
    assert result.registration.freed_bytes == cache_repo.files[Q4].size
    info = scan(cache)
    assert info.warnings == []  # no dangling link, no ref to a missing snapshot
    (repo,) = info.repos
    assert {f.file_name for r in repo.revisions for f in r.files} == {Q8}
    assert not [p for p in cache.rglob("*") if p.is_symlink() and not p.exists()]
    assert not list(cache.rglob(f"{cache_repo.files[Q4].sha256()}*"))  # no blob, partial, record or lock


def test_the_last_file_of_a_repository_takes_the_repository_folder_with_it(fake_hub, cache_repo, ollama, tmp_path):
    cache = tmp_path / "hub"
    fetcher = Fetcher(Hub(fake_hub.endpoint), cache, tmp_path / "state")
    pull(target(fake_hub), fetcher, Ollama(ollama.host), RegisterOptions(), Records(tmp_path / "r.json"))
    info = scan(cache)
    assert info.warnings == []
    assert info.repos == frozenset()
    assert not (cache / "models--acme--Cache-GGUF").exists()
    assert not [p for p in cache.rglob("*") if p.is_file()]  # not even a 0-byte .lock


def test_a_dangling_link_left_by_an_older_version_is_cleaned_up(fake_hub, cache_repo, ollama, tmp_path):
    """Before this fix the blob went first and the snapshot link stayed, pointing at nothing."""
    cache = tmp_path / "hub"
    records = Records(tmp_path / "r.json")
    fetcher = Fetcher(Hub(fake_hub.endpoint), cache, tmp_path / "state")
    options = RegisterOptions(keep_gguf=True)
    fetched = pull(target(fake_hub), fetcher, Ollama(ollama.host), options, records).fetched[0]
    blob = fetched.path.resolve()
    blob.unlink()  # what the old `forget` left: a link to a removed blob
    assert scan(cache).warnings != []
    result = pull(target(fake_hub), fetcher, Ollama(ollama.host), RegisterOptions(), records)
    assert result.registration is not None
    assert result.registration.status == "unchanged"
    assert scan(cache).warnings == []


def test_two_pulls_of_one_file_at_once_do_the_work_once(fake_hub, cache_repo, ollama, tmp_path):
    cache = tmp_path / "hub"
    records_path = tmp_path / "r.json"
    start = threading.Barrier(2)
    results, errors = [], []
    served = fake_hub.served(REPO, Q4)

    def run():
        fetcher = Fetcher(Hub(fake_hub.endpoint), cache, tmp_path / "state")
        start.wait()
        try:
            results.append(
                pull(target(fake_hub), fetcher, Ollama(ollama.host), RegisterOptions(), Records.load(records_path))
            )
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    statuses = sorted(r.registration.status for r in results if r.registration)
    assert statuses == ["created", "unchanged"]
    assert fake_hub.served(REPO, Q4) - served == cache_repo.files[Q4].size  # downloaded once
    posts = [p for m, p in ollama.requests if m == "POST" and p.startswith("/api/blobs/")]
    assert len(posts) == 1  # uploaded once
    assert scan(cache).warnings == []
