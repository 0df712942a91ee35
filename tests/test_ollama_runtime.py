"""Each Ollama rule of runtime/ollama.py with a worked case (docs/ollama.md names the source of each), and the
memory planned for each Ollama version against what the real servers allocated for the real Gemma 3 270M file
(tests/fixtures/ollama-real-gemma.jsonl: 0.32.15 and 0.24.0 on this CPU, num_ctx 2k-32k, 1-4 slots)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollama_fit.errors import InvalidInput
from ollama_fit.hardware.model import Gpu
from ollama_fit.memory.estimate import Runtime, estimate
from ollama_fit.model.gguf import read_local_header, spec_from_header
from ollama_fit.model.spec import ModelShape
from ollama_fit.runtime.ollama import (
    BATCH_STEPS,
    Machine,
    default_num_ctx,
    engine_for,
    flash_attention,
    generation_batch,
    parse_version,
    plan_load,
    predict_server_vram,
    server_argv,
    slots,
    use_mmap,
)
from ollama_fit.units import GiB, MiB

FIXTURE = Path(__file__).parent / "fixtures" / "ollama-real-gemma.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def gpu(name: str = "RTX 4090", total: int = 24 * GiB, free: int | None = None, cc: str = "8.9", **kw) -> Gpu:
    return Gpu(0, kw.pop("vendor", "nvidia"), name, total, total if free is None else free, compute_capability=cc, **kw)


# ----- versions -----


@pytest.mark.parametrize(
    ("text", "version"), [("0.32.15", (0, 32, 15)), ("v0.30.0-rc2", (0, 30, 0)), ("0.24", (0, 24, 0))]
)
def test_versions_parse(text, version):
    assert parse_version(text) == version


def test_a_version_older_than_modelled_is_refused_with_the_minimum():
    with pytest.raises(InvalidInput, match=r"older than the oldest .* \(0\.13\.0\)"):
        plan_load((0, 12, 10), None, Machine(), 8192)
    with pytest.raises(InvalidInput, match="invalid Ollama version"):
        parse_version("latest")


def test_the_program_that_runs_a_model_by_version_and_architecture():
    assert engine_for((0, 30, 0), "llama") == "llama-server"
    assert engine_for((0, 32, 15), "gemma3") == "llama-server"
    assert engine_for((0, 24, 0), "gemma3") == "ollama-engine"  # OllamaEngineRequired
    assert engine_for((0, 24, 0), "llama") == "ollama"  # the vendored llama.cpp runner


# ----- the scheduler's rules -----


def test_default_context_by_vram_tier():
    assert default_num_ctx([]) == 4096  # CPU only
    assert default_num_ctx([8 * GiB]) == 4096
    assert default_num_ctx([24 * GiB]) == 32768  # >= 23 GiB
    assert default_num_ctx([24 * GiB], gpu_overhead=2 * GiB) == 4096  # 22 GiB after OLLAMA_GPU_OVERHEAD
    assert default_num_ctx([24 * GiB, 24 * GiB]) == 262144  # >= 47 GiB over the GPUs together


def test_automatic_batch_by_context_on_a_cpu_only_machine():
    """Nothing is available on a GPU, so nothing is stepped down: the context alone decides."""
    assert [generation_batch(c, 10 * GiB, 0, "auto") for c in (2048, 4096, 4097, 32768, 32769)] == [
        512,
        512,
        1024,
        1024,
        2048,
    ]


def test_automatic_batch_steps_down_without_headroom():
    # 2048 needs the prediction within 60% of what is free and 2 GiB more under 80%
    assert generation_batch(65536, 10 * GiB, 24 * GiB, "auto") == 2048  # 10 <= 14.4 and 2 <= 19.2 - 10
    assert generation_batch(65536, 16 * GiB, 24 * GiB, "auto") == 1024  # 16 > 14.4; 16 <= 18 and 0.75 <= 3.2
    assert generation_batch(65536, 18.5 * GiB, 24 * GiB, "auto") == 512  # 18.5 > 18 (75%)
    assert generation_batch(8192, 18 * GiB, 24 * GiB, "auto") == 1024  # 18 <= 18, 0.75 <= 19.2 - 18


def test_cuda_without_flash_attention_keeps_the_small_batch():
    assert generation_batch(8192, GiB, 24 * GiB, "off", [24 * GiB]) == 512
    assert generation_batch(8192, GiB, 8 * GiB, "off", [8 * GiB]) == 256  # a card of 8 GiB or less
    assert generation_batch(4096, GiB, 8 * GiB, "off", [8 * GiB]) == 512


def test_predicted_vram_is_ollamas_own_guess():
    """Gemma 3 270M: embedding 640 over 4 heads gives 160 as the head size (the real one is 256), 1 KV head,
    18 layers: 2 x 18 x 160 x 2 bytes = 11,520 bytes a token, beside the whole file."""
    shape = ModelShape("gemma3", 18, 640, 4, (1,) * 18, 256, 256, 2048, 262144, 32768)
    assert predict_server_vram(253_113_024, shape, 8192) == 253_113_024 + 11_520 * 8192
    # HeadCountKVMin takes a recurrent layer's 0, then counts 1 head: 2 x 2 x 16 x 2 bytes a token
    hybrid = ModelShape("qwen35", 2, 64, 4, (0, 8), 16, 16, 128, 1000, 4096)
    assert predict_server_vram(0, hybrid, 100) == 2 * 2 * 1 * 16 * 100 * 2


def test_flash_attention_rule():
    assert flash_attention([]) == "auto"  # CPU only: llama.cpp turns it on
    assert flash_attention([gpu()]) == "auto"
    assert flash_attention([gpu(cc="5.2")]) == "off"  # a Maxwell card lacks it
    assert flash_attention([gpu()], env="1") == "on"
    assert flash_attention([gpu()], env="false") == "off"


def test_mmap_rule():
    assert not use_mmap([], 0, 0, 16 * GiB, 32 * GiB, "linux", 4 * GiB)  # CPU only: read into RAM
    assert not use_mmap([gpu()], 5 * GiB, 24 * GiB, 64 * GiB, 64 * GiB, "windows", 4 * GiB)  # Windows CUDA
    metal = gpu("M4 Max", 96 * GiB, vendor="apple", cc=None, unified_memory=True)
    assert use_mmap([metal], 40 * GiB, 96 * GiB, 100 * GiB, 128 * GiB, "darwin", 4 * GiB)
    assert not use_mmap(
        [metal], 120 * GiB, 96 * GiB, 100 * GiB, 128 * GiB, "darwin", 4 * GiB
    )  # a Metal partial offload
    # Linux, a model expected to fit the card: mmap unless free RAM is under the file + max(8 GB, RAM/10)
    file = 4 * GiB  # 4.29 GB; with 64 GiB of RAM the headroom is 8 GB: 12.29 GB = 11.45 GiB needed free
    assert use_mmap([gpu()], 5 * GiB, 24 * GiB, 12 * GiB, 64 * GiB, "linux", file)
    assert not use_mmap([gpu()], 5 * GiB, 24 * GiB, 11 * GiB, 64 * GiB, "linux", file)
    assert not use_mmap([gpu()], 5 * GiB, 24 * GiB, 12 * GiB, 64 * GiB, "linux", 5 * GiB)  # a bigger file


def test_some_architectures_get_one_slot_whatever_num_parallel_says():
    assert slots((0, 32, 15), "qwen35", 4) == 1
    assert slots((0, 32, 15), "gemma3", 4) == 4
    assert slots((0, 24, 0), "qwen35", 4) == 4  # a 0.30 rule


def test_the_llama_server_command_line_is_ollamas():
    load = plan_load((0, 32, 15), None, Machine(), 8192, parallel=2, kv_type="q8_0")
    assert load.argv == tuple(server_argv(load))
    argv = list(load.argv)
    assert argv[argv.index("-c") + 1] == "16384"  # num_ctx x parallel
    assert argv[argv.index("-np") + 1] == "2"
    assert argv[argv.index("--cache-type-k") + 1] == argv[argv.index("--cache-type-v") + 1] == "q8_0"
    assert argv[argv.index("-b") + 1] == argv[argv.index("-ub") + 1] == "1024"
    assert "-ngl" not in argv  # llama.cpp's --fit places the layers
    assert argv[-3:] == ["--context-shift", "--keep", "4"]


def test_a_model_without_num_ctx_gets_the_default_context_capped_at_its_own():
    shape = ModelShape("llama", 2, 64, 2, (2, 2), 32, 32, 128, 1000, 16384)
    assert plan_load((0, 32, 15), shape, Machine((gpu(total=48 * GiB),)), None).num_ctx == 16384
    assert plan_load((0, 32, 15), shape, Machine(), None).num_ctx == 4096


def test_the_runtime_keeps_ollamas_batch_at_every_context():
    """A planner's context search (replace(rt, ctx=...)) gets the batch Ollama would pick at that context."""
    from dataclasses import replace

    rt = Runtime(ctx=2048, backend="cpu", runner="llama-server", batch_steps=BATCH_STEPS)
    assert rt.ubatch == 512
    assert replace(rt, ctx=8192).ubatch == 1024
    assert replace(rt, ctx=8192, parallel=8).ubatch == 2048
    assert Runtime(ctx=65536, batch_steps=BATCH_STEPS, batch_cap=1024).ubatch == 1024


# ----- against the real servers' allocations -----


@pytest.fixture(scope="module")
def gemma_spec(real_gemma):
    return spec_from_header(read_local_header(real_gemma), real_gemma.stat().st_size)


def _close(predicted: float, logged: float) -> bool:
    return abs(predicted - logged) <= max(0.03 * logged, 16)


@pytest.mark.parametrize("row", ROWS, ids=[r["tag"] for r in ROWS])
def test_planned_memory_matches_what_the_real_server_allocated(gemma_spec, row):
    version = parse_version(row["ollama"])
    load = plan_load(version, gemma_spec.shape, Machine(), row["num_ctx"], gemma_spec.file_bytes or 0,
                     row["parallel"], row["kv_type"], env=row["env"])  # fmt: skip
    host = estimate(gemma_spec, load.runtime("cpu", flash_attn_resolved=True)).host
    weights, kv, compute = host.weights_bytes / MiB, host.kv_bytes / MiB, host.compute_bytes / MiB
    if "argv" in row:  # 0.32.15: llama-server's own buffer lines, and the command line Ollama built
        argv = list(row["argv"])
        argv[argv.index("--model") + 1], argv[argv.index("--port") + 1] = "MODEL", "PORT"
        assert list(load.argv) == argv
        assert _close(weights, sum(row["model_MiB"].values()))
        assert _close(kv, sum(c["MiB"] for c in row["kv_MiB"].values()))
        assert _close(compute, row["compute_MiB"] + row["output_MiB"])
        assert abs(kv - sum(c["MiB"] for c in row["kv_MiB"].values())) < 0.01  # KV to the byte
    else:  # 0.24.0: the Go engine's memory lines
        logged = row["logged_MiB"]
        assert load.batch == row["batch"]
        assert _close(weights, logged["model weights"])
        assert _close(kv, logged["kv cache"])
        assert _close(compute, logged["compute graph"])
        assert _close(host.total_bytes / MiB, logged["total memory"])
