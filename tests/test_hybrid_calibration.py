"""The estimator against what the real llama.cpp (b11434, CPU) allocated for the hybrid architectures.

tests/fixtures/hybrid-llama-cpu.jsonl holds the buffers llama-server logged for sparse GGUFs of
tests/hybrid_ggufs.py's presets (how: scripts/measure_hybrid.py, described in tests/fixtures/README.md).
These tests need no binary; the last one runs the real llama-server when it is there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import real_assets
from conftest import load_script, need
from hybrid_ggufs import MTP_PRESETS, PRESETS, preset_specs, write_hybrid

from ollama_fit.memory.estimate import Runtime, estimate
from ollama_fit.model.gguf.reader import read_local_header
from ollama_fit.model.gguf.shape import spec_from_header
from ollama_fit.units import MiB

FIXTURES = Path(__file__).parent / "fixtures"
ROWS = [json.loads(line) for line in (FIXTURES / "hybrid-llama-cpu.jsonl").read_text().splitlines() if line]


def _mib(row: dict, kind: str, where: str | None = None) -> float:
    return sum(b["mib"] for b in row["buffers"] if b["kind"] == kind and (where is None or b["where"] == where))


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    return preset_specs(tmp_path_factory.mktemp("hybrid"))


def _runtime(row: dict) -> Runtime:
    return Runtime(
        ctx=row["ctx"], kv_type=row["kv_type"], flash_attn=row["fa"] == "on", parallel=row["parallel"], backend="cpu"
    )


def test_fixture_covers_every_hybrid_preset_at_several_contexts_and_slots():
    assert {r["preset"] for r in ROWS} == set(PRESETS)
    for preset in PRESETS:
        rows = [r for r in ROWS if r["preset"] == preset]
        assert len({r["ctx"] for r in rows}) >= 3
        assert len({r["parallel"] for r in rows}) >= 3
        assert all(r["ok"] for r in rows)


@pytest.mark.parametrize(
    "row", ROWS, ids=lambda r: f"{r['preset']}-c{r['ctx']}-np{r['parallel']}-{r['kv_type']}-fa{r['fa']}"
)
def test_weights_kv_and_state_match_llama_cpp(row, specs):
    spec = specs[row["preset"]]
    est = estimate(spec, _runtime(row))
    # weights: the tensors llama.cpp maps (run without CPU repacking, whose copy the estimate adds on top)
    assert spec.weights_bytes == pytest.approx(_mib(row, "model", "CPU_Mapped") * MiB, rel=0.01)
    measured = (_mib(row, "KV") + _mib(row, "RS")) * MiB
    predicted = est.kv_bytes + est.state_bytes
    assert abs(predicted - measured) <= max(0.03 * measured, 8 * MiB)
    # each part on its own too: KV only for the attention layers, the state per sequence
    assert est.kv_bytes == pytest.approx(_mib(row, "KV") * MiB, abs=0.01 * MiB * len(row["buffers"]))
    assert est.state_bytes == pytest.approx(_mib(row, "RS") * MiB, abs=0.01 * MiB)


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r["preset"] == "mistral4"],
    ids=lambda r: f"c{r['ctx']}-np{r['parallel']}-{r['kv_type']}-fa{r['fa']}",
)
def test_mistral4_compute_matches_llama_cpp(row, specs):
    """Mistral Small 4's layers (mistral4): the graph llama-server reserved, within the bar of
    tests/test_ollama_argv.py (max(3%, 16 MiB)); measured 92-152 MiB with flash attention (estimate within
    0.05 MiB), 104.01 with a q8_0 cache (estimate 109.33: the query's conversion is counted on top), 1140.01
    with it off (1144.03)."""
    est = estimate(specs["mistral4"], _runtime(row))
    measured = _mib(row, "compute") + _mib(row, "output")
    assert abs(est.host.compute_bytes / MiB - measured) <= max(0.03 * measured, 16)


def test_mistral4_layers_are_deepseek2s_without_a_selection_bias_and_with_fused_experts(specs):
    """conversion/mistral3.py's Mistral4Model writes one ffn_gate_up_exps (the checkpoint's stacked gate_up_proj)
    and no exp_probs_b (a softmax router without a correction bias); the MLA tensors are deepseek2's."""
    names = {t.name.split(".", 2)[2] for t in specs["mistral4"].tensors if t.layer == 0}
    assert {"ffn_gate_up_exps.weight", "ffn_down_exps.weight", "attn_k_b.weight", "attn_v_b.weight"} <= names
    assert not names & {"exp_probs_b.bias", "ffn_gate_exps.weight", "ffn_up_exps.weight"}
    assert specs["mistral4"].ffn_floats == 3 * 4 * 2048  # no n_embd-wide output per used expert at the peak


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r["preset"] == "glm_dsa"],
    ids=lambda r: f"c{r['ctx']}-np{r['parallel']}-{r['kv_type']}-fa{r['fa']}",
)
def test_glm_dsa_compute_matches_llama_cpp(row, specs):
    """GLM-5.2's layers (glm-dsa): the graph llama-server reserved, measured 244.08-492.08 MiB with flash
    attention (the top-k phase's 12 bytes a cell and token overtaking the attention phase's 4 beyond 32768
    cells), 268.08 with a q8_0 cache, 2332.08 with it off; the estimate within 0.1 MiB of each."""
    est = estimate(specs["glm_dsa"], _runtime(row))
    measured = _mib(row, "compute") + _mib(row, "output")
    assert est.host.compute_bytes / MiB == pytest.approx(measured, abs=0.1)


def test_glm_dsa_indexer_only_in_the_layers_that_run_one(specs):
    """GLM-5.2's IndexShare: layer 2 runs a lightning indexer (its tensors, a key row of 128 per cell in the
    indexer cache), layer 3 reuses its top-k and has neither; every row's second KV buffer is that one layer's."""
    spec = specs["glm_dsa"]
    assert spec.shape.indexer_layers == (True, False)
    kinds = [{t.name.split(".", 2)[2] for t in spec.tensors if t.layer == i} for i in range(2)]
    indexer = {"indexer.k_norm.weight", "indexer.k_norm.bias", "indexer.proj.weight", "indexer.attn_k.weight"}
    assert indexer | {"indexer.attn_q_b.weight", "attn_k_b.weight", "ffn_gate.weight"} <= kinds[0]
    assert not {k for k in kinds[1] if k.startswith("indexer")}
    assert {"exp_probs_b.bias", "ffn_gate_exps.weight", "ffn_up_shexp.weight"} <= kinds[1]
    for row in (r for r in ROWS if r["preset"] == "glm_dsa"):
        main, lid = (b["mib"] for b in row["buffers"] if b["kind"] == "KV")
        assert main == pytest.approx(lid * 2 * 576 / 128, abs=0.1)  # 2 layers of 512 + 64 against 1 of 128


def test_the_mtp_block_is_in_the_file_but_not_loaded():
    """Qwen3.5/Next, GLM-4.5+ and DeepSeek files keep a multi-token-prediction block that llama.cpp skips."""
    mtp = [r for r in ROWS if r["preset"] in MTP_PRESETS]
    assert {r["preset"] for r in mtp} == set(MTP_PRESETS)
    assert all(r["mtp_block"] and r["unused_tensors"] > 0 for r in mtp)


@pytest.mark.parametrize(("runner", "preset"), [("server", "lfm2"), ("lib", "lfm2"), ("server", "gemma4e2b")])
def test_real_llama_cpp_when_present(runner, preset, tmp_path, monkeypatch):
    """One live load (3 slots) in this machine's llama.cpp build, when it is there: the LFM2 preset through each
    runner, and Gemma 4 E2B's layout (shared caches, sliding / full head dims, double-wide FFN) through the server.
    The build is found by tests/real_assets.py: skipped when absent, a failure under OLLAMA_FIT_REAL_REQUIRED."""
    if os.environ.get("OLLAMA_FIT_SKIP_REAL_LLAMA"):
        need((None, "OLLAMA_FIT_SKIP_REAL_LLAMA is set"))
    measure = load_script("measure_hybrid")
    path = write_hybrid(tmp_path / f"{preset}.gguf", PRESETS[preset], "Q4_K_M")
    if runner == "server":
        log = measure.run_server(need(real_assets.llama_server()), path, 8192, 3, "on", "f16")
    else:
        build = need(real_assets.llama_build())
        need((Path(gcc) if (gcc := shutil.which("gcc")) else None, "no gcc to build scripts/hybrid_load.c"))
        # the script's compile step reads these: the same build and source tree real_assets found
        monkeypatch.setenv("LLAMA_CPP_BUILD", str(build))
        monkeypatch.setenv("LLAMA_CPP_SRC", str(real_assets.llama_src_path()))
        log = measure.run_lib(measure.lib_runner(tmp_path), path, 8192, 3, "on", "f16")
    row = {"buffers": measure.parse_buffers(log)}
    assert row["buffers"], log[-2000:]
    spec = spec_from_header(read_local_header(path), path.stat().st_size)
    est = estimate(spec, Runtime(ctx=8192, parallel=3, backend="cpu"))
    assert est.kv_bytes == pytest.approx(_mib(row, "KV") * MiB, abs=0.02 * MiB)
    assert est.state_bytes == pytest.approx(_mib(row, "RS") * MiB, abs=0.02 * MiB)
    assert spec.weights_bytes == pytest.approx(_mib(row, "model", "CPU_Mapped") * MiB, rel=0.01)
