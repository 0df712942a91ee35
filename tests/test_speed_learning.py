"""Measured decode speeds on this machine correct later plans: bounded, explained, only on the GPU."""

from __future__ import annotations

import pytest

from ollama_fit.hardware.model import Cpu, Gpu, Hardware, ProbeReport, budget
from ollama_fit.model.catalog import catalog
from ollama_fit.ollama.learning import Observation, Observations
from ollama_fit.plan.planner import PlanRequest, plan

GiB = 1024**3
HW = Hardware(
    gpus=(Gpu(0, "nvidia", "NVIDIA GeForce RTX 4090", 24 * GiB, 24 * GiB, bandwidth_gbs=1008.0),),
    ram_total_bytes=64 * GiB,
    ram_available_bytes=64 * GiB,
    cpu=Cpu("x", 8, 16, 50.0),
)


def _obs(predicted: float, observed: float) -> Observation:
    return Observation("m:q", "Q4_K_M", 8192, GiB, GiB, GiB, 1, 0.0, 8192, predicted, observed)


def test_speed_ratio_is_the_bounded_median_and_says_so(tmp_path):
    obs = Observations.load(tmp_path)
    assert obs.speed_ratio(HW) == (1.0, "")
    for measured in (80.0, 90.0, 100.0):
        obs.record(HW, _obs(100.0, measured))
    ratio, note = obs.speed_ratio(HW)
    assert ratio == pytest.approx(0.9)
    assert "x0.90" in note
    assert "3 real run(s)" in note
    wild = Observations.load(tmp_path / "other")
    wild.record(HW, _obs(100.0, 400.0))
    ratio, note = wild.speed_ratio(HW)
    assert ratio == 1.5
    assert "bounded" in note


def test_a_learned_ratio_scales_gpu_speeds_and_is_explained():
    rep = ProbeReport(HW, budget(HW))
    base = plan(rep, PlanRequest(model="qwen3:14b"), catalog())
    slower = plan(rep, PlanRequest(model="qwen3:14b", speed_ratio=0.5, speed_note="scaled x0.50"), catalog())
    assert slower.choice.placement.speed.tps == pytest.approx(base.choice.placement.speed.tps * 0.5)
    assert "scaled x0.50" in slower.reasons
    assert "scaled x0.50" in slower.choice.placement.speed.assumptions


def test_a_learned_ratio_leaves_cpu_speeds_alone():
    cpu_only = Hardware(gpus=(), ram_total_bytes=64 * GiB, ram_available_bytes=64 * GiB, cpu=Cpu("x", 8, 16, 50.0))
    rep = ProbeReport(cpu_only, budget(cpu_only))
    base = plan(rep, PlanRequest(model="qwen3:4b"), catalog())
    scaled = plan(rep, PlanRequest(model="qwen3:4b", speed_ratio=0.5, speed_note="n"), catalog())
    assert scaled.choice.placement.speed.tps == pytest.approx(base.choice.placement.speed.tps)


def test_an_observation_keeps_both_speeds():
    from types import SimpleNamespace

    from ollama_fit.ollama.learning import observe

    entry = SimpleNamespace(size_vram=5 * GiB, size=6 * GiB, context_length=8192)
    obs = observe(entry, "m:q", "Q4_K_M", 8192, 5 * GiB, 1, 42.0, 38.5)
    doc = obs.to_dict()
    assert doc["predicted_tps"] == 42.0
    assert doc["observed_tps"] == 38.5


def test_what_is_learned_settles_run_after_run(tmp_path):
    """Each run is compared with the model's own prediction, not with one an earlier run already corrected:
    on a machine that really takes 300 MiB more and decodes at 0.7x, the corrections stay there."""
    from types import SimpleNamespace

    from ollama_fit.provision.auto import Smoke, learn

    rep = ProbeReport(HW, budget(HW))
    pinned = {"model": "qwen3:14b", "quant": "Q4_K_M"}
    raw = plan(rep, PlanRequest(**pinned), catalog()).choice.placement
    store = Observations.load(tmp_path)
    for _ in range(4):
        correction, note = store.correction(HW)
        ratio, speed_note = store.speed_ratio(HW)
        p = plan(
            rep,
            PlanRequest(
                **pinned, overhead_correction=correction, correction_note=note, speed_ratio=ratio, speed_note=speed_note
            ),
            catalog(),
        )
        # what Ollama 0.30+ reports: llama-server's GPU buffers (no CUDA context), here 300 MiB more than planned
        buffers = raw.memory.device_bytes - sum(g.overhead_bytes for g in raw.memory.gpus)
        real = SimpleNamespace(model="m:q", size_vram=buffers + 300 * 2**20, size=0, context_length=8192)
        ollama = SimpleNamespace(ps=lambda real=real: [real])
        smoke = Smoke(True, "hi", 0.7 * raw.speed.tps, p.choice.placement.speed.tps)
        store.record(HW, learn(ollama, "m:q", p, smoke))
        assert store.correction(HW)[0] == 300 * 2**20
        assert store.speed_ratio(HW)[0] == pytest.approx(0.7)


def test_what_ollama_reports_is_predicted_like_for_like():
    """Since 0.30 /api/ps sums llama-server's GPU buffer lines: no GPU context, and for a model with sliding-window
    and full-attention layers one KV line per device (the full-attention one is lost); before, Ollama's own total."""
    from ollama_fit.memory.estimate import kv_bytes
    from ollama_fit.provision.auto import reported_vram

    rep = ProbeReport(HW, budget(HW))
    gemma = plan(rep, PlanRequest(model="gemma3:12b", quant="Q4_K_M"), catalog())
    mem = gemma.choice.placement.memory
    assert gemma.load is not None
    assert gemma.load.engine == "llama-server"
    s = gemma.choice.model.shape
    full = [i for i in range(s.n_layer) if not s.is_swa(i)]
    spec = gemma.choice.model.spec("Q4_K_M")
    lost = kv_bytes(spec, gemma.load.runtime("cuda", True), full)
    assert 0 < lost < mem.kv_bytes
    assert reported_vram(gemma) == mem.device_bytes - mem.gpus[0].overhead_bytes - lost
    old = plan(rep, PlanRequest(model="gemma3:12b", quant="Q4_K_M", ollama=(0, 24, 0)), catalog())
    assert reported_vram(old) == old.choice.placement.memory.device_bytes  # the Go engine's own total
