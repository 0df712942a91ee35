from __future__ import annotations

import re

import pytest
from plans import assert_fits, run, simulated

from ollama_fit.errors import InvalidInput, NothingFits, TaskRefused
from ollama_fit.hardware.model import Cpu, Hardware, ProbeReport
from ollama_fit.model.catalog import catalog, find_model
from ollama_fit.plan.tasks import meets

GiB = 1024**3
HERE = Hardware(gpus=(), ram_total_bytes=64 * GiB, ram_available_bytes=64 * GiB, cpu=Cpu("Test CPU", 8, 16))


def report(*gpus: str, vram: tuple[str, ...] = (), ram: str | None = "64GiB") -> ProbeReport:
    if any(g.startswith("M") and "GB" in g for g in gpus):
        ram = None  # the Apple chip names its own memory
    return simulated(HERE, *gpus, vram=vram, ram=ram)


def test_largest_model_at_q4_k_m_beats_a_smaller_one_at_fp16():
    p = run(report("RTX 4090"))
    assert_fits(p)
    assert p.choice.model.params_b >= 26.9
    assert meets(p.choice.quant, "Q4_K_M")
    assert p.choice.quant not in ("Q8_0", "F16")  # a 27B at FP16 would not fit: the larger model won
    assert p.choice.placement.kind == "gpu"
    # the same card could hold an 8B at FP16: that is not the pick
    assert run(report("RTX 4090"), model="qwen3:8b").choice.quant == "F16"


@pytest.mark.parametrize(("vram", "quant"), [("80GiB", "F16"), ("40GiB", "Q8_0"), ("24GiB", "Q6_K")])
def test_quant_rises_as_far_as_the_budget_allows(vram, quant):
    p = run(report(vram=(vram,)), family="gemma3")
    assert_fits(p)
    assert p.choice.model.id == "gemma3:27b"
    assert p.choice.quant == quant


def test_coding_never_goes_below_q4_k_m():
    with pytest.raises(InvalidInput, match="too aggressive for the coding task"):
        run(report("RTX 4060 Laptop"), task="coding", min_quant="Q3_K_M")
    p = run(report("RTX 4060 Laptop"), task="coding")
    assert meets(p.choice.quant, "Q4_K_M")
    assert "coding" in p.choice.model.capabilities
    assert not any("Q3_K" in r or "Q2_K" in r for r in p.reasons)  # no remedy the task forbids


def test_chat_may_go_to_q3_only_when_asked_and_q2_warns():
    # little room to spill layers into RAM: 0.75 GiB beside the desktop's 2 GiB (beside a GPU, CPU layers stay
    # mapped: a 27B's embedding and one layer would need more)
    small = report(vram=("16GiB",), ram="2816MiB")
    default = run(small)
    assert meets(default.choice.quant, "Q4_K_M")
    aggressive = run(small, min_quant="Q3_K_M")
    assert aggressive.choice.model.params_b > default.choice.model.params_b
    assert aggressive.choice.quant == "Q3_K_M"
    emergency = run(small, min_quant="Q2_K")
    assert any("Q2_K" in w for w in emergency.warnings)


@pytest.mark.parametrize("task", ["numerical", "recall", "evaluation"])
def test_high_sensitivity_tasks_use_q6_or_better(task):
    p = run(report("RTX 4090"), task=task)
    assert meets(p.choice.quant, "Q6_K")
    native = p.choice.model.family == "gpt-oss" and p.choice.quant == "MXFP4"  # trained for MXFP4: no loss
    assert p.choice.quant in ("Q6_K", "Q8_0", "F16") or native


def test_embedding_task_picks_an_embedding_model_at_q8_or_f16():
    p = run(report("RTX 4060 Laptop"), task="embedding")
    assert p.choice.model.capabilities == ("embedding",)
    assert p.choice.quant in ("Q8_0", "F16")
    chat = run(report("RTX 4090"))  # and chat never picks an embedding model, nor lists one as an alternative
    assert all("embedding" not in c.model.capabilities for c in (chat.choice, *chat.alternatives))


def test_fine_tuning_is_refused_with_the_reason():
    with pytest.raises(TaskRefused, match="FP16/BF16"):
        run(report("RTX 4090"), task="fine-tuning")


def test_unknown_task_and_family():
    with pytest.raises(InvalidInput, match="unknown task"):
        run(report("RTX 4090"), task="dancing")
    with pytest.raises(InvalidInput, match="no chat model"):
        run(report("RTX 4090"), family="nope")


def test_moe_ranks_by_effective_size_but_costs_total_memory():
    moe = next(m for m in catalog() if m.id == "qwen3:30b-a3b")
    assert moe.effective_b == pytest.approx((30.5 * 3.3) ** 0.5)
    p = run(report(vram=("24GiB",)), model="qwen3:30b-a3b")
    assert p.choice.placement.memory.device_bytes > 17 * GiB  # all 30B of weights, not 3B
    assert any("sqrt(active x total" in r for r in p.reasons)


def test_multi_gpu_splits_a_70b_across_two_cards():
    p = run(report("2x RTX 3090"))
    assert_fits(p)
    assert p.choice.model.params_b >= 70
    assert p.choice.placement.kind == "multi-gpu"
    assert p.choice.placement.gpu_indices == (0, 1)
    assert sum(d.layers for d in p.choice.placement.memory.gpus) == p.choice.model.shape.n_layer


def test_single_gpu_preferred_when_one_card_holds_the_model():
    p = run(report("2x RTX 3090"), model="qwen3:8b")
    assert p.choice.placement.kind == "gpu"


def test_apple_budget_is_the_metal_limit_not_all_ram():
    p = run(report("M3 Max 128GB"), min_speed=0)
    assert_fits(p)
    assert p.choice.placement.memory.device_bytes <= 95 * GiB
    assert p.choice.placement.on_gpu
    assert p.choice.model.params_b >= 70


def test_apple_wired_limit_remedy_for_the_next_model():
    p = run(report("M4 Pro 24GB"), family="gemma3", min_speed=8)  # too slow when half of it runs on the CPU
    assert p.choice.model.id != "gemma3:27b"
    assert any("next larger, Gemma 3 27B" in r for r in p.reasons)
    assert any("iogpu.wired_limit_mb=20480" in r for r in p.reasons)


def test_cpu_only_speed_target():
    cpu = report(vram=(), ram="64GiB")
    fast = run(cpu)
    assert fast.choice.placement.kind == "cpu"
    assert fast.choice.placement.speed.tps >= 10  # chat's target
    assert any("speed target 10 tok/s for chat" in r for r in fast.reasons)
    slow = run(cpu, min_speed=0)
    assert slow.choice.model.effective_b > fast.choice.model.effective_b
    assert any("below 10 tok/s" in r for r in fast.reasons)


def test_nothing_fits_names_the_smallest_model_and_a_hint():
    with pytest.raises(NothingFits) as info:
        run(report(vram=("1GiB",), ram="1GiB"))
    assert "nothing fits" in info.value.message
    assert "--ctx" in info.value.hint


def test_ctx_max_is_capped_at_the_trained_length():
    p = run(report("H200"), model="llama3.2:1b", ctx=None)
    assert p.choice.ctx == 131072
    assert any("trained length" in r for r in p.reasons)


def test_ctx_max_grows_the_context_until_memory_runs_out():
    p = run(report("RTX 4090"), model="qwen3:8b", ctx=None, min_quant="Q8_0")
    assert_fits(p)
    assert 8192 < p.choice.ctx <= 40960


def test_quantized_kv_needs_flash_attention():
    with pytest.raises(InvalidInput, match="needs flash attention"):
        run(report("RTX 4090"), kv_type="q8_0", flash_attn=False)


def test_next_larger_model_too_slow_gets_remedies_for_speed():
    p = run(report("RTX 4090", ram="32GiB"), family="qwen3", ctx=32768, min_speed=20)
    text = "\n".join(p.reasons)
    assert "next larger, Qwen3 32B at Q4_K_M: fits partly on the GPU, the rest on the CPU but would decode at" in text
    assert "below 20 tok/s" in text
    # it already fits: the remedy is what puts it wholly on the GPU, not "it would fit with --ctx"
    assert "to fit it" not in text
    assert "to make it fast enough: with --ctx" in text
    assert "wholly on the GPU at ~" in text


def test_next_larger_model_short_of_memory_gets_remedies_for_memory():
    p = run(report(vram=("10GiB",), ram="3GiB"), family="qwen3", ctx=40960)
    text = "\n".join(p.reasons)
    assert "next larger, Qwen3 8B at Q4_K_M: needs" in text
    assert "short" in text
    shorter = int(re.search(r"to fit it: --ctx (\d+)", text).group(1))
    assert 2048 <= shorter < 40960
    assert "to fit it: --kv-type q8_0" in text
    assert "fast enough" not in text


def p_model_file(doc) -> str:
    model = next(m for m in catalog() if m.id == doc["choice"]["model"]["id"])
    return model.file_for(doc["choice"]["quant"])


def test_plan_json_shape():
    doc = run(report("RTX 4090")).to_dict()
    choice = doc["choice"]
    assert set(choice["model"]) >= {"id", "family", "params", "active_params"}
    assert set(choice["memory"]) >= {
        "device_bytes",
        "host_bytes",
        "weights_bytes",
        "kv_bytes",
        "compute_bytes",
        "overhead_bytes",
    }
    assert all(isinstance(choice["memory"][k], int) for k in ("device_bytes", "host_bytes", "kv_bytes"))
    assert choice["ctx"] == 8192
    assert choice["speed_tps"] > 0
    assert set(choice["source"]) >= {"repo", "files"}
    assert choice["source"]["files"] == [p_model_file(doc)]
    assert doc["alternatives"]
    assert doc["reasons"]
    parts = sum(choice["memory"][k] for k in ("weights_bytes", "kv_bytes", "compute_bytes", "overhead_bytes"))
    assert parts == choice["memory"]["device_bytes"] + choice["memory"]["host_bytes"]


def test_shortfall_is_reported_in_bytes():
    p = run(report("RTX 4090", ram="8GiB"), family="qwen3", min_speed=0)
    text = "\n".join(p.reasons)
    assert "next larger, Qwen3 235B-A22B (MoE) at Q4_K_M: needs" in text
    assert "GiB short" in text


def test_models_beyond_every_device_are_turned_down_without_their_tables(monkeypatch):
    """A model whose weights alone exceed GPU and RAM together is a miss without its placement worked out; the
    plan reads the same as when every model is placed, and the nearest larger miss is still given in full."""
    import ollama_fit.plan.planner as planner

    machine = report("RTX 4060", ram="16GiB")
    quick = run(machine)
    monkeypatch.setattr(planner, "_beyond_reach", lambda *a: lambda model: None)
    placed = run(machine)
    assert quick.choice == placed.choice
    assert quick.reasons == placed.reasons
    assert any(r.startswith("next larger") and "usable" in r for r in quick.reasons)
    monkeypatch.undo()
    reach = planner._beyond_reach("Q4_K_M", planner.PlanRequest(), machine)
    huge = reach(find_model("deepseek-v3.1:671b"))
    assert huge is not None
    assert huge.result.need_bytes > huge.result.have_bytes
    assert reach(find_model("qwen3.5:9b")) is None
