"""pull + register against the fake Hub and the fake Ollama, through the real huggingface_hub and ollama clients."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import tiny_shape
from fakes.ollama import Blob, FakeOllama, Model
from ggufs import write_gguf

from ollama_fit.cli import cli
from ollama_fit.errors import OllamaError
from ollama_fit.model.spec import rebuild
from ollama_fit.ollama.client import Ollama
from ollama_fit.ollama.register import model_name, valid_name

MiB = 1024**2
REPO = "acme/Reg-GGUF"
Q4 = "Reg-Q4_K_M.gguf"
SHARDS = ["Q8_0/Reg-Q8_0-00001-of-00002.gguf", "Q8_0/Reg-Q8_0-00002-of-00002.gguf"]


@pytest.fixture(scope="module")
def reg_repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reg")
    shape = tiny_shape()
    repo = fake_hub.repo(REPO)
    repo.add(Q4, write_gguf(folder / Q4, shape, "Q4_K_M"))
    names = [t.name for t in rebuild(shape, "Q8_0").tensors]
    for i, path in enumerate(SHARDS):
        part = tuple(names[: len(names) // 2] if i == 0 else names[len(names) // 2 :])
        repo.add(path, write_gguf(folder / f"s{i}.gguf", shape, "Q8_0", tensors_only=part, split=(i, 2)))
    bare = fake_hub.repo("acme/Bare-GGUF")
    bare.add("Bare-Q4_K_M.gguf", write_gguf(folder / "bare.gguf", shape, "Q4_K_M", chat_template=None))
    return repo


@pytest.fixture
def ollama():
    server = FakeOllama().start()
    yield server
    server.stop()


@pytest.fixture
def env(fake_hub, ollama, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("OLLAMA_HOST", ollama.host)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama-models"))
    return tmp_path


def pull(*args: str):
    return CliRunner().invoke(cli, ["pull", *args])


def blob_posts(ollama: FakeOllama) -> int:
    return sum(1 for method, path in ollama.requests if method == "POST" and path.startswith("/api/blobs/"))


def test_fresh_registration_then_a_second_run_does_nothing(fake_hub, reg_repo, ollama, env):
    result = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "4096", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    reg = doc["registration"]
    assert reg["name"] == "reg:q4_k_m"
    assert reg["status"] == "created"
    sha = reg_repo.files[Q4].sha256()
    model = ollama.models["reg:q4_k_m"]
    assert model.files == {Q4: f"sha256:{sha}"}
    assert model.parameters == {"num_ctx": 4096}
    assert ollama.blobs[f"sha256-{sha}"].size == reg_repo.files[Q4].size
    # the downloaded copy is gone once Ollama has its own
    assert reg["freed_bytes"] == reg_repo.files[Q4].size
    assert not Path(doc["local_files"][0]).exists()
    assert not list((env / "hf").rglob(sha))
    served, posts = fake_hub.served(REPO, Q4), blob_posts(ollama)
    again = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "4096")
    assert again.exit_code == 0, again.output
    assert "already registered from these files: nothing to do" in again.stdout
    assert fake_hub.served(REPO, Q4) == served  # nothing downloaded
    assert blob_posts(ollama) == posts  # nothing uploaded


def test_name_collision_needs_force(fake_hub, reg_repo, ollama, env):
    ollama.blobs["sha256-" + "1" * 64] = Blob(10, b"GGUF")  # someone else's model, made with `ollama create`
    ollama.models["reg:q4_k_m"] = Model("reg:q4_k_m", {"other.gguf": "sha256:" + "1" * 64}, {}, "chatml", "d" * 64)
    served = fake_hub.served(REPO, Q4)
    refused = pull(f"hf.co/{REPO}:Q4_K_M")
    assert refused.exit_code == 11
    assert "already has a model named reg:q4_k_m (not created by ollama-fit)" in refused.stderr
    assert "--force" in refused.stderr
    assert fake_hub.served(REPO, Q4) == served  # stopped before any download
    forced = pull(f"hf.co/{REPO}:Q4_K_M", "--force")
    assert forced.exit_code == 0, forced.output
    assert "(replaced)" in forced.stdout
    assert ollama.models["reg:q4_k_m"].files == {Q4: f"sha256:{reg_repo.files[Q4].sha256()}"}


def test_custom_name_and_invalid_name(reg_repo, ollama, env):
    assert pull(f"hf.co/{REPO}:Q4_K_M", "--name", "team/reg-test:v1").exit_code == 0
    assert "team/reg-test:v1" in ollama.models
    bad = pull(f"hf.co/{REPO}:Q4_K_M", "--name", "bad.ns/model")
    assert bad.exit_code == 3
    assert "not a valid Ollama model name" in bad.stderr


@pytest.mark.parametrize(
    ("version", "host", "message"),
    [
        (None, "http://127.0.0.1:9", "Ollama is not running at http://127.0.0.1:9"),
        ("0.5.4", None, "Ollama 0.5.4 is too old"),
    ],
)
def test_unusable_server_stops_before_the_download(
    fake_hub, reg_repo, ollama, env, monkeypatch, version, host, message
):
    if version:
        ollama.version = version
    if host:
        monkeypatch.setenv("OLLAMA_HOST", host)
    served = fake_hub.served(REPO, Q4)
    result = pull(f"hf.co/{REPO}:Q4_K_M")
    assert result.exit_code == 11
    assert message in result.stderr
    assert "ollama" in result.stderr.splitlines()[1].lower()  # the hint says how to fix it
    assert fake_hub.served(REPO, Q4) == served


def test_error_mid_create_leaves_no_model_and_a_rerun_finishes(fake_hub, reg_repo, ollama, env):
    ollama.fail_create_after = 2
    failed = pull(f"hf.co/{REPO}:Q4_K_M")
    assert failed.exit_code == 11
    assert "injected failure while creating" in failed.stderr
    assert "reg:q4_k_m" not in ollama.models
    ollama.fail_create_after = None
    served, posts = fake_hub.served(REPO, Q4), blob_posts(ollama)
    done = pull(f"hf.co/{REPO}:Q4_K_M")
    assert done.exit_code == 0, done.output
    assert "reg:q4_k_m" in ollama.models
    assert fake_hub.served(REPO, Q4) == served  # the verified download was kept for the re-run
    assert blob_posts(ollama) == posts  # and the server already had the blob


def test_split_gguf_on_new_and_old_servers(fake_hub, reg_repo, ollama, env):
    served = fake_hub.served(REPO, SHARDS[0])
    old = pull(f"hf.co/{REPO}:Q8_0")
    assert old.exit_code == 11
    assert "cannot import a split GGUF (that needs Ollama 0.30 or newer)" in old.stderr
    assert fake_hub.served(REPO, SHARDS[0]) == served
    ollama.version = "0.30.1"
    new = pull(f"hf.co/{REPO}:Q8_0", "--json")
    assert new.exit_code == 0, new.output
    files = ollama.models["reg:q8_0"].files
    assert sorted(files) == ["Reg-Q8_0-00001-of-00002.gguf", "Reg-Q8_0-00002-of-00002.gguf"]


def test_missing_chat_template_is_warned_about(fake_hub, reg_repo, ollama, env):
    result = pull("hf.co/acme/Bare-GGUF:Q4_K_M")
    assert result.exit_code == 0, result.output
    assert "no chat template" in result.stderr


def test_upload_reads_the_file_once_with_bounded_memory(ollama, tmp_path):
    import hashlib

    path = tmp_path / "big.gguf"
    data = b"GGUF" + os.urandom(32 * MiB)
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    read = []
    client = Ollama(ollama.host)
    ollama.keep_head = 4  # the fake server runs in this process: keep its memory out of the measurement
    tracemalloc.start()
    sent = client.upload(path, digest, on_chunk=read.append)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sent == sum(read) == len(data)  # one pass over the file
    assert peak < 8 * MiB
    assert ollama.blobs["sha256-" + digest[7:]].size == len(data)
    assert client.upload(path, digest) == 0  # HEAD first: not sent again
    with pytest.raises(OllamaError, match="digest mismatch"):
        client.upload(path, "sha256:" + "0" * 64)


@pytest.mark.parametrize(
    ("repo", "quant", "catalog_id", "name"),
    [
        ("unsloth/Qwen3-8B-GGUF", "Q4_K_M", "qwen3:8b", "qwen3:8b-q4_k_m"),
        ("bartowski/google_gemma-3-12b-it-GGUF", "Q4_K_M", None, "gemma-3-12b-it:q4_k_m"),
        ("unsloth/Qwen3-4B-GGUF", "UD-Q2_K_XL", None, "qwen3-4b:ud-q2_k_xl"),
        ("ggml-org/gpt-oss-20b-GGUF", "MXFP4", "gpt-oss:20b", "gpt-oss:20b-mxfp4"),
    ],
)
def test_name_scheme(repo, quant, catalog_id, name):
    assert model_name(repo, quant, catalog_id) == name
    assert valid_name(name)


def test_valid_names():
    assert valid_name("a/b:c")
    assert not valid_name("a.b/c")  # no '.' in the namespace
    assert not valid_name("x" * 81)
    assert not valid_name("a/b/c/d")


def test_serve_cmd_for_a_hub_file_and_after_pull(fake_hub, reg_repo, env):
    doc = json.loads(CliRunner().invoke(cli, ["serve-cmd", f"hf.co/{REPO}:Q4_K_M", "--vram", "8GiB", "--json"]).stdout)
    assert doc["argv"] is None
    assert doc["hf_argv"][:3] == ["llama-server", "-hf", f"{REPO}:Q4_K_M"]
    args = doc["hf_argv"]
    assert args[args.index("-c") + 1] == "8192"
    assert args[args.index("-ngl") + 1] == "5"  # 4 layers + the output layer
    assert args[args.index("-fa") + 1] == "on"
    pulled = pull(
        f"hf.co/{REPO}:Q4_K_M", "--target", "llama.cpp", "--vram", "8GiB", "--ctx", "4096", "--kv-type", "q8_0"
    )
    assert pulled.exit_code == 0, pulled.output
    assert "llama-server -m " in pulled.stdout
    assert "--cache-type-k q8_0 --cache-type-v q8_0" in pulled.stdout
    text = CliRunner().invoke(cli, ["serve-cmd", f"hf.co/{REPO}:Q4_K_M", "--vram", "8GiB"]).stdout
    assert text.startswith("llama-server -m ")
    assert Q4 in text
    cpu = json.loads(CliRunner().invoke(cli, ["serve-cmd", f"hf.co/{REPO}:Q4_K_M", "--json"]).stdout)
    assert cpu["argv"][cpu["argv"].index("-ngl") + 1] == "0"  # this machine has no GPU


@pytest.mark.parametrize("version", ["0.11.0", "0.12.10"])
@pytest.mark.parametrize("after", [0, 3])
def test_create_errors_in_both_stream_styles_leave_nothing(fake_hub, reg_repo, ollama, env, version, after):
    """Before 0.12.6 every stream error is HTTP 200 plus an error line; later ones use the real status
    when nothing was written yet. Either way: no model, no ownership record, and a re-run finishes."""
    ollama.version = version
    ollama.fail_create_after = after
    failed = pull(f"hf.co/{REPO}:Q4_K_M")
    assert failed.exit_code == 11
    assert "injected failure" in failed.stderr
    assert ollama.models == {}
    ollama.fail_create_after = None
    assert pull(f"hf.co/{REPO}:Q4_K_M").exit_code == 0
    assert "reg:q4_k_m" in ollama.models


def test_a_copy_left_by_an_interrupted_run_is_removed_on_the_next(fake_hub, reg_repo, ollama, env):
    first = json.loads(pull(f"hf.co/{REPO}:Q4_K_M", "--keep-gguf", "--json").stdout)
    kept = Path(first["local_files"][0])
    assert kept.exists()
    again = json.loads(pull(f"hf.co/{REPO}:Q4_K_M", "--json").stdout)
    assert again["registration"]["status"] == "unchanged"
    assert again["registration"]["freed_bytes"] == reg_repo.files[Q4].size
    assert not kept.exists()


def test_disk_check_adds_the_download_when_it_shares_ollamas_disk(tmp_path, monkeypatch):
    import shutil

    from ollama_fit.errors import DiskSpaceError
    from ollama_fit.ollama.client import ServerInfo
    from ollama_fit.ollama.register import _check_disk

    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "models"))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=150 * MiB))
    server = ServerInfo("http://127.0.0.1:11434", "0.12.10")
    same = tmp_path.stat().st_dev
    _check_disk(100 * MiB, server, (100 * MiB, same + 1))  # the download lands on another disk: fits
    with pytest.raises(DiskSpaceError, match=r"with the download, on the same disk\): 200\.0 MiB needed, 150\.0 MiB"):
        _check_disk(100 * MiB, server, (100 * MiB, same))
    with pytest.raises(DiskSpaceError, match=r"200\.0 MiB needed"):  # 0.30+ validates with one more copy
        _check_disk(100 * MiB, ServerInfo("http://127.0.0.1:11434", "0.30.0"), (0, same))


def test_a_new_ctx_updates_our_model_without_downloading(fake_hub, reg_repo, ollama, env):
    assert pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "4096").exit_code == 0
    served, posts = fake_hub.served(REPO, Q4), blob_posts(ollama)
    first = ollama.models["reg:q4_k_m"].digest
    again = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "8192", "--json")
    assert again.exit_code == 0, again.output
    reg = json.loads(again.stdout)["registration"]
    assert reg["status"] == "updated"
    assert reg["changes"] == ["num_ctx 4096 -> 8192"]
    assert ollama.models["reg:q4_k_m"].parameters == {"num_ctx": 8192}
    assert ollama.models["reg:q4_k_m"].digest != first
    assert fake_hub.served(REPO, Q4) == served  # nothing downloaded
    assert blob_posts(ollama) == posts  # nothing uploaded: Ollama has the blob
    text = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "16384")
    assert "reg:q4_k_m is registered from these files: updated num_ctx 8192 -> 16384" in text.stdout
    # the update is ours too: the same request again is a no-op, not a foreign model
    same = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "16384")
    assert same.exit_code == 0, same.output
    assert "nothing to do" in same.stdout


def test_a_model_replaced_by_the_user_under_our_name_needs_force(fake_hub, reg_repo, ollama, env):
    assert pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "4096").exit_code == 0
    ours = ollama.models["reg:q4_k_m"]
    # `ollama create reg:q4_k_m` by the user: same weights, their own template and parameters
    ollama.models["reg:q4_k_m"] = Model("reg:q4_k_m", dict(ours.files), {"temperature": 0.2}, "mine", "e" * 64)
    refused = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "4096")
    assert refused.exit_code == 11
    assert "already has a model named reg:q4_k_m (replaced since ollama-fit created it)" in refused.stderr
    assert "--force" in refused.stderr
    assert ollama.models["reg:q4_k_m"].template == "mine"  # untouched
    forced = pull(f"hf.co/{REPO}:Q4_K_M", "--ctx", "4096", "--force")
    assert forced.exit_code == 0, forced.output
    assert "(replaced)" in forced.stdout
    assert ollama.models["reg:q4_k_m"].parameters == {"num_ctx": 4096}
