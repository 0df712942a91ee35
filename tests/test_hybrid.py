"""Hybrid architectures: KV only where llama.cpp allocates it, recurrent state per sequence, what is loaded."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ggufs import write_gguf
from hybrid_ggufs import GRANITE_H, LFM2, QWEN35, QWEN35MOE, write_hybrid

from ollama_fit.memory.estimate import Runtime, estimate, kv_bytes, state_bytes
from ollama_fit.model.gguf.reader import read_local_header
from ollama_fit.model.gguf.shape import spec_from_header
from ollama_fit.model.spec import ModelShape, rebuild
from ollama_fit.plan.inspect import summarize
from ollama_fit.units import MiB


def header_spec(path):
    return spec_from_header(read_local_header(path), path.stat().st_size)


def test_qwen35_file_with_mtp_block_loads_like_llama_cpp(tmp_path):
    spec = header_spec(write_hybrid(tmp_path / "q.gguf", QWEN35, "Q4_K_M", mtp=True))
    s = spec.shape
    assert s.n_layer == 8  # block_count 9 less nextn_predict_layers 1
    assert [s.is_recurrent(i) for i in range(8)] == [True, True, True, False] * 2
    assert all(t.layer is None or t.layer < 8 for t in spec.tensors)  # the MTP block (blk.8) is not allocated
    assert spec.weights_bytes == rebuild(QWEN35, "Q4_K_M").weights_bytes
    assert int(spec.extra["skipped_tensors"]) == 15
    rt = Runtime(ctx=8192, parallel=3)
    # two attention layers: 4 KV heads x (256 + 256) x 8192 cells x 2 bytes, per slot
    assert kv_bytes(spec, rt) == 2 * 4 * 512 * 8192 * 2 * 3
    # six delta-net layers: r = (d_conv - 1) x (d_inner + 2 x n_group x d_state), s = d_state x d_inner (F32)
    row = 3 * (4096 + 2 * 16 * 128) + 128 * 4096
    assert state_bytes(spec, rt) == 6 * 4 * row * 3
    assert state_bytes(spec, replace(rt, ctx=65536)) == state_bytes(spec, rt)  # independent of the context
    assert any("multi-token-prediction" in n for n in spec.memory_notes)


def test_qwen35_moe_rebuild_matches_the_header(tmp_path):
    spec = header_spec(write_hybrid(tmp_path / "m.gguf", QWEN35MOE, "Q4_K_M", mtp=True))
    assert spec.shape.n_expert == 256
    assert spec.weights_bytes == rebuild(QWEN35MOE, "Q4_K_M").weights_bytes
    assert kv_bytes(spec, Runtime(ctx=4096)) == 1 * 2 * 512 * 4096 * 2


def test_granite_and_lfm2_state(tmp_path):
    granite = header_spec(write_hybrid(tmp_path / "g.gguf", GRANITE_H, "Q8_0"))
    assert [granite.shape.has_kv(i) for i in range(4)] == [False, False, False, True]
    assert state_bytes(granite, Runtime()) == 3 * 4 * (3 * (8192 + 256) + 128 * 8192)
    lfm2 = header_spec(write_hybrid(tmp_path / "l.gguf", LFM2, "Q8_0"))
    assert state_bytes(lfm2, Runtime(parallel=2)) == 4 * 4 * 2048 * 2 * 2  # conv: n_embd x (L_cache - 1)
    assert kv_bytes(lfm2, Runtime(ctx=1024)) == 2 * 8 * 128 * 1024 * 2


def test_state_sits_with_its_layers_and_is_reported_apart():
    spec = rebuild(QWEN35, "Q4_K_M")
    rt = Runtime(ctx=4096)
    est = estimate(spec, rt, split=(4, 4))
    per_layer = 4 * (3 * (4096 + 4096) + 128 * 4096)
    assert [g.state_bytes for g in est.gpus] == [3 * per_layer, 3 * per_layer]
    assert est.to_dict()["state_bytes"] == 6 * per_layer
    assert est.to_dict()["devices"][0]["state_bytes"] == 3 * per_layer
    assert est.gpus[0].total_bytes - est.gpus[0].kv_bytes - est.gpus[0].state_bytes > 0
    cpu = estimate(spec, replace(rt, backend="cpu"))
    assert cpu.host.state_bytes == 6 * per_layer


def test_gemma4_layers_reusing_a_cache_and_their_own_head_dims():
    shape = ModelShape(
        "gemma4",
        6,
        1024,
        8,
        (2,) * 6,
        512,
        512,
        4096,
        1000,
        131072,
        sliding_window=512,
        swa_layers=(True, True, False, True, True, False),
        swa_key_length=256,
        swa_value_length=256,
        kv_layers=4,
    )
    spec = rebuild(replace(shape, arch="gemma3"), "Q8_0")
    spec = replace(spec, shape=shape)
    rt = Runtime(ctx=8192, ubatch=512)
    # layers 0, 1 (sliding, 1024 cells x 256-dim heads) and 2, 3 (global 8192 cells x 512, sliding 1024 x 256)
    expected = 3 * 2 * 512 * 1024 * 2 + 2 * 1024 * 8192 * 2
    assert kv_bytes(spec, rt) == expected


def test_unknown_architecture_is_a_labelled_bound_never_a_crash(tmp_path):
    base = ModelShape("mysteryarch", 4, 512, 8, (2,) * 4, 64, 64, 1024, 1000, 4096)
    path = write_gguf(tmp_path / "x.gguf", base, "Q8_0")
    spec = header_spec(path)
    assert not spec.shape.modelled
    assert spec.weights_bytes == rebuild(base, "Q8_0").weights_bytes  # weights exactly from the tensor table
    assert kv_bytes(spec, Runtime(ctx=1024)) == 4 * 2 * 128 * 1024 * 2  # every layer, full context
    facts = summarize(spec)
    assert facts["memory_model"] == "bound"
    assert any("conservative bound" in n for n in facts["notes"])


@pytest.mark.parametrize("slots", [1, 4])
def test_state_scales_with_slots_not_context(slots):
    spec = rebuild(GRANITE_H, "Q4_K_M")
    small, large = Runtime(ctx=1024, parallel=slots), Runtime(ctx=131072, parallel=slots)
    assert state_bytes(spec, small) == state_bytes(spec, large) == slots * state_bytes(spec, Runtime())
    assert kv_bytes(spec, large) == 128 * kv_bytes(spec, small)
    assert state_bytes(spec, Runtime()) < 13 * MiB


def test_nemotron_h_three_layer_kinds(tmp_path):
    from hybrid_ggufs import NEMOTRON_H

    spec = header_spec(write_hybrid(tmp_path / "n.gguf", NEMOTRON_H, "Q8_0"))
    s = spec.shape
    assert [s.is_recurrent(i) for i in range(6)] == [True, False, True, False, True, False]  # Mamba-2 layers
    assert [s.has_kv(i) for i in range(6)] == [False] * 5 + [True]  # FFN-only layers have neither
    assert spec.weights_bytes == rebuild(NEMOTRON_H, "Q8_0").weights_bytes
    assert state_bytes(spec, Runtime()) == 3 * 4 * (3 * (8192 + 2 * 8 * 128) + 128 * 8192)


def test_gemma4_file_per_layer_embeddings_on_the_host_and_shared_caches(tmp_path):
    from hybrid_ggufs import GEMMA4

    spec = header_spec(write_hybrid(tmp_path / "g4.gguf", GEMMA4, "Q8_0"))
    s = spec.shape
    assert s.kv_layers == 4
    assert (s.swa_key_length, s.key_length) == (256, 512)
    assert [s.has_kv(i) for i in range(6)] == [True] * 4 + [False] * 2
    ple = next(t for t in spec.tensors if t.name == "per_layer_token_embd.weight")
    assert spec.input_bytes == spec.token_embd_bytes + ple.nbytes  # the input layer, kept on the host
    est = estimate(spec, Runtime(ctx=4096), split=(6,))
    assert est.host.weights_bytes == spec.input_bytes
    assert est.gpus[0].weights_bytes == sum(spec.layer_bytes) + spec.output_bytes
    # 2 sliding layers (pad256(512 + 512) cells, 256-dim heads) and 2 full layers (4096 cells, 512-dim heads)
    assert est.kv_bytes == 2 * 2 * 512 * 1024 * 2 + 2 * 2 * 1024 * 4096 * 2


@pytest.mark.parametrize(
    ("key", "value"),
    [("ssm.conv_kernel", "four"), ("nextn_predict_layers", 9), ("attention.shared_kv_layers", -1)],
)
def test_damaged_hybrid_keys_are_a_clear_error(tmp_path, key, value):
    from ollama_fit.errors import BadModelFile
    from ollama_fit.model.gguf.reader import GGUFHeader

    header = read_local_header(write_hybrid(tmp_path / "q.gguf", QWEN35, "Q8_0", mtp=True))
    bad = GGUFHeader(header.version, header.metadata | {f"qwen35.{key}": value}, header.tensors, header.data_offset, 32)
    with pytest.raises(BadModelFile, match=r"qwen35"):
        spec_from_header(bad)
