"""llama.cpp's --fit (placement/fit.py), decision by decision, with worked cases; then the placements the planner,
inspect and serve-cmd build on it. The real llama-server's own decisions are in test_fit_real.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from plans import run, simulated

from ollama_fit.cli import cli
from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.memory.estimate import Move, Runtime, estimate, fraction_table
from ollama_fit.model.catalog import find_model
from ollama_fit.placement.fit import DeviceLayers, FitDevice, _c_step, _Layout, fit
from ollama_fit.placement.offload import place
from ollama_fit.runtime.llama_server import pinned_args

MiB = 1024**2
GiB = 1024**3
RT = Runtime(ctx=8192, ubatch=512, runner="llama-server", backend="rpc")
HERE = Hardware((), 64 * GiB, 60 * GiB, Cpu("test", 8, 16, bandwidth_gbs=60.0))


def one(free_gib: float, margin_mib: int = 1024) -> list[FitDevice]:
    return [FitDevice(int(free_gib * GiB), margin_mib * MiB)]


def self_bytes(est, device: int = 0) -> int:
    g = next(g for g in est.gpus if g.position == device)
    return g.total_bytes - g.overhead_bytes


def test_the_false_position_step_is_c_arithmetic():
    assert _c_step(10, 5, 10) == 5
    assert _c_step(10, 0, 10) == 1  # at least one layer
    assert _c_step(10, 100, 10) == 9  # at most delta - 1
    # a negative step is stored in a uint32: it wraps to a huge one and is clamped to delta - 1
    assert _c_step(10, -1, 10) == 9


def test_a_model_that_fits_is_left_alone():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    result = fit(spec, RT, one(16))
    assert result.status == "no-change"
    assert result.ngl == -1
    assert result.estimate.full_offload


def test_a_dense_model_gets_the_most_whole_layers_that_keep_the_margin():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    devices = one(4)
    result = fit(spec, RT, devices)
    assert result.status == "fit"
    (layers,) = result.layers
    assert layers.n_part == 0
    assert not result.estimate.moves
    target = devices[0].target_bytes
    layout = _Layout(spec, RT, 1)
    assert self_bytes(layout.estimate([layers], [None])) <= target
    assert self_bytes(layout.estimate([replace(layers, n_layer=layers.n_layer + 1)], [None])) > target
    # -ngl counts the output layer: N layers on the device are the last N-1 blocks and the output
    assert result.ngl == layers.n_layer == result.estimate.gpu_layers + 1


def test_the_margin_is_the_fit_target():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    tight, loose = fit(spec, RT, one(4, 1024)), fit(spec, RT, one(4, 512))
    assert loose.ngl > tight.ngl


def test_a_user_context_is_never_lowered():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    result = fit(spec, replace(RT, ctx=131072), one(12))
    assert result.ctx == 131072
    assert result.status == "fit"


def test_an_unset_context_is_lowered_by_interpolation_to_fit_one_device():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    trained = spec.shape.context_length
    devices = one(12)
    result = fit(spec, replace(RT, ctx=trained), devices, ctx_auto=True)
    assert result.status == "ctx-reduced"
    assert result.ngl == -1
    assert 4096 <= result.ctx < trained
    assert result.ctx % 256 == 0
    # linear between the trained and the minimum context: within a few hundred tokens of the real boundary
    at = self_bytes(estimate(spec, replace(RT, ctx=result.ctx)))
    assert at <= devices[0].target_bytes + 64 * MiB


def test_an_unset_context_stops_at_the_minimum_and_then_layers_move():
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    result = fit(spec, replace(RT, ctx=spec.shape.context_length), one(5), ctx_auto=True)
    assert result.ctx == 4096
    assert result.status == "fit"
    assert result.ngl < spec.shape.n_layer + 1


MOE = find_model("qwen3.5:35b-a3b").spec("Q4_K_M")


def test_a_moe_model_whose_dense_parts_do_not_fit_keeps_only_dense_layers_on_the_device():
    result = fit(MOE, RT, one(2.5))
    (layers,) = result.layers
    assert layers.n_layer > 1
    # step 3 on the last device: one full "layer" (the lowest offloaded block keeps its experts), the rest
    # dense-only; the output layer's index n_layer has no experts to move
    assert layers.n_part == layers.n_layer - 1
    est = result.estimate
    first = MOE.shape.n_layer + 1 - layers.n_layer
    assert first not in est.cpu_expert_layers
    assert est.cpu_expert_layers == tuple(range(first + 1, MOE.shape.n_layer))
    assert result.partial_layer is None


def test_a_moe_model_whose_dense_parts_fit_gets_full_layers_front_to_back_and_a_split_one():
    devices = one(12)
    result = fit(MOE, RT, devices)
    est = result.estimate
    (layers,) = result.layers
    assert layers.n_layer == MOE.shape.n_layer + 1  # every layer's attention on the device
    assert est.gpu_layers == MOE.shape.n_layer
    experts = est.cpu_expert_layers
    assert experts
    assert experts == tuple(range(experts[0], MOE.shape.n_layer))
    partial = result.partial_layer
    assert partial is not None
    assert partial["layer"] == experts[0] - 1
    # UP is tried first, then GATE; ATTN only when UP does not fit
    layout = _Layout(MOE, RT, 1)
    target = devices[0].target_bytes
    up = self_bytes(layout.estimate([replace(layers, overflow="up")], [None]))
    if partial["keeps"] == "ATTN":
        assert up >= target
    else:
        assert up < target
    assert self_bytes(est) < target


def test_more_memory_never_means_fewer_experts_on_the_device():
    counts = [len(fit(MOE, RT, one(g)).estimate.cpu_expert_layers) for g in (6, 8, 10, 14, 18)]
    assert counts == sorted(counts, reverse=True)
    assert fit(MOE, RT, one(40)).status == "no-change"


def test_two_devices_fill_back_to_front():
    spec = find_model("qwen2.5-coder:14b").spec("Q4_K_M")
    result = fit(spec, RT, [FitDevice(4 * GiB, GiB), FitDevice(4 * GiB, GiB)])
    first, last = result.layers
    assert first.n_layer > 0
    assert last.n_layer > 0
    # the last device (with the output layer) was filled first, to its target
    layout = _Layout(spec, RT, 2)
    fuller = layout.estimate([DeviceLayers(), replace(last, n_layer=last.n_layer + 1)], [None, None])
    assert self_bytes(fuller, 1) > 3 * GiB
    est = result.estimate
    for g in est.gpus:
        assert self_bytes(est, g.position or 0) <= 3 * GiB


def test_moves_are_the_tensor_overrides_of_the_source_patterns():
    table = fraction_table(MOE)
    moe, up, gate, attn = (table[(5, f)] for f in ("moe", "up", "gate", "attn"))
    assert moe[0] == moe[1]  # only routed experts
    assert gate[0] < up[0] < attn[0]  # down; gate + down; gate + up + down (with the router and shared expert)
    assert attn[1] == moe[1]  # every fraction but the MoE one moves the experts it names and more


def test_pinned_flags_reproduce_the_fit():
    result = fit(MOE, RT, one(12))
    est = result.estimate
    from ollama_fit.placement.offload import Placement

    p = Placement("experts", est, (0,), None, result)
    args = pinned_args(p)
    assert args[:2] == ["-ngl", str(MOE.shape.n_layer + 1)]
    experts = "|".join(str(i) for i in est.cpu_expert_layers)
    assert f"blk\\.({experts})\\.ffn_(up|down|gate_up|gate)_(ch|)exps=CPU" in args
    assert any(a.startswith(f"blk\\.{result.partial_layer['layer']}\\.ffn_(") for a in args)


def test_experts_in_ram_are_priced_by_what_a_token_reads_there():
    rep = simulated(HERE, "RTX 4060", ram="32GiB")
    spec = find_model("qwen3.5:35b-a3b").spec("Q4_K_M")
    rt = replace(RT, backend="cuda")
    p = place(spec, rt, rep.budget, rep.hardware)
    assert p.kind == "experts"
    assert p.speed is not None
    whole = place(spec, rt, simulated(HERE, "RTX 4090", ram="32GiB").budget, rep.hardware)
    assert whole.kind == "gpu"
    # only the routed experts of the layers in RAM cross the CPU's bandwidth: far faster than a whole-layer
    # split of the same model on the same card (Ollama before 0.30)
    old = place(spec, replace(rt, runner="ollama"), rep.budget, rep.hardware)
    assert old.kind == "partial"
    assert p.speed.tps > 1.2 * old.speed.tps


def test_plan_shows_experts_in_ram_on_an_8gb_card():
    p = run(simulated(HERE, "RTX 4060", ram="32GiB"), model="qwen3.5:35b-a3b")
    assert p.choice.placement.kind == "experts"
    assert any("with its experts in RAM at ~" in r for r in p.reasons)
    data = p.to_dict()["choice"]["placement"]
    assert data["gpu_layers"] == find_model("qwen3.5:35b-a3b").shape.n_layer + 1
    assert data["cpu_expert_layers"]
    assert data["decided_by"] == "llama.cpp --fit"
    assert data["partial_layer"] is None or set(data["partial_layer"]) >= {"layer", "keeps"}


def test_a_raised_quant_never_moves_experts_to_ram():
    p = run(simulated(HERE, "RTX 4060", ram="32GiB"), model="granite4:small-h")
    assert p.choice.placement.kind == "experts"
    assert p.choice.quant == "Q4_K_M"
    assert any("would keep the experts of" in r and "more layer(s) in RAM" in r for r in p.reasons)


@pytest.mark.parametrize(
    ("gpu", "ram", "kind"),
    [("RTX 3060", "32GiB", "experts"), ("RTX 4070", "64GiB", "experts"), ("RTX 4090", "64GiB", "gpu")],
)
def test_big_moe_models_keep_their_experts_in_ram_on_12_to_24gb_cards(gpu, ram, kind):
    """Qwen3.5-35B-A3B Q4_K_M (about 20 GiB): its experts in RAM on a 12 GB card, at chat speed (only the
    routed experts are read from RAM); wholly on a 24 GB one."""
    p = run(simulated(HERE, gpu, ram=ram), model="qwen3.5:35b-a3b", ctx=8192)
    placement = p.choice.placement
    assert placement.kind == kind
    assert placement.speed.low >= 10
    if kind == "experts":
        assert placement.memory.gpu_layers == 40  # every layer's attention on the GPU
        assert 0 < len(placement.memory.cpu_expert_layers) < 40


@pytest.fixture(scope="module")
def moe_file(tmp_path_factory):
    """Four of Qwen3.5-35B-A3B's layers as a sparse GGUF (about 2 GB of zeros on disk as holes)."""
    from hybrid_ggufs import QWEN35MOE, write_hybrid

    return write_hybrid(tmp_path_factory.mktemp("moe") / "moe.gguf", QWEN35MOE, "Q4_K_M")


def test_serve_cmd_leaves_the_placement_to_fit_and_prints_the_pinned_flags(moe_file):
    args = ["serve-cmd", str(moe_file), "--vram", "3GiB", "--ram", "32GiB", "--ctx", "8192"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "-ngl" not in result.stdout  # llama-server's own fit makes the same decision
    assert "to pin that placement add: -ngl 5 -ot 'blk" in result.stderr
    data = json.loads(CliRunner().invoke(cli, [*args, "--headroom", "512MiB", "--json"]).stdout)
    assert data["argv"][data["argv"].index("--fit-target") + 1] == "512"
    assert data["pinned_flags"][:2] == ["-ngl", "5"]
    assert any(f.endswith("exps=CPU") for f in data["pinned_flags"])


def test_inspect_shows_the_fit_placement(moe_file):
    result = CliRunner().invoke(cli, ["inspect", str(moe_file), "--vram", "3GiB", "--ram", "32GiB", "--json"])
    assert result.exit_code == 0, result.output
    placement = json.loads(result.stdout)["estimates"][0]["placement"]
    assert placement["kind"] == "experts"
    assert placement["gpu_layers"] == 5
    assert placement["cpu_expert_layers"]
    pinned = CliRunner().invoke(
        cli, ["inspect", str(moe_file), "--vram", "3GiB", "--ram", "32GiB", "--gpu-layers", "3", "--json"]
    )
    whole = json.loads(pinned.stdout)["estimates"][0]["placement"]
    assert whole["gpu_layers"] == 3
    assert whole["cpu_expert_layers"] == []
    assert whole["partial_layer"] is None


def test_an_rpc_device_has_no_backend_context_and_cpu_compute_buffers(moe_file):
    args = ["inspect", str(moe_file), "--vram", "3GiB", "--ram", "32GiB", "--json"]
    rpc = json.loads(CliRunner().invoke(cli, [*args, "--backend", "rpc"]).stdout)["estimates"][0]
    cuda = json.loads(CliRunner().invoke(cli, [*args, "--backend", "cuda"]).stdout)["estimates"][0]
    assert rpc["memory"]["devices"][0]["overhead_bytes"] == 0
    assert cuda["memory"]["devices"][0]["overhead_bytes"] == 600 * MiB
    # without 600 MiB of CUDA context (and the expert copy CUDA makes for a large batch) more stays on it
    assert len(rpc["placement"]["cpu_expert_layers"]) < len(cuda["placement"]["cpu_expert_layers"])
    missing = CliRunner().invoke(cli, ["inspect", str(moe_file), "--backend", "rpc"])
    assert missing.exit_code != 0
    assert "--vram" in missing.output


def test_a_pinned_layer_count_is_whole_layers_as_before():
    rep = simulated(HERE, "RTX 4060", ram="32GiB")
    from ollama_fit.placement.offload import place_ngl

    p = place_ngl(MOE, replace(RT, backend="cuda"), rep.budget, 8)
    assert not p.memory.moves
    assert p.fit is None
    assert p.to_dict()["gpu_layers"] == 8


def test_an_expert_move_of_a_layer_on_the_cpu_changes_nothing():
    spec = MOE
    base = estimate(spec, replace(RT, backend="cuda"), [10])
    moved = estimate(spec, replace(RT, backend="cuda"), [10], moves=[Move(0, "moe", 10**9, 10**9)])
    assert moved.device_bytes == base.device_bytes
    assert moved.host_bytes == base.host_bytes


def test_layers_and_moves_per_device():
    layout = _Layout(MOE, RT, 2)
    split, output, moves = layout.arguments([DeviceLayers(3, 1, "up"), DeviceLayers(5, 4)], [1, None])
    n = MOE.shape.n_layer
    assert split == [3, 4]
    assert output == 1
    # the 8 offloaded are blocks n-7 .. n-1 and the output; device 0's last one is split, its part to GPU 1;
    # device 1 keeps its first full and moves the experts of the rest (index n, the output, has none)
    assert [(m.layer, m.fraction, m.to) for m in moves] == [
        (n - 5, "up", 1),
        (n - 3, "moe", None),
        (n - 2, "moe", None),
        (n - 1, "moe", None),
    ]
