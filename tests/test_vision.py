"""Vision: a multimodal pick comes with its repository's projector (mmproj*.gguf) for Ollama 0.30 and newer,
planned where Ollama puts it (the GPU when it has the projector + 1 GiB free, else RAM), downloaded and verified
with the model, registered beside it; `--text-only` and older Ollama versions leave it out.

The repository is the catalog's Gemma 3 4B (a multimodal model used by no other test of the fake Hub), with a
real tensor table, sparse data and a 512 MiB projector file.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fakes.ollama import FakeOllama
from ggufs import write_gguf

from ollama_fit.cli import cli
from ollama_fit.hardware.model import Gpu
from ollama_fit.hub.repos import HubFile, projector
from ollama_fit.model.catalog import find_model
from ollama_fit.runtime.ollama import projector_on_gpu
from ollama_fit.units import GiB, MiB

MODEL = "gemma3:4b"
MMPROJ = "mmproj-google_gemma-3-4b-it-f16.gguf"
MMPROJ_BYTES = 512 * MiB
MACHINE = ["--model", MODEL, "--vram", "8GiB", "--ram", "16GiB", "--ctx", "4096"]


def test_the_f16_projector_is_chosen():
    files = [
        HubFile("google_gemma-3-4b-it-Q4_K_M.gguf", 3 * GiB),
        HubFile("mmproj-google_gemma-3-4b-it-f32.gguf", 2 * MMPROJ_BYTES),
        HubFile("mmproj-google_gemma-3-4b-it-bf16.gguf", MMPROJ_BYTES),
        HubFile(MMPROJ, MMPROJ_BYTES),
    ]
    assert projector(files) == files[3]
    assert projector(files[:1]) is None  # a text-only repository


def test_the_projector_goes_to_the_gpu_only_with_a_gib_to_spare():
    def gpu(free: int) -> Gpu:
        return Gpu(0, "nvidia", "card", 8 * GiB, free)

    assert projector_on_gpu([gpu(2 * GiB)], MMPROJ_BYTES)
    assert not projector_on_gpu([gpu(GiB + MMPROJ_BYTES - 1)], MMPROJ_BYTES)  # less than it + 1 GiB
    assert not projector_on_gpu([], MMPROJ_BYTES)  # CPU only: RAM


@pytest.fixture(scope="module")
def gemma_repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vision")
    model = find_model(MODEL)
    repo = fake_hub.repo(model.repo)
    name = model.file_for("Q4_K_M")
    repo.add(name, write_gguf(folder / name, model.shape, "Q4_K_M", name="Gemma 3 4B"))
    mmproj = folder / MMPROJ
    with mmproj.open("wb") as f:  # what the planner reads of a projector is its size
        f.write(b"GGUF")
        f.truncate(MMPROJ_BYTES)
    repo.add(MMPROJ, mmproj)
    yield repo
    fake_hub.repos.pop(model.repo)


@pytest.fixture
def env(fake_hub, gemma_repo, tmp_path, monkeypatch):
    server = FakeOllama(version="0.32.15").start()
    values = {
        "HF_ENDPOINT": fake_hub.endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "OLLAMA_HOST": server.host,
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "OLLAMA_FIT_STATE_DIR": str(tmp_path / "state"),
        "OLLAMA_FIT_CACHE_DIR": str(tmp_path / "cache"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    yield server
    server.stop()


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_a_multimodal_pick_plans_its_projector_on_the_gpu(env):
    plain = json.loads(run("plan", *MACHINE, "--text-only", "--json").stdout)
    assert plain["vision"] is None
    result = run("plan", *MACHINE, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["vision"] == {"repo": find_model(MODEL).repo, "file": MMPROJ, "bytes": MMPROJ_BYTES, "device": "GPU 0"}
    # the projector's weights are kept out of the GPU's budget, as Ollama's fit target keeps them
    assert doc["hardware"]["budget"]["gpus"][0]["headroom_bytes"] == GiB + MMPROJ_BYTES
    assert plain["hardware"]["budget"]["gpus"][0]["headroom_bytes"] == GiB
    text = run("plan", *MACHINE).stdout
    assert f"vision: yes (+512.0 MiB on GPU 0, {MMPROJ})" in text
    assert "projector 512.0 MiB" in text  # in the GPU's memory bar, beside the model's weights
    assert "of 7.0 GiB usable" in text  # the 8 GiB card less the 1 GiB headroom, the projector counted in it


def test_older_ollama_gets_no_projector(env):
    doc = json.loads(run("plan", *MACHINE, "--ollama-version", "0.24.0", "--json").stdout)
    assert doc["vision"] is None  # its Go engine refused a projector beside the model


def test_auto_downloads_and_registers_the_projector_with_the_model(env):
    result = run("auto", *MACHINE, "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    reg = doc["pull"]["registration"]
    assert MMPROJ in reg["files"]
    assert find_model(MODEL).file_for("Q4_K_M") in reg["files"]
    assert doc["pull"]["projector"] == MMPROJ
    model = env.models[reg["name"]]
    assert set(model.files) == set(reg["files"])  # Ollama got both, under the verified sha256
    assert reg["files"][MMPROJ].replace(":", "-") in env.blobs
    # the same files again: nothing to do, the projector included in what "the same" means
    again = json.loads(run("auto", *MACHINE, "--yes", "--json").stdout)
    assert again["status"] == "unchanged"


def test_text_only_pull_leaves_the_projector_out(env):
    result = run("pull", *MACHINE, "--text-only", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["projector"] is None
    assert MMPROJ not in doc["registration"]["files"]
