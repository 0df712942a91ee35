"""serve-cmd and inspect --gpu-layers: local files (split ones too), offline use of the cache, and -ngl /
--tensor-split that mean exactly the planned split (llama.cpp's load_tensors rule, estimate.split_for_ngl)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_shape
from ggufs import write_gguf

from ollama_fit.cli import cli
from ollama_fit.memory.estimate import Runtime, estimate, split_for_ngl
from ollama_fit.model.spec import rebuild
from ollama_fit.placement.offload import Placement
from ollama_fit.plan.inspect import local_shards, local_spec
from ollama_fit.runtime.llama_server import gpu_args, tensor_split

GiB, MiB = 1024**3, 1024**2
SHAPE = tiny_shape(n_layer=8, n_embd=512, n_ff=1024, n_vocab=4000)
REPO = "acme/Tiny-GGUF"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def argv_of(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["argv"]


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def ngl_of(result) -> str | None:
    """-ngl as printed, or (where llama.cpp's fit places the model and none is printed) as pinned."""
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    return flag(doc["argv"], "-ngl") or flag(doc["pinned_flags"] or [], "-ngl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    single = write_gguf(folder / "Tiny-Q8_0.gguf", SHAPE, "Q8_0")
    names = [t.name for t in rebuild(SHAPE, "Q8_0").tensors]
    half = len(names) // 2
    shards = [
        write_gguf(folder / f"Tiny-Q8_0-0000{i + 1}-of-00002.gguf", SHAPE, "Q8_0", tensors_only=tuple(p), split=(i, 2))
        for i, p in enumerate((names[:half], names[half:]))
    ]
    return single, shards


def test_serve_cmd_takes_a_local_file(tiny):
    argv = argv_of(run("serve-cmd", str(tiny[0]), "--ram", "8GiB", "--ctx", "4096", "--port", "8111", "--json"))
    assert argv[:3] == ["llama-server", "-m", str(tiny[0])]
    assert (flag(argv, "-c"), flag(argv, "-np"), flag(argv, "-ngl"), flag(argv, "--port")) == ("4096", "1", "0", "8111")
    hf = json.loads(run("serve-cmd", str(tiny[0]), "--ram", "8GiB", "--json").stdout)["hf_argv"]
    assert hf is None  # a local file has no Hub reference to offer


def test_serve_cmd_takes_the_first_shard_and_plans_the_whole_model(tiny):
    single, shards = tiny
    gpu = argv_of(run("serve-cmd", str(shards[0]), "--vram", "8GiB", "--ram", "8GiB", "--json"))
    assert gpu[2] == str(shards[0])
    assert flag(gpu, "-ngl") == str(SHAPE.n_layer + 1)  # every layer and the output layer: both shards' tensors
    # the weights planned from the two shards (the spec serve-cmd builds) are the single file's, tensor by tensor
    split = local_spec(local_shards(shards[0]))
    alone = json.loads(run("inspect", str(single), "--vram", "8GiB", "--ram", "8GiB", "--json").stdout)
    one = local_spec([single])
    assert split.weights_bytes == alone["estimates"][0]["memory"]["weights_bytes"] == one.weights_bytes > 0
    assert (split.layer_bytes, split.output_bytes) == (one.layer_bytes, one.output_bytes)
    # and a GPU 3 layers short gets the same partial offload and context from either: no shard's weights lost
    sim = ["--ram", "8GiB", "--headroom", "0", "--ctx", "4096", "--flash-attn", "on"]
    full = json.loads(run("inspect", str(single), "--vram", "8GiB", *sim, "--json").stdout)["estimates"][0]["memory"]
    vram = full["device_bytes"] - 3 * (one.layer_bytes[0] + full["kv_bytes"] // SHAPE.n_layer)
    sim += ["--vram", f"{vram + 1000}B"]
    from_single = run("serve-cmd", str(single), *sim, "--json")
    from_split = run("serve-cmd", str(shards[0]), *sim, "--json")
    assert ngl_of(from_split) == ngl_of(from_single) == str(SHAPE.n_layer - 3 + 1)
    assert argv_of(from_split)[3:] == argv_of(from_single)[3:]
    shards[1].rename(shards[1].with_suffix(".moved"))
    try:
        missing = run("serve-cmd", str(shards[0]), "--ram", "8GiB")
        assert missing.exit_code == 8
        assert "00002-of-00002.gguf is missing" in missing.stderr
        assert "Hint:" in missing.stderr
    finally:
        shards[1].with_suffix(".moved").rename(shards[1])


def test_serve_cmd_partial_offload_flags_mean_the_planned_split(tiny):
    """A GPU a few layers too small: the planned split (the last layers on the GPU) is what -ngl N means."""
    local = str(tiny[0])
    sim = ["--ram", "8GiB", "--headroom", "0", "--ctx", "4096", "--flash-attn", "on"]
    full = json.loads(run("inspect", local, "--vram", "8GiB", *sim, "--json").stdout)["estimates"][0]["memory"]
    spec = rebuild(SHAPE, "Q8_0")
    per_layer = spec.layer_bytes[0] + full["kv_bytes"] // SHAPE.n_layer  # weights and KV of one layer
    vram = full["device_bytes"] - 3 * per_layer + 1000
    sim += ["--vram", f"{vram}B"]
    planned = json.loads(run("inspect", local, *sim, "--json").stdout)["estimates"][0]
    assert planned["placement"]["kind"] == "partial", planned
    assert planned["memory"]["gpu_layers"] == SHAPE.n_layer - 3
    served = run("serve-cmd", local, *sim, "--json")
    assert "-ngl" not in argv_of(served)  # llama-server's fit decides the same itself
    ngl = ngl_of(served)  # pinned: -ngl N means the planned split
    assert ngl == str(planned["memory"]["gpu_layers"] + 1) == str(planned["placement"]["gpu_layers"])
    same = json.loads(run("inspect", local, *sim, "--gpu-layers", ngl, "--json").stdout)["estimates"][0]
    assert same["memory"]["devices"] == planned["memory"]["devices"]
    assert same["memory"]["host"] == planned["memory"]["host"]


@pytest.mark.parametrize("ngl", [0, 1, 4, 8, 9, 99])
def test_inspect_gpu_layers_shows_that_split(tiny, ngl):
    doc = json.loads(run("inspect", str(tiny[0]), "--vram", "8GiB", "--gpu-layers", str(ngl), "--json").stdout)
    assert doc["gpu_layers"] == ngl
    mem = doc["estimates"][0]["memory"]
    repeating = max(0, min(ngl, SHAPE.n_layer + 1) - 1)
    assert mem["gpu_layers"] == repeating
    assert mem["host"]["layers"] == SHAPE.n_layer - repeating
    spec = rebuild(SHAPE, "Q8_0")
    if ngl == 0:
        assert mem["devices"] == []
    else:
        layers = range(SHAPE.n_layer - repeating, SHAPE.n_layer)
        assert mem["devices"][0]["weights_bytes"] == sum(spec.layer_bytes[i] for i in layers) + spec.output_bytes


def test_inspect_gpu_layers_text_and_bad_values(tiny):
    text = run("inspect", str(tiny[0]), "--vram", "8GiB", "--gpu-layers", "5")
    assert text.exit_code == 0, text.output
    assert "-ngl 5" in text.stdout
    negative = run("inspect", str(tiny[0]), "--vram", "8GiB", "--gpu-layers", "-1")
    assert negative.exit_code == 3
    assert "Hint:" in negative.stderr
    no_gpu = run("inspect", str(tiny[0]), "--backend", "cpu", "--gpu-layers", "3")
    assert no_gpu.exit_code == 3
    assert "needs a GPU" in no_gpu.stderr


@pytest.mark.parametrize("split", [(3,), (2, 6), (1, 3, 4), (5, 1)])
def test_gpu_args_reproduce_the_split_in_llama_cpp(split):
    spec = rebuild(SHAPE, "Q8_0")
    est = estimate(spec, Runtime(), split=split)
    indices = tuple(range(len(split)))
    args = gpu_args(Placement("multi-gpu" if len(split) > 1 else "partial", est, indices, None), len(split))
    ngl = int(flag(args, "-ngl"))
    weights = [float(w) for w in (flag(args, "--tensor-split") or "1").split(",")]
    assert split_for_ngl(SHAPE.n_layer, ngl, weights) == (split, len(split) - 1)


def test_gpu_args_keep_a_single_gpu_plan_on_its_gpu():
    spec = rebuild(SHAPE, "Q8_0")
    est = estimate(spec, Runtime())
    assert gpu_args(Placement("gpu", est, (0,), None), 1) == ["-ngl", "9"]
    assert gpu_args(Placement("gpu", est, (1,), None), 2) == ["-ngl", "9", "-sm", "none", "-mg", "1"]
    two = estimate(spec, Runtime(), split=(4, 4))
    assert flag(gpu_args(Placement("multi-gpu", two, (0, 2), None), 3), "--tensor-split") == "7,0,11"
    assert tensor_split([4, 4]) == [7, 11]


@pytest.fixture
def pulled(fake_hub, tiny, tmp_path, monkeypatch):
    """The tiny model on the fake Hub, pulled once into an empty cache."""
    fake_hub.repo(REPO).add("Tiny-Q8_0.gguf", tiny[0])
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    first = run("pull", f"hf.co/{REPO}:Q8_0", "--target", "llama.cpp", "--ram", "8GiB", "--json")
    assert first.exit_code == 0, first.output
    return json.loads(first.stdout)


def test_pull_and_serve_cmd_work_offline_from_the_cache(pulled, fake_hub, monkeypatch):
    path = pulled["local_files"][0]
    assert pulled["llama_server"]["argv"][2] == path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(fake_hub.requests)
    again = run("pull", f"hf.co/{REPO}:Q8_0", "--target", "llama.cpp", "--ram", "8GiB", "--json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.stdout)
    assert doc["reused"] is True
    assert doc["llama_server"]["argv"][2] == path
    serve = argv_of(run("serve-cmd", f"hf.co/{REPO}:Q8_0", "--ram", "8GiB", "--json"))
    assert serve[2] == path
    assert len(fake_hub.requests) == before  # not one request: the cache alone
    absent = run("serve-cmd", "hf.co/acme/Not-Cached-GGUF:Q8_0", "--ram", "8GiB")
    assert absent.exit_code == 7
    assert "HF_HUB_OFFLINE" in absent.stderr


def test_offline_pull_refuses_a_corrupt_cached_file(pulled, monkeypatch):
    blob = Path(pulled["local_files"][0]).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = run("pull", f"hf.co/{REPO}:Q8_0", "--target", "llama.cpp", "--ram", "8GiB")
    assert again.exit_code == 7  # the blob fails its sha256 and cannot be downloaded again offline
    # what pull prints: the check of the cached copy against its sha256 failed, then why no new copy can come
    assert "Tiny-Q8_0.gguf: the cached copy is corrupt (sha256 mismatch)" in again.stderr
    assert "downloading again" not in again.stderr  # offline: it cannot
    assert "Tiny-Q8_0.gguf: its cached copy was corrupt (sha256 mismatch) and HF_HUB_OFFLINE is set" in again.stderr
    assert "Hint: unset HF_HUB_OFFLINE" in again.stderr
    assert not blob.exists()  # the corrupt copy is not kept to be served later
    served = run("serve-cmd", f"hf.co/{REPO}:Q8_0", "--ram", "8GiB", "--json")
    assert served.exit_code == 7, served.output  # nothing left in the cache to serve offline
    assert pulled["local_files"][0] not in served.stdout


def _older_snapshot(repo_dir: Path, folder: Path, age: float) -> Path:
    """A second snapshot, `age` seconds older than now, as huggingface_hub lays one out: an earlier upload of
    Tiny-Q8_0.gguf (another file, another blob) beside a quant the newest snapshot no longer has."""
    old = write_gguf(folder / "old-Tiny-Q8_0.gguf", tiny_shape(n_layer=4, n_embd=256), "Q8_0")
    blob = repo_dir / "blobs" / hashlib.sha256(old.read_bytes()).hexdigest()
    old.rename(blob)
    snapshot = repo_dir / "snapshots" / ("0" * 40)
    snapshot.mkdir()
    for name in ("Tiny-Q8_0.gguf", "Tiny-Q4_K_M.gguf"):
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    then = time.time() - age
    for path in (blob, snapshot):
        os.utime(path, (then, then))
    return snapshot


def test_offline_listing_without_a_ref_uses_the_newest_snapshot(pulled, tmp_path, monkeypatch):
    from ollama_fit.provision.pull import cached_files

    cache = tmp_path / "hf" / "hub"
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    newest = Path(pulled["local_files"][0]).parent
    older = _older_snapshot(repo_dir, tmp_path, age=3600)
    assert older.stat().st_mtime < newest.stat().st_mtime
    (repo_dir / "refs" / "main").unlink()
    files = cached_files(cache, REPO)
    assert [(f.path, f.size) for f in files] == [("Tiny-Q8_0.gguf", pulled["bytes"])]
    assert files[0].sha256 == Path(pulled["local_files"][0]).resolve().name
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    serve = argv_of(run("serve-cmd", f"hf.co/{REPO}:Q8_0", "--ram", "8GiB", "--json"))
    assert serve[2] == pulled["local_files"][0]
    # the choice follows the mtime, not the folder names: once the other snapshot is the newer, it is listed
    later = newest.stat().st_mtime + 60
    os.utime(older, (later, later))
    listed = {f.path: f for f in cached_files(cache, REPO)}
    assert sorted(listed) == ["Tiny-Q4_K_M.gguf", "Tiny-Q8_0.gguf"]
    # and the file served is the listed one (its blob), not another snapshot's file of the same name
    served = argv_of(run("serve-cmd", f"hf.co/{REPO}:Q8_0", "--ram", "8GiB", "--json"))
    assert Path(served[2]).resolve().name == listed["Tiny-Q8_0.gguf"].sha256
    assert Path(served[2]).parent == older
