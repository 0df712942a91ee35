"""The decode-speed model, term by term, with worked cases (not the calibration rows)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import load_script

from ollama_fit.hardware.membw import cached_bandwidth
from ollama_fit.hardware.model import Cpu, Gpu, Hardware
from ollama_fit.memory.estimate import Runtime, estimate
from ollama_fit.model.catalog import find_model
from ollama_fit.speed import decode_speed
from ollama_fit.speed.devices import DEFAULT_RAM_BANDWIDTH_GBS, cpu_device, gpu_device
from ollama_fit.speed.model import SpeedDevice, Stage, stage_seconds, token_seconds
from ollama_fit.speed.params import PARAMS
from ollama_fit.speed.work import stages

GiB = 1024**3
ROOT = Path(__file__).resolve().parent.parent


def device(kind: str = "cuda", bw: float = 1000.0, eff: float = 1.0, tops: float = 0.0, cost: float = 0.0):
    return SpeedDevice("test", kind, bw, eff, tops, cost)


def test_memory_term_is_bytes_over_effective_bandwidth():
    stage = Stage(device(bw=1000, eff=0.5), 0, (("F16", 5 * 10**9, 0),), 0)
    assert stage_seconds(stage) == pytest.approx(5e9 / 500e9)


def test_per_layer_cost_dominates_a_small_model_on_a_fast_device():
    fast = device(bw=4800, eff=0.6, cost=80e-6)
    tiny = Stage(fast, 16, (("Q4_K", 700 * 10**6, 1_200_000_000),), 0)
    seconds = stage_seconds(tiny)
    assert seconds == pytest.approx(16 * 80e-6 + 0.7e9 / (4800e9 * 0.6))
    assert seconds / 2 < 16 * 80e-6  # the fixed cost, not the bandwidth, sets the pace


def test_compute_term_makes_low_bit_quants_slower_per_byte():
    dev = device(bw=936, eff=0.92, tops=35.6)
    same_bytes = 3 * 10**9
    q4 = Stage(dev, 0, (("Q4_K", same_bytes, int(same_bytes * 8 / 4.5)),), 0)
    q2 = Stage(dev, 0, (("Q2_K", same_bytes, int(same_bytes * 8 / 2.625)),), 0)
    compute_q2 = same_bytes * 8 / 2.625 * PARAMS.ops["Q2_K"] / 35.6e12
    assert stage_seconds(q2) - stage_seconds(q4) > compute_q2 / 2
    assert stage_seconds(q2) > stage_seconds(q4)


def test_cpu_is_bound_by_the_slower_of_memory_and_cores():
    weights = (("Q4_0", 3_560_000_000, 6_500_000_000),)
    few = Stage(device("cpu", bw=100, eff=0.65, tops=2 * PARAMS.cpu_core_tops), 0, weights, 0)
    many = Stage(device("cpu", bw=100, eff=0.65, tops=32 * PARAMS.cpu_core_tops), 0, weights, 0)
    memory = 3.56e9 / (100e9 * 0.65)
    compute_2 = 6.5e9 * PARAMS.cpu_ops["Q4_0"] / (2 * PARAMS.cpu_core_tops * 1e12)
    assert stage_seconds(few) == pytest.approx(max(memory, compute_2))
    assert stage_seconds(many) == pytest.approx(memory)  # enough cores: the memory is the limit


def test_layer_split_devices_run_one_after_another():
    a = Stage(device(bw=1000), 0, (("F16", 10**9, 0),), 0)
    b = Stage(device(bw=500), 0, (("F16", 10**9, 0),), 0)
    total, partial = token_seconds([a, b])
    assert total == pytest.approx(1e-3 + 2e-3 + PARAMS.handoff_s)
    assert partial is False


def test_unknown_bandwidth_leaves_an_upper_bound():
    a = Stage(device(bw=1000), 0, (("F16", 10**9, 0),), 0)
    unknown = Stage(replace(device(), bandwidth_gbs=None), 0, (("F16", 10**9, 0),), 0)
    total, partial = token_seconds([a, unknown])
    assert partial is True
    assert total == pytest.approx(1e-3 + PARAMS.handoff_s)
    assert token_seconds([unknown]) is None


def _hw(*gpus: Gpu, cpu: Cpu | None = None) -> Hardware:
    return Hardware(gpus=gpus, ram_total_bytes=64 * GiB, ram_available_bytes=64 * GiB, cpu=cpu or Cpu("x", 8, 16))


def _gpu(index: int = 0, name: str = "NVIDIA GeForce RTX 4090", bw: float = 1008.0) -> Gpu:
    return Gpu(index, "nvidia", name, 24 * GiB, 24 * GiB, bandwidth_gbs=bw)


def test_moe_reads_only_the_routed_experts():
    model = find_model("qwen3:30b-a3b")
    spec = model.spec("Q4_K_M")
    est = estimate(spec, Runtime(ctx=4096))
    (stage,) = stages(spec, est, [gpu_device(_gpu(), _hw(_gpu()))], cpu_device(_hw()), 0)
    read = sum(b for _, b, _ in stage.weights)
    experts = sum(t.nbytes for t in spec.tensors if "_exps" in t.name)
    others = sum(t.nbytes for t in spec.tensors if "_exps" not in t.name and t.name != "token_embd.weight")
    used = spec.shape.n_expert_used / spec.shape.n_expert
    assert read == pytest.approx(others + experts * used, rel=1e-6)
    assert read < spec.weights_bytes / 4  # 8 of 128 experts: a fraction of the file


def test_partial_offload_the_cpu_part_sets_the_pace():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    n = spec.shape.n_layer
    hw = _hw(_gpu(), cpu=Cpu("x", 8, 16, bandwidth_gbs=50.0))
    full = decode_speed(spec, estimate(spec, Runtime(ctx=4096)), hw, [0])
    half = decode_speed(spec, estimate(spec, Runtime(ctx=4096), split=[n // 2]), hw, [0])
    assert full is not None
    assert half is not None
    # half the layers from 50 GB/s RAM take far longer than all of them from 1008 GB/s VRAM
    assert half.tps < full.tps / 4
    cpu_only = decode_speed(spec, estimate(spec, Runtime(ctx=4096, backend="cpu")), hw, [])
    assert cpu_only is not None
    assert cpu_only.tps < half.tps


def test_partial_offload_stages_hold_every_layer_once_and_the_output_on_the_gpu():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    est = estimate(spec, Runtime(ctx=4096), split=[20])
    hw = _hw(_gpu())
    cpu, gpu = stages(spec, est, [gpu_device(_gpu(), hw)], cpu_device(hw), 0)
    assert cpu.layers + gpu.layers == spec.shape.n_layer
    assert gpu.layers == 20
    output = next(t for t in spec.tensors if t.name == "output.weight")
    assert any(kind == output.type and size >= output.nbytes for kind, size, _ in gpu.weights)


def test_multi_gpu_pays_one_handoff_per_boundary():
    spec = find_model("llama3.3:70b").spec("Q4_K_M")
    hw = _hw(_gpu(0, "NVIDIA GeForce RTX 3090", 936.0), _gpu(1, "NVIDIA GeForce RTX 3090", 936.0))
    est = estimate(spec, Runtime(ctx=4096), split=[40, 40])
    two = decode_speed(spec, est, hw, [0, 1], fill_tokens=0)
    assert two is not None
    one_big = decode_speed(spec, estimate(spec, Runtime(ctx=4096)), _hw(_gpu(0, "x", 936.0)), [0], fill_tokens=0)
    assert one_big is not None
    assert 1 / two.tps > 1 / one_big.tps  # the same reads at the same bandwidth, plus the handoff


def test_the_kv_cache_read_grows_with_the_conversation():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    est = estimate(spec, Runtime(ctx=131072))
    hw = _hw(_gpu())
    early = decode_speed(spec, est, hw, [0], fill_tokens=512)
    assert early is not None
    assert any("once the 131072-token context is full" in a for a in early.assumptions)


def test_range_is_the_stated_share_around_the_point_estimate():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    speed = decode_speed(spec, estimate(spec, Runtime(ctx=4096)), _hw(_gpu()), [0])
    assert speed is not None
    assert speed.low == pytest.approx(speed.tps * PARAMS.range_low)
    assert speed.high == pytest.approx(speed.tps * PARAMS.range_high)
    assert speed.high / speed.low <= 1.5
    assert set(speed.to_dict()) == {"tps", "low", "high", "upper_bound", "assumptions"}


def test_devices_come_from_the_known_table_or_say_what_was_assumed():
    known = gpu_device(_gpu(), _hw(_gpu()))
    assert known.compute_tops == pytest.approx(82.6 * PARAMS.compute_share)
    assert known.efficiency == PARAMS.efficiency["gddr"]
    hbm = gpu_device(_gpu(name="NVIDIA H100 PCIe", bw=2039.0), _hw())
    assert hbm.efficiency == PARAMS.efficiency["hbm"]
    stranger = gpu_device(_gpu(name="Mystery GPU 9000", bw=500.0), _hw())
    assert any("assumed" in a for a in stranger.assumptions)
    cpu = cpu_device(_hw(cpu=Cpu("x", None, None)))
    assert cpu.bandwidth_gbs == DEFAULT_RAM_BANDWIDTH_GBS
    assert {"RAM bandwidth assumed 50 GB/s", "CPU cores assumed 4"} <= set(cpu.assumptions)


def test_on_unified_memory_the_cpu_reads_the_chips_memory():
    mac = Gpu(0, "apple", "Apple M4 Max", 96 * GiB, 96 * GiB, bandwidth_gbs=546.0, unified_memory=True)
    hw = replace(_hw(mac, cpu=Cpu("Apple M4 Max", 16, 16)), unified_memory=True)
    assert cpu_device(hw).bandwidth_gbs == 546.0


def test_ram_bandwidth_is_measured_once_and_kept(tmp_path):
    calls = []

    def run(threads: int) -> float:
        calls.append(threads)
        return 42.5

    assert cached_bandwidth(tmp_path, "cpu|8|64", 8, run) == 42.5
    assert cached_bandwidth(tmp_path, "cpu|8|64", 8, run) == 42.5
    assert calls == [8]
    assert cached_bandwidth(tmp_path, "other|4|16", 4, run) == 42.5
    assert calls == [8, 4]


def test_probe_measures_again_and_keeps_the_best_reading(tmp_path):
    readings = iter([20.0, 12.0, 31.0])
    assert cached_bandwidth(tmp_path, "k", 2, lambda _: next(readings)) == 20.0
    assert cached_bandwidth(tmp_path, "k", 2, lambda _: next(readings), remeasure=True) == 20.0
    assert cached_bandwidth(tmp_path, "k", 2, lambda _: next(readings), remeasure=True) == 31.0
    assert cached_bandwidth(tmp_path, "k", 2, lambda _: 0.0) == 31.0


def test_an_implausible_bandwidth_reading_is_not_kept(tmp_path):
    assert cached_bandwidth(tmp_path, "busy", 2, lambda _: 1.2) is None
    assert not (tmp_path / "ram-bandwidth.json").exists()


def test_the_real_measurement_is_bounded_and_positive():
    from ollama_fit.hardware.membw import measure

    ticks = iter(range(100))
    value = measure(1, buffer_bytes=8 * 1024**2, clock=lambda: float(next(ticks)))
    assert value > 0  # an injected clock: one "second" per tick, so the loop stops at its time limit
    assert math.isfinite(value)


def _calibration_script():
    return load_script("calibrate_speed")


def test_published_measurements_meet_the_targets():
    """The same in-sample summary scripts/calibrate_speed.py prints with the shipped constants, over the copy of
    the calibration rows (2024 and 2025+ builds). The held-out figures (each source predicted by a refit
    without it) need scipy: `python scripts/calibrate_speed.py --held-out`, quoted in docs/speed.md."""
    script = _calibration_script()
    files = ["speed-public.jsonl", "speed-public-current.jsonl", "speed-cpu.jsonl"]
    rows = script.load([ROOT / "tests/fixtures" / f for f in files])
    assert len(rows) >= 150
    results = [script.predict(script.prepare(r)) for r in rows]
    median_err, inside, width = script.summary(results)
    assert median_err <= 0.10
    assert inside >= 0.80
    assert width <= 1.5
    # every source on its own too: no publication is fitted at the expense of another
    for src in {script.source_of(r) for r in rows}:
        mine = [x for x in results if script.source_of(x.row) == src and x.row.get("vendor") != "cpu"]
        if len(mine) >= 5:
            assert script.summary(mine)[0] <= 0.10, src


def test_unseen_published_rows_are_predicted_like_for_like_or_say_why_not():
    """tests/fixtures/speed-public-extra.jsonl: rows from sources no fit has seen (AMD ROCm and Vulkan, Strix Halo,
    Intel Arc, MoE models). Each names its source, url and build; each is predicted with the shipped constants,
    or left out with a reason (a mixed unsloth file, NVIDIA on Vulkan where Ollama runs CUDA, an unknown card)."""
    script = _calibration_script()
    rows = script.load(list(script.UNSEEN_FILES))
    assert len(rows) >= 40
    for r in rows:
        assert r["source"], r["id"]
        assert r["url"], r["id"]
        assert r["tg_tps"] > 0, r["id"]
    usable = [r for r in rows if not script.unseen_skip(r)]
    assert {r["vendor"] for r in usable} >= {"amd", "intel", "cpu"}
    assert any(r["quant"] == "MXFP4" for r in usable)  # gpt-oss's MoE files, predicted from the catalog's shapes
    for r in usable:
        result = script.predict(script.prepare(r))
        assert 0 < result.low < result.predicted < result.high
    vulkan = next(r for r in rows if r["vendor"] == "nvidia" and "Vulkan" in r["backend"])
    assert "Ollama runs CUDA" in script.unseen_skip(vulkan)


def test_an_old_build_pays_more_per_layer():
    script = _calibration_script()
    assert script.era({"date": "2025-08 or later"}) == "current"
    assert script.era({"build": "b2797-b2833 (May 2024)"}) == "2024"
    assert PARAMS.old_build_layer_factor > 1


def test_prompt_speed_is_compute_bound_and_pays_for_weights_in_ram():
    from ollama_fit.speed import prompt_speed
    from ollama_fit.speed.prompt import prompt_seconds_per_token

    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    gpu = Gpu(0, "nvidia", "NVIDIA GeForce RTX 4090", 24 * GiB, 24 * GiB, bandwidth_gbs=1008.0)
    hw = Hardware((gpu,), 64 * GiB, 60 * GiB, Cpu("x", 8, 16, bandwidth_gbs=60.0))
    rt = Runtime(ctx=8192, runner="llama-server")
    whole = estimate(spec, rt)
    # 2 flops per weight (and the attention) over FP32 TFLOPS x compute share x the fitted CUDA efficiency
    seconds = prompt_seconds_per_token(spec, whole, hw, (0,), prompt=512)
    expected = 2 * spec.active_params / (82.6e12 * PARAMS.compute_share * PARAMS.prompt_efficiency["cuda"])
    assert seconds == pytest.approx(expected, rel=0.1)
    # a longer prompt attends to more: slower per token
    assert prompt_seconds_per_token(spec, whole, hw, (0,), prompt=32768) > seconds
    # half the layers in RAM: the GPU still runs every batch, and copies RAM's weights over PCIe for each
    half = estimate(spec, rt, [16])
    assert prompt_seconds_per_token(spec, half, hw, (0,), prompt=512) > seconds
    speed = prompt_speed(spec, whole, hw, (0,))
    assert speed is not None
    assert speed.low < speed.tps < speed.high


def test_plan_json_has_the_prompt_speed(tmp_path):
    from click.testing import CliRunner

    from ollama_fit.cli import cli

    result = CliRunner().invoke(cli, ["plan", "--gpu", "RTX 4090", "--ram", "64GiB", "--offline", "--json"])
    assert result.exit_code == 0, result.output
    pp = json.loads(result.stdout)["choice"]["prompt_speed"]
    assert pp["low"] < pp["tps"] < pp["high"]
    assert pp["first_token_s"] == pytest.approx(pp["prompt_tokens"] / pp["tps"], abs=0.1)
    text = CliRunner().invoke(cli, ["plan", "--gpu", "RTX 4090", "--ram", "64GiB", "--offline"]).stdout
    assert "first token after ~" in text


def test_the_per_layer_cost_scales_with_the_chip():
    from ollama_fit.speed.devices import _clock_class

    ref = PARAMS.layer_cost_ref_tflops["cuda"]
    assert _clock_class(ref, "cuda", PARAMS) == pytest.approx(1.0)
    small, big = _clock_class(ref / 4, "cuda", PARAMS), _clock_class(ref * 4, "cuda", PARAMS)
    assert small > 1 > big  # a small chip pays more per layer, a big one less
    assert small == pytest.approx(4**PARAMS.layer_cost_exponent)
    assert _clock_class(None, "cuda", PARAMS) == 1.0  # unknown throughput: the backend's figure
