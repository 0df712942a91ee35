"""doctor, list, list --installed, completion, colors, and the learning loop."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from fakes.ollama import Blob, FakeOllama, Model

from ollama_fit.cli import cli, paint
from ollama_fit.hardware.model import Cpu, Gpu, Hardware, ProbeReport, budget
from ollama_fit.model.catalog import catalog
from ollama_fit.ollama.learning import MAX_CORRECTION, Observation, Observations
from ollama_fit.plan.planner import PlanRequest, plan

GiB, MiB = 1024**3, 1024**2


@pytest.fixture
def ollama():
    server = FakeOllama(version="0.12.10").start()
    yield server
    server.stop()


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_doctor_all_good_then_problems_with_fixes(fake_hub, ollama, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("OLLAMA_HOST", ollama.host)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    good = run("doctor", "--json")
    assert good.exit_code == 0, good.output
    doc = json.loads(good.stdout)
    assert doc["ok"] is True
    areas = {c["area"] for c in doc["checks"]}
    assert {"CPU/RAM", "Ollama", "disk", "Hugging Face"} <= areas
    assert any("Ollama 0.12.10" in c["detail"] for c in doc["checks"])
    assert any(c["status"] == "warn" and "split GGUF" in c["detail"] for c in doc["checks"])
    assert "hf_secret_value_123" not in good.stdout + good.stderr  # the token is never shown
    assert any("HF token: set (not shown)" in c["detail"] for c in doc["checks"])
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    bad = run("doctor")
    assert bad.exit_code == 12
    assert "[fail] Ollama" in bad.stdout
    assert "fix: start it with `ollama serve`" in bad.stdout


def test_list_catalog_for_a_simulated_card():
    result = run("list", "--gpu", "RTX 4090", "--task", "coding", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["models"]
    assert all("coding" in r["model"]["capabilities"] for r in rows)
    fitting = [r for r in rows if r["fits"]]
    assert fitting
    # the largest coding model of the current generation that fits (older generations rank at 2/3 their size)
    assert fitting[0]["model"]["id"] == "gemma4:31b"
    assert all(r["device_bytes"] <= 23 * GiB for r in fitting if r["where"] == "gpu")
    assert all(r["why_not"] for r in rows if not r["fits"])
    table = run("list", "--family", "gemma3", "--vram", "8GiB").stdout
    assert "gemma3:4b" in table
    assert "qwen3" not in table


def test_list_tells_too_slow_from_does_not_fit():
    rows = json.loads(run("list", "--all", "--gpu", "RTX 4090", "--ram", "64GiB", "--json").stdout)["models"]
    by_id = {r["model"]["id"]: r for r in rows}
    assert by_id["llama3.3:70b"]["too_slow"]  # fits partly offloaded, at ~1.5 tok/s
    assert not by_id["qwen3:235b-a22b"]["too_slow"]  # does not fit at all
    table = run("list", "--gpu", "RTX 4090", "--ram", "64GiB", "--task", "chat").stdout
    assert "too slow" in table
    assert "does not" in table


def test_list_installed(ollama, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", ollama.host)
    ollama.blobs["sha256-" + "2" * 64] = Blob(4 * GiB, b"GGUF")
    ollama.models["big:latest"] = Model(
        "big:latest", {"m.gguf": "sha256:" + "2" * 64}, {"num_ctx": 8192}, "chatml", "e" * 64
    )
    result = run("list", "--installed", "--vram", "8GiB", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["models"]
    assert row["name"] == "big:latest"
    assert row["ctx"] == 8192
    assert row["need_bytes"] > 4 * GiB
    assert row["fits"] is True
    assert run("list", "--installed", "--vram", "4GiB", "--ram", "2GiB", "--json").stdout.count('"fits": false') == 1


def test_completion_scripts():
    for shell in ("bash", "zsh", "fish"):
        result = run("completion", shell)
        assert result.exit_code == 0
        assert "_OLLAMA_FIT_COMPLETE" in result.stdout


def test_no_color(monkeypatch):
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in paint("Error:", "red")
    monkeypatch.setenv("NO_COLOR", "1")
    assert paint("Error:", "red") == "Error:"


def _machine() -> Hardware:
    gpu = Gpu(
        0,
        "nvidia",
        "NVIDIA GeForce RTX 4090",
        24 * GiB,
        24 * GiB,
        bandwidth_gbs=1008.0,
        compute_capability="8.9",
        source="nvml v2",
    )
    return Hardware((gpu,), 64 * GiB, 60 * GiB, Cpu("x", 8, 16), driver_version="580.1")


def test_learning_from_real_loads_corrects_later_plans(tmp_path):
    hw = _machine()
    report = ProbeReport(hw, budget(hw))
    pinned = {"model": "gemma3:12b", "quant": "Q4_K_M"}  # the same model and quant before and after
    first = plan(report, PlanRequest(**pinned), catalog())
    predicted = first.choice.placement.memory.device_bytes
    store = Observations.load(tmp_path)
    assert store.correction(hw) == (0, "")
    for extra in (300 * MiB, 320 * MiB, 280 * MiB):
        store.record(hw, Observation("m", "Q4_K_M", 8192, predicted, predicted + extra, predicted + extra, 1, 0.0))
    correction, note = Observations.load(tmp_path).correction(hw)
    assert correction == 300 * MiB
    assert "from 3 real load(s)" in note
    second = plan(report, PlanRequest(overhead_correction=correction, correction_note=note, **pinned), catalog())
    assert second.choice.placement.memory.device_bytes == predicted + 300 * MiB
    assert note in second.reasons
    store.record(hw, Observation("m", "Q4_K_M", 8192, predicted, predicted + 20 * GiB, 0, 1, 0.0))
    store.record(hw, Observation("m", "Q4_K_M", 8192, predicted, predicted + 20 * GiB, 0, 1, 0.0))
    store.record(hw, Observation("m", "Q4_K_M", 8192, predicted, predicted + 20 * GiB, 0, 1, 0.0))
    bounded, note = store.correction(hw)
    assert bounded == MAX_CORRECTION  # one odd machine state cannot make plans reckless
    assert "bounded" in note
    other = Hardware((), 64 * GiB, 60 * GiB, Cpu("x", 8, 16))
    assert store.correction(other) == (0, "")  # observations belong to their machine


def test_every_command_has_help_with_examples():
    names = cli.list_commands(click.Context(cli))
    assert {"auto", "plan", "pull", "probe", "inspect", "list", "serve-cmd", "doctor", "completion"} <= set(names)
    for name in names:
        assert cli.get_command(click.Context(cli), name) is not None, name  # each module registers its command
        result = run(name, "--help")
        assert result.exit_code == 0, name
        assert "Examples:" in result.stdout, name


def test_plans_follow_what_the_ollama_server_really_does(ollama):
    from ollama_fit.ollama.client import Ollama
    from ollama_fit.provision.auto import OLLAMA_FA_ARCHS, for_ollama

    client = Ollama(ollama.host)
    old, warnings = for_ollama(PlanRequest(parallel=2), client)  # 0.12.10: before FA auto
    assert old.flash_attn_archs == OLLAMA_FA_ARCHS
    assert any("OLLAMA_NUM_PARALLEL=2" in w for w in warnings)
    quantized, warnings = for_ollama(PlanRequest(kv_type="q8_0"), client)
    assert quantized.flash_attn_archs is None  # planned with flash attention, which the user is told to turn on
    assert any("OLLAMA_KV_CACHE_TYPE=q8_0 and OLLAMA_FLASH_ATTENTION=1" in w for w in warnings)
    hw = _machine()
    report = ProbeReport(hw, budget(hw))
    llama = plan(report, PlanRequest(model="llama3.1:8b", flash_attn_archs=OLLAMA_FA_ARCHS), catalog())
    auto_fa = plan(report, PlanRequest(model="llama3.1:8b"), catalog())
    assert (
        llama.choice.placement.memory.to_dict()["compute_bytes"]
        > auto_fa.choice.placement.memory.to_dict()["compute_bytes"]
    )  # planned without flash attention: the KQ matrix grows with the context
    qwen = plan(report, PlanRequest(model="qwen3:8b", flash_attn_archs=OLLAMA_FA_ARCHS), catalog())
    same = plan(report, PlanRequest(model="qwen3:8b"), catalog())
    assert qwen.choice.placement.memory.device_bytes == same.choice.placement.memory.device_bytes
    ollama.version = "0.30.1"
    new, warnings = for_ollama(PlanRequest(), client)
    assert new.flash_attn_archs is None
    assert warnings == []
    down, warnings = for_ollama(PlanRequest(), Ollama("http://127.0.0.1:9"))
    assert down == PlanRequest()  # unreachable: the pre-flight reports it later


def test_an_installed_hybrid_gets_its_state_and_unified_memory_counts_once():
    from plans import simulated

    from ollama_fit.plan.listing import installed_row

    info = {
        "general.architecture": "qwen35",
        "qwen35.block_count": 32,
        "qwen35.embedding_length": 4096,
        "qwen35.attention.head_count": 16,
        "qwen35.attention.head_count_kv": 4,
        "qwen35.attention.key_length": 256,
        "qwen35.full_attention_interval": 4,
        "qwen35.ssm.conv_kernel": 4,
        "qwen35.ssm.inner_size": 4096,
        "qwen35.ssm.state_size": 128,
        "qwen35.ssm.group_count": 16,
        "qwen35.ssm.time_step_rank": 32,
        "tokenizer.ggml.tokens": [],  # Ollama empties long arrays
    }
    here = Hardware((), 24 * GiB, 24 * GiB, Cpu("x", 8, 16))
    mac = simulated(here, "M4 Pro 24GB")
    row = installed_row("qwen3.5:9b", 6 * GiB, info, 8192, mac)
    state = 24 * 4 * (3 * (4096 + 2 * 16 * 128) + 128 * 4096)  # 24 delta-net layers, one slot
    kv_per_layer = 4 * 512 * 8192 * 2
    # read as a plain transformer it would give all 32 layers a KV cache and none a state
    as_llama = {k.replace("qwen35.", "llama."): v for k, v in info.items() if ".ssm." not in k} | {
        "general.architecture": "llama"
    }
    dense = installed_row("qwen3.5:9b", 6 * GiB, as_llama, 8192, mac)
    assert dense.need_bytes - row.need_bytes == 24 * kv_per_layer - state
    pool = mac.budget.host.usable_bytes
    assert mac.budget.unified_memory
    huge = installed_row("big", pool, info, 8192, mac)  # over the pool, though under GPU share + pool
    assert huge.fits is False  # one pool: the GPU's share is not extra memory


def test_verbose_logs_the_hardware_and_quiet_does_not(monkeypatch, caplog):
    import logging

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    caplog.set_level(logging.DEBUG, logger="ollama_fit")  # pytest's handler stands in for -v's stderr one
    quiet = CliRunner().invoke(cli, ["plan", "--gpu", "RTX 4090", "--json"])
    assert quiet.exit_code == 0
    assert not [r for r in caplog.records if r.name == "ollama_fit"]  # without -v nothing is even logged
    loud = CliRunner().invoke(cli, ["-v", "plan", "--gpu", "RTX 4090", "--json"])
    assert loud.exit_code == 0
    assert any(r.getMessage().startswith("hardware: Hardware(") for r in caplog.records if r.name == "ollama_fit")


def test_list_installed_counts_a_draft_files_context(ollama, monkeypatch, tmp_path):
    """A model created with a draft file (its Modelfile's DRAFT line): Ollama drafts 4 tokens a step unless
    draft_num_predict says otherwise; the draft's weights are in the manifest's size already, its context (KV
    cache, graph, logits) is added when the file can be read here, and said when it cannot."""
    from draft_ggufs import write_dflash_draft

    monkeypatch.setenv("OLLAMA_HOST", ollama.host)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "models"))
    ollama.version = "0.32.15"  # draft files came with llama-server underneath (0.30)
    blobs = tmp_path / "my models" / "blobs"  # Ollama writes the path unquoted, its inner spaces too
    blobs.mkdir(parents=True)
    draft = write_dflash_draft(blobs / ("sha256-" + "4" * 64))
    ollama.blobs["sha256-" + "3" * 64] = Blob(2 * GiB, b"GGUF")
    files = {"m.gguf": "sha256:" + "3" * 64}
    ollama.models["plain:latest"] = Model("plain:latest", files, {"num_ctx": 8192}, "chatml", "a" * 64)
    ollama.models["drafted:latest"] = Model(
        "drafted:latest", files, {"num_ctx": 8192}, "chatml", "b" * 64, draft=str(draft)
    )
    ollama.models["off:latest"] = Model(
        "off:latest", files, {"num_ctx": 8192, "draft_num_predict": 0}, "chatml", "c" * 64, draft=str(draft)
    )
    ollama.models["remote:latest"] = Model(
        "remote:latest", files, {"num_ctx": 8192}, "chatml", "d" * 64, draft="/elsewhere/blobs/sha256-" + "5" * 64
    )
    result = run("list", "--installed", "--vram", "24GiB", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["models"]}
    assert rows["plain:latest"]["draft"] == ""
    assert rows["off:latest"]["draft"] == ""  # draft_num_predict 0: Ollama does not draft
    assert rows["off:latest"]["need_bytes"] == rows["plain:latest"]["need_bytes"]
    assert rows["drafted:latest"]["draft"].startswith("draft-dflash with dflash draft file, 4 tokens")
    assert rows["drafted:latest"]["need_bytes"] > rows["plain:latest"]["need_bytes"] + 64 * 2**20
    assert "not readable here" in rows["remote:latest"]["draft"]
    text = run("list", "--installed", "--vram", "24GiB")
    assert "Speculative decoding:" in text.stdout
    assert "drafted:latest: draft-dflash" in text.stdout
    ollama.version = "0.24.0"  # the Go engine: no drafting at all
    older = {r["name"]: r for r in json.loads(run("list", "--installed", "--vram", "24GiB", "--json").stdout)["models"]}
    assert older["drafted:latest"]["draft"] == ""
