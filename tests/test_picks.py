"""Picks a user would run (issue 10's machines), placement correctness, and monotonic placement."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plans import assert_fits, run, simulated

from ollama_fit.cli import cli
from ollama_fit.errors import NothingFits
from ollama_fit.hardware.model import Cpu, Hardware, ProbeReport, budget
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.memory.estimate import Runtime
from ollama_fit.model.catalog import catalog, find_model
from ollama_fit.placement.offload import Placement, place
from ollama_fit.plan.planner import PlanRequest, plan

GiB = 1024**3
HERE = Hardware(gpus=(), ram_total_bytes=24 * GiB, ram_available_bytes=24 * GiB, cpu=Cpu("Test CPU", 8, 16, 50.0))


def report(*gpus: str, vram: tuple[str, ...] = (), ram: str | None = None) -> ProbeReport:
    return simulated(HERE, *gpus, vram=vram, ram=ram)


def assert_user_would_run(p, target: float = 10) -> None:
    """Wholly on the GPU, or at least at the task's speed, with the reasons saying so."""
    assert_fits(p)
    speed = p.choice.placement.speed
    assert speed is not None
    assert speed.tps >= target
    assert any(f"speed target {target:g} tok/s" in r for r in p.reasons)


@pytest.mark.parametrize(
    ("gpu", "ram"),
    [("RTX 4080", "32GiB"), ("RTX 4070", "32GiB"), ("RTX 4060", "16GiB"), ("RTX 3060 Laptop", "16GiB")],
)
def test_nvidia_desktops_and_laptops_get_a_pick_they_would_run(gpu, ram):
    p = run(report(gpu, ram=ram))
    assert_user_would_run(p)
    if p.choice.placement.kind == "partial":  # allowed only when it still meets the target
        assert p.choice.placement.speed.tps >= 10


def test_mac_unified_memory_is_one_pool():
    p = run(report("M4 Pro 24GB"))
    assert_user_would_run(p)
    assert p.choice.placement.on_gpu  # never "the rest on the CPU" on a Mac
    assert p.report.budget.unified_memory
    assert p.report.budget.host.name == "unified memory"
    assert any("unified memory, one pool" in r for r in p.reasons)
    for alt in p.alternatives:
        assert alt.placement.on_gpu


def test_mac_offers_a_higher_wired_limit_with_the_exact_command():
    p = run(report("M4 Pro 24GB"), family="gemma3")  # Gemma 3 27B needs 17.6 GiB: more than the 15 GiB share
    text = "\n".join(p.reasons)
    assert "sudo sysctl iogpu.wired_limit_mb=20480" in text
    assert "leaving 4.0 GiB for macOS" in text
    assert "resets at reboot" in text


def test_big_mac_stays_fast_enough():
    p = run(report("M4 Max 128GB"))
    assert_user_would_run(p)
    assert p.choice.placement.on_gpu


def test_cpu_only_box_keeps_room_for_the_desktop():
    rep = report(ram="24GiB")
    p = run(rep)
    assert_user_would_run(p)
    host = rep.budget.host
    assert host.headroom_bytes == 3 * GiB  # an eighth of 24 GiB
    assert p.choice.placement.memory.host_required_bytes <= host.free_bytes - 3 * GiB
    assert any("kept for the system and the desktop" in r for r in p.reasons)
    tight = run(ProbeReport(rep.hardware, budget(rep.hardware, host_headroom=0)))
    assert tight.choice.placement.memory.host_required_bytes >= p.choice.placement.memory.host_required_bytes


# Ollama before 0.30 splits a model by whole layers (its own scheduler): the GPU-first rule against a partly
# offloaded pick is shown there; since 0.30 llama.cpp's fit keeps MoE experts in RAM (test_fit_placement.py)
WHOLE_LAYERS = (0, 29, 0)


def test_gpu_first_prefers_a_wholly_resident_model_of_nearly_the_same_size():
    p = run(report("RTX 4060", ram="16GiB"), ollama=WHOLE_LAYERS)
    assert p.choice.placement.on_gpu
    note = next(r for r in p.reasons if r.startswith("prefers"))
    assert "wholly on the GPU" in note
    assert "1.5x" in note
    displaced = p.alternatives[0]
    assert displaced.placement.kind == "partial"
    # Ministral 3 14B partly offloaded at ~10 tok/s (a range reaching below the 10 tok/s target) is more than
    # 1.5x the resident pick, but a marginal pick widens the window to 2x
    assert displaced.placement.speed.low < 10
    assert "2x when that one may fall below 10 tok/s" in note
    assert displaced.model.effective_b <= p.choice.model.effective_b * 2


def test_a_partly_offloaded_pick_that_clears_its_target_needs_more_than_nearly_the_size():
    # the same 14B now clears the target widely
    marginal = run(report("RTX 4060", ram="16GiB"), min_speed=5, ollama=WHOLE_LAYERS)
    assert marginal.choice.placement.kind == "partial"
    assert marginal.choice.model.effective_b > 1.5 * 8.95


def test_a_raised_quant_never_moves_a_layer_to_the_cpu():
    p = run(report("RTX 3080", ram="32GiB"), ollama=WHOLE_LAYERS)
    assert p.choice.quant == "Q4_K_M"
    assert any("would move" in r and "to the CPU" in r for r in p.reasons)


def test_the_speed_target_is_part_of_fitting_and_can_be_turned_off():
    rep = report("RTX 4060", ram="64GiB")
    default = run(rep)
    anything = run(rep, min_speed=0)
    assert any("no speed target" in r for r in anything.reasons)
    assert anything.choice.model.effective_b >= default.choice.model.effective_b
    coding = run(rep, task="coding")
    assert any("speed target 20 tok/s for coding" in r for r in coding.reasons)
    assert coding.choice.placement.speed.tps >= 20


def test_pinned_quant_reports_its_fit_or_why_not():
    fits = run(report("RTX 4090", ram="64GiB"), model="qwen3:14b", quant="Q8_0")
    assert fits.choice.quant == "Q8_0"
    assert fits.choice.to_dict()["speed"]["tps"] > 0
    with pytest.raises(NothingFits, match="at --quant F16: even Qwen3 14B at F16"):
        run(report("RTX 4060", ram="16GiB"), model="qwen3:14b", quant="F16")


def test_plan_quant_on_the_command_line_gives_choice_speed_in_json():
    result = CliRunner().invoke(
        cli, ["plan", "--gpu", "RTX 4090", "--ram", "64GiB", "--model", "qwen3:14b", "--quant", "q8_0", "--json"]
    )
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["choice"]["quant"] == "Q8_0"
    assert set(doc["choice"]["speed"]) >= {"tps", "low", "high", "assumptions"}


def test_list_takes_offline_and_all():
    models = [replace(m, superseded=m.id == "qwen3:32b") for m in catalog()]
    from ollama_fit.plan.listing import catalog_rows

    rep = report("RTX 4090", ram="64GiB")
    shown = {r.model.id for r in catalog_rows(rep, PlanRequest(), models)}
    everything = {r.model.id for r in catalog_rows(rep, PlanRequest(), models, show_all=True)}
    assert "qwen3:32b" not in shown
    assert "qwen3:32b" in everything
    result = CliRunner().invoke(cli, ["list", "--gpu", "RTX 4090", "--ram", "64GiB", "--offline", "--all"])
    assert result.exit_code == 0, result.output


def test_current_generation_beats_an_older_slightly_larger_one():
    # Qwen3 32B (32.8B, superseded: ranked as 16.4B) against the current Qwen3.6 27B; both fit a 4090
    models = [m for m in catalog() if m.id in ("qwen3:32b", "qwen3.6:27b")]
    assert [m.superseded for m in models] == [True, False]
    p = plan(report("RTX 4090", ram="64GiB"), PlanRequest(), models)
    assert p.choice.model.id == "qwen3.6:27b"
    assert any("older generation of a family ranks as 0.5 of its size" in r for r in p.reasons)
    pinned = plan(report("RTX 4090", ram="64GiB"), PlanRequest(model="qwen3:32b"), models)
    assert pinned.choice.model.id == "qwen3:32b"  # --model still plans it
    assert find_model("qwen3.5:27b").superseded  # Qwen3.6 27B has the same layout, two months later


# ----- placement correctness -----


def _place(spec, vram: int, ram: int = 64 * GiB, headroom: int = 0, gpus: int = 1):
    hw = simulate(Simulation(vram=(f"{gpus}x{vram}B",), ram=f"{ram}B"), lambda: HERE)
    return place(spec, Runtime(ctx=8192, backend="cuda"), budget(hw, gpu_headroom=headroom), hw)


def test_output_layer_that_does_not_fit_does_not_push_the_model_to_the_cpu():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    at_6 = _place(spec, 6 * GiB)
    at_5_5 = _place(spec, int(5.5 * GiB))
    assert isinstance(at_6, Placement)
    assert isinstance(at_5_5, Placement)
    assert at_6.kind in ("gpu", "partial")
    assert at_6.memory.gpu_layers >= at_5_5.memory.gpu_layers > 0


def test_gpt_oss_20b_on_a_12gb_card_runs_on_the_gpu_fast():
    rep = report("RTX 3060", ram="32GiB")
    spec = find_model("gpt-oss:20b").spec("MXFP4")
    p = place(spec, Runtime(ctx=8192, backend="cuda"), rep.budget, rep.hardware)
    assert isinstance(p, Placement)
    assert p.kind != "cpu"
    assert p.speed is not None
    assert p.speed.tps > 40  # real 12 GB cards decode it at 84-163 tok/s


@pytest.mark.parametrize("name", ["DGX Spark", "AMD Ryzen AI Max+ 395"])
def test_unified_boards_are_simulated_as_one_pool(name):
    rep = report(name)
    assert rep.budget.unified_memory
    assert rep.budget.host.usable_bytes > 100 * GiB
    assert rep.budget.gpus[0].usable_bytes > 100 * GiB
    p = run(rep)
    assert_fits(p)
    assert p.choice.placement.on_gpu


SPECS = {
    "dense": find_model("llama3.1:8b").spec("Q4_K_M"),
    "moe": find_model("qwen3:30b-a3b").spec("Q4_K_M"),
}


def _layers(p) -> int:
    return p.memory.gpu_layers if isinstance(p, Placement) and p.kind != "cpu" else 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(SPECS)),
    gpus=st.sampled_from([1, 2]),
    vram_mib=st.integers(min_value=1024, max_value=24 * 1024),
    more_mib=st.integers(min_value=1, max_value=8 * 1024),
)
def test_more_vram_never_puts_fewer_layers_on_the_gpu(kind, gpus, vram_mib, more_mib):
    spec = SPECS[kind]
    small = _place(spec, vram_mib * 1024**2, gpus=gpus)
    large = _place(spec, (vram_mib + more_mib) * 1024**2, gpus=gpus)
    assert _layers(large) >= _layers(small)
    if isinstance(small, Placement):
        assert isinstance(large, Placement)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(SPECS)),
    gpus=st.sampled_from([1, 2]),
    ram_gib=st.integers(min_value=1, max_value=64),
    more_gib=st.integers(min_value=1, max_value=64),
)
def test_more_ram_never_turns_a_fit_into_a_miss(kind, gpus, ram_gib, more_gib):
    spec = SPECS[kind]
    small = _place(spec, 6 * GiB, ram=ram_gib * GiB, gpus=gpus)
    large = _place(spec, 6 * GiB, ram=(ram_gib + more_gib) * GiB, gpus=gpus)
    if isinstance(small, Placement):
        assert isinstance(large, Placement)


def test_a_quant_is_raised_only_while_the_whole_speed_range_clears_the_target():
    p = run(report("M3 Max 64GB"), model="gemma4:31b")
    assert p.choice.placement.speed.low >= 10  # the pick's range stays above the 10 tok/s target
    assert p.choice.quant != "Q8_0"
    assert any("which may fall below the 10 tok/s target" in r for r in p.reasons)


def test_scout_ranks_where_meta_places_it_and_coders_stay_out_of_chat():
    scout = find_model("llama4:scout")
    assert scout.effective_b == 27.0  # not sqrt(107.8 x 17) = 42.8
    assert run(report("M4 Max 128GB")).choice.model.id != "llama4:scout"
    chat = run(report("RTX 3060 Laptop", ram="16GiB"))
    assert "chat" in chat.choice.model.capabilities
    assert "coder" not in chat.choice.model.id
    assert find_model("devstral-small-2:24b").effective_b == pytest.approx(23.6)  # the GGUF's part, not 24.0


@pytest.mark.parametrize(
    ("gpu", "ram", "raised_to"),
    [("RTX 4060", "16GiB", "Q5_K_M"), ("RTX 3090", "32GiB", "Q5_K_M"), ("M4 Max 128GB", None, "Q6_K")],
)
def test_a_raised_quant_keeps_every_layer_where_the_floor_quant_had_it(gpu, ram, raised_to):
    p = run(report(gpu, ram=ram), ollama=WHOLE_LAYERS)
    assert p.choice.quant == raised_to  # machines whose pick climbs above the Q4_K_M floor
    floor = run(p.report, model=p.choice.model.id, quant="Q4_K_M", ollama=WHOLE_LAYERS)
    assert floor.choice.placement.kind == p.choice.placement.kind
    assert p.choice.placement.memory.gpu_layers == floor.choice.placement.memory.gpu_layers


def test_newest_first_across_families():
    from ollama_fit.plan.planner import aged_models

    aged = aged_models(catalog())
    # Phi-4 (2024-12) is a year older than Gemma 4 12B (2026-06), a comparable size (12 >= 14.7 / 1.5)
    assert aged["phi4:14b"].released >= "2025-12"
    assert "gemma4:31b" not in aged
    assert "ministral-3:14b" not in aged
    p = run(report("RTX 4070", ram="32GiB"))
    assert p.choice.model.id != "phi4:14b"
    assert p.choice.model.released >= "2025-07"  # a 2025-H2 release or newer
    note = next(r for r in p.reasons if r.startswith("newest first across families"))
    assert "Phi-4 14B, released 2024-12, against" in note
    # a 24 GB Mac: Mistral Small 3.2 24B (2025-06), replaced by Mistral Small 4, ranks as half its size, below
    # Mistral's own Ministral 3 14B (2025-12)
    mac = run(report("M4 Pro 24GB"))
    assert find_model("mistral-small3.2:24b").superseded
    assert mac.choice.model.released >= "2025-07"
    assert mac.choice.model.id == "ministral-3:14b"
    # --model still plans an aged model, and the rule is not cited then
    pinned = run(report("RTX 4070", ram="32GiB"), model="phi4:14b")
    assert pinned.choice.model.id == "phi4:14b"
    assert not any(r.startswith("newest first") for r in pinned.reasons)


def test_big_machines_get_big_moe_models_and_the_mac_advice_covers_the_next_quant():
    mac = run(report("M4 Max 128GB"))
    assert mac.choice.model.params_b >= 70  # a 100B-class MoE on a 128 GB Mac
    assert mac.choice.placement.speed.low >= 10
    # on 64 GB, Llama 3.3 70B (superseded: 35B effective) ranks above Gemma 4 31B but only meets 10 tok/s at its
    # point estimate: a marginal pick gives way
    smaller = run(report("M4 Max 64GB"))
    assert any(r.startswith("prefers") and "gives way" in r and "Llama 3.3 70B" in r for r in smaller.reasons)
    assert smaller.choice.placement.speed.low >= 10
    assert any("iogpu.wired_limit_mb=" in r and "would fit wholly on the GPU" in r for r in mac.reasons)
    for machine in ("DGX Spark", "Strix Halo"):
        p = run(report(machine))
        assert p.choice.model.params_b >= 100  # unified 128 GB: a 100B-class MoE
        assert p.choice.model.shape.n_expert
    ultra = run(report("M3 Ultra 512GB"))
    assert ultra.choice.model.params_b >= 600  # one of the largest open models


def test_a_large_download_is_said_plainly():
    from ollama_fit.cli.render import _large_download_lines

    big = CliRunner().invoke(cli, ["plan", "--gpu", "M3 Ultra 512GB", "--offline"], env={"COLUMNS": "200"})
    assert big.exit_code == 0, big.output
    assert " download: about " in big.stdout
    small = CliRunner().invoke(cli, ["plan", "--gpu", "RTX 4070", "--ram", "32GiB", "--offline"])
    assert " download: about " not in small.stdout
    (line,) = _large_download_lines(400 * 10**9)
    assert "about 67 minutes at 100 MB/s" in line
    assert "about 2.8 hours" in _large_download_lines(10**12)[0]
    assert _large_download_lines(59 * 10**9) == []


def test_a_pick_with_its_experts_in_ram_says_its_speed_is_less_sure():
    p = run(report("RTX 4060", ram="32GiB"))
    assert p.choice.placement.kind == "experts"
    assert any(r.startswith("speed with the experts in RAM") and "not fitted" in r for r in p.reasons)
    whole = run(report("RTX 4090", ram="32GiB"))
    assert whole.choice.placement.kind == "gpu"
    assert not any(r.startswith("speed with the experts in RAM") for r in whole.reasons)
