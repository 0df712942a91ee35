"""`plan` reads the pick's GGUF header on the Hub (the fake one) and plans again with exact figures."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from ggufs import write_gguf

from ollama_fit.cli import cli
from ollama_fit.hardware.model import Cpu, Hardware, ProbeReport, budget
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.hub.repos import Hub
from ollama_fit.model.catalog import catalog, find_model
from ollama_fit.plan.exact import exact_plan
from ollama_fit.plan.planner import PlanRequest

GiB = 1024**3
HERE = Hardware(gpus=(), ram_total_bytes=4 * GiB, ram_available_bytes=4 * GiB, cpu=Cpu("Test CPU", 8, 16))
SLOW = 120  # seconds: the fake Hub answers at once; a busy machine must not turn that into a fallback
ARGS = ["--family", "qwen3", "--vram", "2GiB", "--ram", "5GiB", "--min-speed", "0"]


def report() -> ProbeReport:
    hw = simulate(Simulation(vram=("2GiB",), ram="5GiB"), lambda: HERE)
    return ProbeReport(hw, budget(hw))


def request() -> PlanRequest:
    return PlanRequest(family="qwen3", min_speed=0)


@pytest.fixture(scope="module")
def qwen_repos(fake_hub, tmp_path_factory):
    """The catalog's pick on a 2 GiB GPU is Qwen3 1.7B; its published file is served by the fake Hub."""
    folder = tmp_path_factory.mktemp("qwen")
    pick = exact_plan(report(), request(), catalog(), None).choice
    assert pick.model.id == "qwen3:1.7b"
    model = find_model("qwen3:1.7b")
    name = model.file_for(pick.quant)
    repo = fake_hub.repo(model.repo)
    repo.add(name, write_gguf(folder / name, model.shape, pick.quant, name="Qwen3 1.7B"))
    return pick


def test_plan_uses_the_exact_header_and_resolves_the_files(fake_hub, qwen_repos):
    result = exact_plan(report(), request(), catalog(), Hub(fake_hub.endpoint, timeout=SLOW))
    choice = result.choice.to_dict()
    assert choice["exact"] is True
    assert choice["source"]["resolved"] is True
    assert choice["source"]["files"] == [find_model("qwen3:1.7b").file_for(qwen_repos.quant)]
    assert any("are exact (GGUF header of unsloth/Qwen3-1.7B-GGUF/" in r for r in result.reasons)
    assert all(a.to_dict()["exact"] is False for a in result.alternatives)


def test_a_bigger_real_file_moves_the_pick(fake_hub, qwen_repos, tmp_path):
    """The publisher's file is larger than the catalog's shapes say: the exact figures decide."""
    model = find_model("qwen3:1.7b")
    name = model.file_for(qwen_repos.quant)
    bloated = replace(model.shape, n_ff=model.shape.n_ff * 2)
    fake_hub.repo("acme/Bloated-GGUF").add(name, write_gguf(tmp_path / name, bloated, qwen_repos.quant))
    # the other models point at repositories that do not exist: their figures stay the catalog's
    models = [replace(m, repo="acme/Bloated-GGUF" if m.id == model.id else "acme/Absent-GGUF") for m in catalog()]
    result = exact_plan(report(), request(), models, Hub(fake_hub.endpoint, timeout=SLOW))
    assert (result.choice.model.id, result.choice.quant) != ("qwen3:1.7b", qwen_repos.quant)


def test_unreachable_hub_falls_back_to_the_catalog_and_says_so():
    result = exact_plan(report(), request(), catalog(), Hub("http://127.0.0.1:9", timeout=2))
    assert result.choice.to_dict()["exact"] is False
    assert any("catalog's published shapes (cannot reach" in r for r in result.reasons)


def test_cli_plan_exact_and_offline(fake_hub, qwen_repos, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    doc = json.loads(CliRunner().invoke(cli, ["plan", *ARGS, "--json"]).stdout)
    assert doc["choice"]["exact"] is True
    offline = json.loads(CliRunner().invoke(cli, ["plan", *ARGS, "--offline", "--json"]).stdout)
    assert offline["choice"]["exact"] is False
    assert any("Hub not consulted" in r for r in offline["reasons"])


def test_a_quant_the_repository_does_not_publish_is_replaced(fake_hub, tmp_path):
    """The catalog expects F16; the publisher has BF16 (same size) and Q8_0: the plan uses what exists."""
    model = find_model("qwen3:0.6b")
    repo = fake_hub.repo("acme/OnlyBF16-GGUF")
    for quant in ("BF16", "Q8_0"):
        name = f"Qwen3-0.6B-{quant}.gguf"
        repo.add(name, write_gguf(tmp_path / name, model.shape, quant))
    models = [replace(m, repo="acme/OnlyBF16-GGUF") if m.id == model.id else m for m in catalog()]
    hw = simulate(Simulation(vram=("24GiB",), ram="32GiB"), lambda: HERE)
    rep = ProbeReport(hw, budget(hw))
    catalog_pick = exact_plan(rep, PlanRequest(model="qwen3:0.6b"), models, None).choice
    assert catalog_pick.quant == "F16"
    exact = exact_plan(rep, PlanRequest(model="qwen3:0.6b"), models, Hub(fake_hub.endpoint, timeout=SLOW)).choice
    assert exact.quant == "BF16"
    assert exact.to_dict()["exact"] is True
    assert exact.to_dict()["source"]["files"] == ["Qwen3-0.6B-BF16.gguf"]
