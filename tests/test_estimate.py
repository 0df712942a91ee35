"""Pins the estimator to llama.cpp: exact type sizes, quant mixtures, KV and compute formulas, and the
real measurements in tests/fixtures (copies of ../shared/calibration)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import load_script

from ollama_fit.memory.estimate import PIPELINE_COPIES, Runtime, compute_bytes, estimate, kv_bytes, split_for_ngl
from ollama_fit.model.catalog import find_model
from ollama_fit.model.quants import GGML_TYPES, MixContext, tensor_type, use_more_bits
from ollama_fit.model.spec import ModelShape, rebuild

GiB, MiB, KiB = 1024**3, 1024**2, 1024
ROOT = Path(__file__).parent.parent
LLAMA3_8B = ModelShape("llama", 32, 4096, 32, (8,) * 32, 128, 128, 14336, 128256, 131072)


def test_ggml_block_sizes():
    assert GGML_TYPES["Q4_K"].nbytes(256) == 144
    assert GGML_TYPES["Q6_K"].nbytes(256) == 210
    assert GGML_TYPES["Q8_0"].nbytes(32) == 34
    assert GGML_TYPES["MXFP4"].nbytes(32) == 17
    assert GGML_TYPES["IQ4_XS"].nbytes(256) == 136


def test_use_more_bits_selects_half_of_llama3_layers():
    assert sum(use_more_bits(i, 32) for i in range(32)) == 16


# bits per weight llama.cpp's tools/quantize/README.md lists for Llama-3.1-8B
@pytest.mark.parametrize(
    ("quant", "bpw"),
    [
        ("Q2_K", 3.159),
        ("Q3_K_S", 3.643),
        ("Q3_K_L", 4.298),
        ("Q4_K_S", 4.667),
        ("Q4_K_M", 4.894),
        ("Q5_K_S", 5.570),
        ("Q5_K_M", 5.704),
        ("Q6_K", 6.563),
        ("Q8_0", 8.501),
    ],
)
def test_llama3_8b_mixtures_match_llama_cpp(quant, bpw):
    spec = rebuild(LLAMA3_8B, quant)
    assert spec.weights_bytes * 8 / spec.params == pytest.approx(bpw, abs=0.001)


def test_llama3_8b_q4_k_m_size_and_gpu_split():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    assert spec.weights_bytes / GiB == pytest.approx(4.575, abs=0.001)
    # measured: CPU buffer = token_embd (281.81 MiB), CUDA0 = everything else (4403.49 MiB)
    assert spec.token_embd_bytes / MiB == pytest.approx(281.81, abs=0.01)
    est = estimate(spec, Runtime(ctx=512, flash_attn=False))
    assert est.gpus[0].weights_bytes / MiB == pytest.approx(4403.49, abs=0.01)
    assert est.gpus[0].kv_bytes == 64 * MiB
    assert est.gpus[0].compute_bytes / MiB == pytest.approx(258.5, abs=0.01)


def test_exact_bytes_for_the_calibrated_files():
    llama = find_model("llama3.2:1b").spec("Q4_K_M")
    assert llama.weights_bytes == 799_862_784  # CPU_Mapped 762.81 MiB; the file adds a 2.8 MB header
    assert find_model("llama3.2:1b").spec("Q8_0").weights_bytes / MiB == pytest.approx(1252.41, abs=0.01)
    qwen = find_model("qwen2.5-coder:7b").spec("Q4_K_M")
    assert qwen.token_embd_bytes / MiB == pytest.approx(292.36, abs=0.01)
    assert (qwen.weights_bytes - qwen.token_embd_bytes) / MiB == pytest.approx(4168.09, abs=0.01)


def test_tied_embeddings_follow_the_output_rule_and_are_duplicated_on_the_gpu():
    spec = find_model("llama3.2:1b").spec("Q4_K_M")
    embd = next(t for t in spec.tensors if t.name == "token_embd.weight")
    assert embd.type == "Q6_K"
    assert not any(t.name == "output.weight" for t in spec.tensors)
    est = estimate(spec, Runtime())
    assert est.gpus[0].weights_bytes == spec.weights_bytes  # every layer + the embedding's GPU copy
    assert est.host.weights_bytes == spec.token_embd_bytes  # the mmapped original stays on the host


def test_row_not_divisible_by_256_falls_back_to_32_blocks():
    ctx = MixContext("Q4_K_M", "llama", 32, 4)
    assert tensor_type("blk.0.ffn_gate.weight", (4000, 11008), ctx, {}) == "Q5_0"
    assert tensor_type("blk.0.ffn_gate.weight", (4096, 11008), ctx, {}) == "Q4_K"
    assert tensor_type("blk.0.attn_norm.weight", (4096,), ctx, {}) == "F32"
    assert tensor_type("blk.0.ffn_gate_inp.weight", (4096, 128), ctx, {}) == "F32"


def test_70b_raises_attn_v_to_q5_k():
    spec = find_model("llama3.3:70b").spec("Q4_K_M")
    attn_v = {t.type for t in spec.tensors if t.name.endswith("attn_v.weight")}
    assert attn_v == {"Q5_K", "Q6_K"}


def test_moe_active_params_and_gpt_oss_size():
    moe = find_model("qwen3:30b-a3b").spec("Q4_K_M")
    assert moe.active_params / 1e9 == pytest.approx(3.35, abs=0.05)
    assert moe.params / 1e9 == pytest.approx(30.5, abs=0.1)
    oss = find_model("gpt-oss:20b").spec("MXFP4")
    assert oss.weights_bytes / 1e9 == pytest.approx(12.1, abs=0.05)  # ggml-org's gpt-oss-20b-mxfp4.gguf
    assert {t.type for t in oss.tensors if "_exps.weight" in t.name} == {"MXFP4"}


# ----- KV cache -----


def test_kv_llama3_8b_per_token_and_32k():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    assert kv_bytes(spec, Runtime(ctx=256)) == 128 * KiB * 256
    assert kv_bytes(spec, Runtime(ctx=32768)) == 4096 * MiB  # logged: llama_kv_cache size = 4096.00 MiB


def test_kv_cells_are_padded_to_256():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    assert kv_bytes(spec, Runtime(ctx=1000)) == kv_bytes(spec, Runtime(ctx=1024))


def test_kv_q8_0_counts_block_scales():
    shape = replace(LLAMA3_8B, n_layer=8, n_head_kv=(4,) * 8)  # 512 K elements per layer
    spec = rebuild(shape, "Q8_0")
    # measured: K (q8_0): 68.00 MiB for 16384 cells x 8 layers x 512 elements (K and V each)
    assert kv_bytes(spec, Runtime(ctx=16384, kv_type="q8_0")) == 2 * 68 * MiB
    assert kv_bytes(spec, Runtime(ctx=16384, kv_type="q4_0")) == 2 * 36 * MiB


def test_kv_parallel_slots_multiply():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    assert kv_bytes(spec, Runtime(ctx=8192, parallel=4)) == 4 * kv_bytes(spec, Runtime(ctx=8192))


def test_sliding_window_gemma3_27b():
    spec = find_model("gemma3:27b").spec("Q4_K_M")
    fixed = kv_bytes(spec, Runtime(ctx=256)) - 80 * KiB * 256  # 10 global layers: 80 KiB per token
    swa_at_8k = kv_bytes(spec, Runtime(ctx=8192)) - 80 * KiB * 8192
    assert swa_at_8k == 624 * MiB  # 52 SWA layers x pad256(1024 + 512) cells
    assert fixed == 52 * 256 * 16 * 128 * 2 * 2  # below the window, a sliding layer keeps only the context


def test_sliding_window_gpt_oss_20b():
    spec = find_model("gpt-oss:20b").spec("MXFP4")
    assert kv_bytes(spec, Runtime(ctx=32768)) == 24 * KiB * 32768 + 18 * MiB


def test_mla_and_recurrent_layers():
    shape = ModelShape(
        "deepseek2",
        61,
        7168,
        128,
        (1,) * 61,
        192,
        128,
        18432,
        129280,
        163840,
        mla_kv_lora_rank=512,
        mla_rope_dim=64,
    )
    spec = rebuild(replace(shape, n_layer=2, n_head_kv=(1, 1)), "Q8_0")
    mla = replace(spec, shape=shape)
    assert kv_bytes(mla, Runtime(ctx=256)) == 61 * 576 * 2 * 256  # 68.6 KiB per token, V-less
    # a Mamba-2 hybrid: three recurrent layers, then one attention layer
    hybrid = replace(
        LLAMA3_8B,
        n_head_kv=(0, 0, 0, 8) * 8,
        recurrent_layers=(True, True, True, False) * 8,
        ssm_conv=4,
        ssm_inner=8192,
        ssm_state=128,
        ssm_groups=1,
    )
    hspec = rebuild(hybrid, "Q4_K_M")
    assert kv_bytes(hspec, Runtime(ctx=4096)) == 8 * 8 * 256 * 2 * 4096
    row = 3 * (8192 + 2 * 128) + 128 * 8192  # n_embd_r + n_embd_s, F32
    est = estimate(hspec, Runtime(ctx=4096, parallel=2))
    assert est.gpus[0].kv_bytes == 2 * 8 * 8 * 256 * 2 * 4096
    assert est.gpus[0].state_bytes == 24 * 4 * row * 2  # per sequence, independent of the context
    assert est.to_dict()["state_bytes"] == est.gpus[0].state_bytes


# ----- compute buffers -----


def test_compute_fa_on_is_the_logits_buffer():
    spec = find_model("qwen2.5-coder:7b").spec("Q4_K_M")
    assert compute_bytes(spec, Runtime(ctx=32768)) == 4 * 512 * (3584 + 152064)  # 304.0 MiB, measured


def test_compute_fa_off_grows_with_context():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    small = compute_bytes(spec, Runtime(ctx=512, flash_attn=False))
    big = compute_bytes(spec, Runtime(ctx=32768, flash_attn=False))
    assert small / MiB == pytest.approx(258.5, abs=0.01)
    assert big - 4 * 512 * (1 + 4 * 4096 + 512 * 33) == 4 * 512 * (32768 - 512) * 33


def test_quantized_kv_adds_dequant_scratch_on_gpu_and_a_converted_q_on_cpu():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    f16 = compute_bytes(spec, Runtime(ctx=32768))
    q8 = compute_bytes(spec, Runtime(ctx=32768, kv_type="q8_0"))
    assert q8 - f16 == 32768 * 8 * 256 * 2
    cpu_f16 = compute_bytes(spec, Runtime(ctx=32768, backend="cpu"))
    cpu_q8 = compute_bytes(spec, Runtime(ctx=32768, kv_type="q8_0", backend="cpu"))
    assert cpu_q8 - cpu_f16 == 512 * 4096 * 34 // 32  # Q in q8_0 for the CPU's flash attention (Gemma: +0.53 MiB)


def test_multi_gpu_split_layers_and_pipeline_copies():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    est = estimate(spec, Runtime(), split=(16, 16))
    assert [g.layers for g in est.gpus] == [16, 16]
    # pipeline parallelism: each device keeps PIPELINE_COPIES copies of its graph's inputs (the masks and the
    # activations entering it), not of the whole graph
    one = compute_bytes(spec, Runtime())
    first, second = (g.compute_bytes - one for g in est.gpus)
    assert first > second > 0
    assert first < (PIPELINE_COPIES - 1) * one / 2
    assert est.gpus[1].weights_bytes - est.gpus[0].weights_bytes == spec.output_bytes
    assert sum(g.weights_bytes for g in est.gpus) + est.host.weights_bytes == spec.weights_bytes


@pytest.mark.parametrize("n", [1, 8, 20, 31])
def test_partial_offload_puts_the_last_layers_and_the_output_layer_on_the_gpu(n):
    """llama.cpp's -ngl n + 1: layers 32 - n .. 31 and the output layer on the GPU, with their KV cache; the
    input embedding and the first layers in RAM, mapped from the file (no CPU repack beside a GPU)."""
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    rt = Runtime()
    est = estimate(spec, rt, split=(n,))
    gpu, host = est.gpus[0], est.host
    on_gpu, on_cpu = range(32 - n, 32), range(32 - n)
    assert (est.gpu_layers, gpu.layers, host.layers, est.full_offload) == (n, n, 32 - n, False)
    assert gpu.weights_bytes == sum(spec.layer_bytes[i] for i in on_gpu) + spec.output_bytes
    assert host.weights_bytes == spec.token_embd_bytes + sum(spec.layer_bytes[i] for i in on_cpu)
    assert (gpu.kv_bytes, host.kv_bytes) == (kv_bytes(spec, rt, on_gpu), kv_bytes(spec, rt, on_cpu))
    assert gpu.compute_bytes == compute_bytes(spec, rt)
    assert host.evictable_bytes == 0
    assert gpu.weights_bytes + host.weights_bytes == spec.weights_bytes


def test_output_layer_alone_on_the_gpu_and_nothing_offloaded():
    spec = rebuild(LLAMA3_8B, "Q4_K_M")
    only_output = estimate(spec, Runtime(), split=(0,), output_gpu=0)  # -ngl 1
    assert only_output.gpus[0].weights_bytes == spec.output_bytes
    assert only_output.gpus[0].kv_bytes == 0
    assert only_output.host.layers == 32
    nothing = estimate(spec, Runtime(), split=(0,))  # -ngl 0
    assert nothing.gpus == ()
    assert nothing.host.weights_bytes >= spec.weights_bytes


@pytest.mark.parametrize(
    ("ngl", "weights", "expected"),
    [
        (0, (1,), ((0,), None)),
        (1, (1,), ((0,), 0)),
        (24, (1,), ((23,), 0)),  # the H100 offload run: 23 layers (KV 23 x 32 MiB = 736 MiB) + output
        (33, (1,), ((32,), 0)),
        (999, (1,), ((32,), 0)),
        (33, (1, 1), ((17, 15), 1)),  # llama.cpp's own rounding: layer k of 33 goes where k / 33 falls
        (2, (1, 1), ((1, 0), 1)),
    ],
)
def test_split_for_ngl_follows_load_tensors(ngl, weights, expected):
    assert split_for_ngl(32, ngl, weights) == expected


@pytest.mark.parametrize(
    ("n_layer", "split"),
    [(20, (10, 10)), (18, (5, 6, 7)), (32, (1, 31)), (32, (31, 1)), (3, (1, 1, 1)), (40, (10, 10)), (80, (1, 60))],
)
def test_serve_cmd_tensor_split_gives_every_gpu_its_planned_layers(n_layer, split):
    from ollama_fit.runtime.llama_server import tensor_split

    assert split_for_ngl(n_layer, sum(split) + 1, tensor_split(split)) == (split, len(split) - 1)


def test_offload_run_matches_llamas_own_buffers():
    """gpu-h100-offload.jsonl, -ngl 24: CUDA0 model 3272.87, KV 736.00, compute 258.50 MiB (+ 599 unaccounted)."""
    spec = find_model("llama3.1:8b").spec("Q4_K_M")
    split, output_gpu = split_for_ngl(32, 24)
    gpu = estimate(spec, Runtime(ctx=8192), split, output_gpu=output_gpu).gpus[0]
    assert gpu.weights_bytes / MiB == pytest.approx(3272.87, abs=1)
    assert gpu.kv_bytes == 736 * MiB
    assert gpu.compute_bytes / MiB == pytest.approx(258.50, abs=0.01)


def _calibration():
    return load_script("calibrate")


def test_every_calibration_run_is_within_target():
    rows = [r for r in _calibration().rows(ROOT / "tests" / "fixtures") if r.runner == "llama-completion"]
    assert len(rows) == 15
    for row in rows:
        assert row.ok, f"{row.name}: predicted {row.predicted_mib:.1f} MiB, measured {row.measured_mib:.1f}"
        assert abs(row.error_pct) < 0.5  # today's accuracy; loosen only with a reason


def test_every_llama_server_run_is_within_target():
    """Real llama-server (b11434) runs on the CPU: compute and output buffers per slot, across contexts, slots,
    micro-batches, flash attention and cache types. The Gemma rows need the real file (tests/real_assets.py);
    the preset rows (synthetic files of the catalog's shapes) always run."""
    rows = [r for r in _calibration().rows(ROOT / "tests" / "fixtures") if r.runner == "llama-server"]
    assert len(rows) >= 9
    for row in rows:
        assert row.ok, f"{row.name}: predicted {row.predicted_mib:.1f} MiB, measured {row.measured_mib:.1f}"
        assert abs(row.error_mib) < 1  # today's accuracy; loosen only with a reason


def test_llama_server_reserves_one_output_per_slot():
    spec = find_model("llama3.2:1b").spec("Q4_K_M")
    server = Runtime(ctx=4096, backend="cpu", runner="llama-server")
    completion = replace(server, runner="llama-completion")
    assert compute_bytes(spec, completion) == 4 * 512 * (2048 + 128256) + 4 * 512 * 2048  # 258.5 MiB, measured
    # the feed-forward phase and the f16 mask: 68.02 + 4 MiB logged by llama-server
    assert compute_bytes(spec, server) / MiB == pytest.approx(72.02, abs=0.05)
    # on a GPU too (the context's n_outputs_max is backend-independent): the feed-forward phase and the mask,
    # not 512 rows of logits (the per-token reservation of llama-completion and Ollama's old runner)
    gpu = replace(server, backend="cuda")
    assert compute_bytes(spec, gpu) == 2 * 4096 * 512 + 4 * 512 * (3 * 8192 + 5 * 2048)
    assert compute_bytes(spec, replace(gpu, runner="llama-completion")) == 4 * 512 * (2048 + 128256)
