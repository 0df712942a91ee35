"""End to end: the real CLI (CliRunner, and the installed console script in a subprocess) against the fake
Hub and the fake Ollama, with simulated hardware."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.ollama import FakeOllama
from ggufs import write_gguf

from ollama_fit.cli import cli
from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.hardware.simulate import Simulation, hardware_report
from ollama_fit.hub.fetch import PARTIAL, done_bytes
from ollama_fit.model.catalog import catalog, find_model
from ollama_fit.plan.exact import exact_plan
from ollama_fit.plan.planner import PlanRequest

GiB = 1024**3
MODEL = "qwen3:0.6b"
GPU_ARGS = ["--model", MODEL, "--vram", "3GiB", "--ram", "16GiB", "--ctx", "2048"]
CPU_ARGS = ["--model", MODEL, "--ram", "3GiB", "--ctx", "2048"]


def picked(sim: Simulation, ctx: int) -> str:
    here = Hardware(gpus=(), ram_total_bytes=16 * GiB, ram_available_bytes=16 * GiB, cpu=Cpu("x", 2, 2))
    report = hardware_report(sim, lambda: here)
    return exact_plan(report, PlanRequest(ctx=ctx, model=MODEL), catalog(), None).choice.quant


@pytest.fixture(scope="module")
def qwen_repo(fake_hub, tmp_path_factory):
    """The catalog's Qwen3 0.6B repository with the quants these machines get, real headers, sparse data."""
    folder = tmp_path_factory.mktemp("auto")
    model = find_model(MODEL)
    repo = fake_hub.repo(model.repo)
    quants = {picked(Simulation(vram=("3GiB",), ram="16GiB"), 2048), picked(Simulation(ram="3GiB"), 2048)}
    for quant in quants:
        name = model.file_for(quant)
        repo.add(name, write_gguf(folder / name, model.shape, quant, name="Qwen3 0.6B"))
        repo.files[name].sha256()
    return repo


@pytest.fixture
def ollama():
    server = FakeOllama(version="0.30.1").start()
    yield server
    server.stop()


@pytest.fixture
def env(fake_hub, ollama, tmp_path, monkeypatch):
    values = {
        "HF_ENDPOINT": fake_hub.endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "OLLAMA_HOST": ollama.host,
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "OLLAMA_FIT_STATE_DIR": str(tmp_path / "state"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def auto(*args: str):
    return CliRunner().invoke(cli, ["auto", *args])


def downloaded(fake_hub, repo) -> int:
    return sum(fake_hub.served(repo.repo_id, p) for p in repo.files)


def test_auto_yes_sets_up_a_model_and_a_second_run_does_nothing(fake_hub, qwen_repo, ollama, env):
    result = auto(*GPU_ARGS, "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # the documented shape
    assert doc["status"] == "done"
    assert {"choice", "alternatives", "reasons"} <= set(doc["plan"])
    choice = doc["plan"]["choice"]
    assert choice["model"]["id"] == MODEL
    assert choice["exact"] is True
    reg = doc["pull"]["registration"]
    assert reg["name"] == f"qwen3:0.6b-{choice['quant'].lower()}"
    assert reg["status"] == "created"
    assert doc["smoke_test"]["answered"] is True
    assert doc["smoke_test"]["tokens_per_second"] > 0
    # compared like with like: Ollama 0.30+ reports llama-server's GPU buffers, without the GPU's own context
    gpu_context = sum(d["overhead_bytes"] for d in choice["memory"]["devices"])
    assert doc["observation"]["predicted_device_bytes"] == choice["memory"]["device_bytes"] - gpu_context
    assert doc["observation"]["observed_ctx"] == 2048  # /api/ps: the context Ollama really runs it with
    assert doc["observation_stored"] is False  # simulated hardware teaches nothing about this machine
    assert doc["run"] == f"ollama run {reg['name']}"
    model = ollama.models[reg["name"]]
    assert model.parameters == {"num_ctx": 2048}
    assert list(model.files) == [find_model(MODEL).file_for(choice["quant"])]
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert {"start", "done"} <= {e["event"] for e in events}
    before = downloaded(fake_hub, qwen_repo)
    again = auto(*GPU_ARGS, "--yes")
    assert again.exit_code == 0, again.output
    assert "already registered from these files: nothing to do" in again.stdout
    assert downloaded(fake_hub, qwen_repo) == before  # not even the header: it is cached by its sha256


def test_a_registered_model_at_another_context_is_an_update_to_confirm(fake_hub, qwen_repo, ollama, env):
    assert auto(*GPU_ARGS, "--yes").exit_code == 0
    name = next(iter(ollama.models))
    before = downloaded(fake_hub, qwen_repo)
    other = [a if a != "2048" else "1024" for a in GPU_ARGS]  # the same pick, at a smaller context
    ask = auto(*other, "--json")  # no terminal to ask on: the change is stated, not made
    doc = json.loads(ask.stdout)
    assert doc["status"] == "needs-confirmation"
    assert ollama.models[name].parameters == {"num_ctx": 2048}
    done = auto(*other, "--yes", "--json")
    assert json.loads(done.stdout)["pull"]["registration"]["status"] == "updated"
    assert ollama.models[name].parameters == {"num_ctx": 1024}
    assert downloaded(fake_hub, qwen_repo) == before  # re-created from the blobs Ollama holds


def test_dry_run_and_no_tty_download_nothing(fake_hub, qwen_repo, ollama, env):
    before = downloaded(fake_hub, qwen_repo)
    dry = auto(*GPU_ARGS, "--dry-run", "--offline")
    assert dry.exit_code == 0
    assert "Pick" in dry.stdout
    assert "Dry run: nothing downloaded" in dry.stdout
    ask = auto(*GPU_ARGS, "--offline")
    assert ask.exit_code == 0
    assert "No terminal to ask on" in ask.stderr
    assert json.loads(auto(*GPU_ARGS, "--offline", "--json").stdout)["status"] == "needs-confirmation"
    assert downloaded(fake_hub, qwen_repo) == before
    assert ollama.models == {}


def test_ollama_down_stops_before_the_download(fake_hub, qwen_repo, env, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    before = downloaded(fake_hub, qwen_repo)
    result = auto(*GPU_ARGS, "--yes", "--offline")
    assert result.exit_code == 11
    assert "Ollama is not running" in result.stderr
    assert downloaded(fake_hub, qwen_repo) == before


def test_too_small_disk_stops_before_the_download(fake_hub, qwen_repo, ollama, env, monkeypatch):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100 * 1024**2))
    before = downloaded(fake_hub, qwen_repo)
    result = auto(*GPU_ARGS, "--yes", "--offline")
    assert result.exit_code == 9
    assert "not enough disk space" in result.stderr
    assert downloaded(fake_hub, qwen_repo) == before


def test_gpu_less_machine_plans_on_ram(fake_hub, qwen_repo, ollama, env):
    result = auto(*CPU_ARGS, "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["plan"]["choice"]["placement"]["kind"] == "cpu"
    assert doc["plan"]["choice"]["memory"]["device_bytes"] == 0
    assert doc["smoke_test"]["answered"] is True
    assert doc["observation"] is None  # nothing in VRAM to learn from


def test_smoke_test_failure_is_reported_and_the_model_stays(fake_hub, qwen_repo, ollama, env):
    ollama.generate_text = ""
    result = auto(*GPU_ARGS, "--yes")
    assert result.exit_code == 0, result.output
    assert "smoke test FAILED" in result.stdout
    assert len(ollama.models) == 1


def test_llama_cpp_target_keeps_the_file_and_prints_the_command(fake_hub, qwen_repo, env):
    result = auto(*GPU_ARGS, "--yes", "--target", "llama.cpp", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    argv = doc["llama_server"]["argv"]
    assert argv[:2] == ["llama-server", "-m"]
    assert Path(argv[2]).exists()
    assert argv[argv.index("-c") + 1] == "2048"


def test_ctrl_c_during_download_then_resume(fake_hub, qwen_repo, ollama, env):
    """The installed console script, interrupted with SIGINT mid-download, resumes on the next run."""
    exe = shutil.which("ollama-fit", path=os.path.dirname(sys.executable))
    cmd = [exe, "auto", *GPU_ARGS, "--yes", "--json"]
    run_env = os.environ | env
    fake_hub.delay = 0.002
    try:
        proc = subprocess.Popen(cmd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        partial = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(Path(env["HF_HOME"]).rglob(f"*{PARTIAL}"))
            if found and done_bytes(found[0]) > 32 * 1024**2:
                partial = found[0]
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        fake_hub.delay = 0.0
    assert partial is not None
    assert proc.returncode == 130
    assert "Interrupted: run the same command again to resume" in err
    kept = done_bytes(partial)  # the partial is preallocated: its range record says what is there
    assert ollama.models == {}
    done = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "done"
    assert doc["pull"]["downloaded_bytes"] == qwen_repo.files[doc["pull"]["files"][0]].size - kept
