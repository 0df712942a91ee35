"""Hostile and contradictory GGUF headers are refused (exit 8, with a hint) before any per-layer work, and a
fuzz run of mutated real headers ends only in results or our own errors, in bounded memory."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TESTS, child_env, tiny_shape, want
from ggufs import ARR, I32, STR, U32, encode_gguf, patch_u32, read_local_header_unchecked, write_gguf

from ollama_fit.cli import cli
from ollama_fit.errors import BadModelFile
from ollama_fit.model.gguf.reader import FIRST_READ, MAX_KEPT, ArrayInfo, parse_header, read_header

HERE = ["--vram", "24GiB", "--ram", "32GiB"]  # simulated: no probing
MEMORY = 2 * 1024**3  # address space for a child: a 2^31-layer model would need ~16 GiB
F32, Q8_0 = 0, 8


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run_capped(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m ollama_fit ARGS` with its address space capped: a hostile file that makes us allocate
    per layer ends in MemoryError (exit 1), not in a machine out of memory."""
    return subprocess.run(
        [sys.executable, "-m", "ollama_fit", *args],
        env=child_env(**(env or {})),
        cwd=Path(__file__).parent / "fixtures",  # not the clone: `-m` would import whatever sits in the cwd
        capture_output=True,
        text=True,
        preexec_fn=_capped,
        check=False,
    )


def _llama_kvs(block_count: int, embedding: int = 64) -> list:
    return [
        ("general.architecture", STR, "llama"),
        ("llama.block_count", U32, block_count),
        ("llama.embedding_length", U32, embedding),
        ("llama.attention.head_count", U32, 4),
    ]


def _hostile(tmp_path: Path, tensors: list) -> Path:
    path = tmp_path / "hostile-Q4_K_M.gguf"
    path.write_bytes(encode_gguf(_llama_kvs(2**31), tensors))
    return path


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        ([], "no tensors"),
        ([("token_embd.weight", (64, 32), F32, 0)], "block_count is 2147483648 but the file has 1 tensors"),
    ],
)
def test_a_tiny_header_declaring_2_31_layers_is_refused_locally(tmp_path, tensors, says):
    path = _hostile(tmp_path, tensors)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size + 64 * 32 * 4)
    assert path.stat().st_size < 16_384
    done = run_capped("inspect", str(path), *HERE)
    assert done.returncode == 8, done.stderr
    assert says in done.stderr
    assert "Hint:" in done.stderr


def test_a_tiny_header_declaring_2_31_layers_is_refused_from_the_hub(fake_hub, tmp_path):
    path = _hostile(tmp_path, [])
    assert len(path.read_bytes()) == 192
    fake_hub.repo("acme/Hostile-GGUF").add("Hostile-Q4_K_M.gguf", path)
    done = run_capped("inspect", "hf.co/acme/Hostile-GGUF:Q4_K_M", *HERE, env={"HF_ENDPOINT": fake_hub.endpoint})
    assert done.returncode == 8, done.stderr
    assert "no tensors" in done.stderr
    assert "internal error" not in done.stderr


@pytest.fixture
def tiny_file(tmp_path):
    """4 layers, 4 heads, 2 KV heads of 64, embedding 256."""
    return write_gguf(tmp_path / "tiny-Q8_0.gguf", tiny_shape(), "Q8_0")


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("llama.block_count", 1000, "block_count is 1000 but the file has"),
        ("llama.block_count", 5, "block_count is 5 but layer 4 has no tensors"),
        ("llama.block_count", 3, "block_count is 3 but the tensor table has layer 3"),
        ("llama.block_count", 0, "block_count is 0"),
        ("llama.attention.head_count_kv", 0, "head_count_kv is 0 on every layer"),
        ("llama.attention.head_count_kv", 1, "head_count_kv is 1 for layer 0: 1 x 64 does not match"),
        ("llama.attention.head_count_kv", 8, "head_count_kv is 8, more than head_count 4"),
        ("llama.embedding_length", 128, "embedding_length is 128 but token_embd.weight has rows of 256"),
        ("llama.embedding_length", 0, "embedding_length is 0"),
        ("llama.attention.key_length", 2**20, "key_length is 1048576, larger than any tensor dimension"),
    ],
)
def test_header_values_that_contradict_the_tensor_table_exit_8(tiny_file, key, value, says):
    patch_u32(tiny_file, key, value)
    result = CliRunner().invoke(cli, ["inspect", str(tiny_file), *HERE])
    assert result.exit_code == 8, result.output
    assert says in result.stderr
    assert "Hint:" in result.stderr
    assert "internal error" not in result.stderr


def test_no_tensors_and_embedding_zero_is_not_a_model(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(encode_gguf(_llama_kvs(1, embedding=0)))
    result = CliRunner().invoke(cli, ["inspect", str(path), *HERE])
    assert result.exit_code == 8
    assert "no tensors" in result.stderr
    assert "fits" not in result.stdout


def test_expert_count_must_match_the_router(tmp_path):
    path = write_gguf(
        tmp_path / "moe.gguf", tiny_shape(arch="qwen3moe", n_expert=8, n_expert_used=2, expert_ff=64), "Q8_0"
    )
    patch_u32(path, "qwen3moe.expert_count", 16)
    result = CliRunner().invoke(cli, ["inspect", str(path), *HERE])
    assert result.exit_code == 8
    assert "expert_count is 16 but blk.0.ffn_gate_inp.weight routes to 8 experts" in result.stderr


def test_a_hybrid_model_with_recurrent_layers_and_no_op_layers_is_accepted(tmp_path):
    """Layers without K projections (recurrent, head_count_kv 0) and a DeciLM no-op layer (no heads, no FFN,
    no tensors) are real architectures, not contradictions."""
    kvs = [
        ("general.architecture", STR, "granitehybrid"),
        ("granitehybrid.block_count", U32, 4),
        ("granitehybrid.embedding_length", U32, 64),
        ("granitehybrid.attention.head_count", ARR, (U32, [4, 4, 0, 4])),
        ("granitehybrid.attention.head_count_kv", ARR, (U32, [0, 2, 0, 0])),
        ("granitehybrid.feed_forward_length", ARR, (U32, [128, 128, 0, 128])),
        ("granitehybrid.attention.key_length", U32, 16),
    ]
    tensors = [("token_embd.weight", (64, 32), F32, 0)]
    for layer in (0, 1, 3):
        tensors.append((f"blk.{layer}.attn_norm.weight", (64,), F32, 0))
        tensors.append((f"blk.{layer}.ffn_up.weight", (64, 128), F32, 0))
    tensors.append(("blk.1.attn_k.weight", (64, 2 * 16), F32, 0))
    path = tmp_path / "hybrid.gguf"
    path.write_bytes(encode_gguf(kvs, tensors))
    from ollama_fit.model.gguf.shape import spec_from_header

    spec = spec_from_header(parse_header(path.read_bytes()))
    assert spec.shape.n_layer == 4
    assert spec.shape.n_head_kv == (0, 2, 0, 0)


def test_bad_types_and_layer_names_are_refused(tmp_path):
    from ollama_fit.model.gguf.shape import spec_from_header

    tensors = [("token_embd.weight", (64, 32), F32, 0), ("blk.0.attn_norm.weight", (64,), F32, 0)]
    arch, _, *rest = _llama_kvs(1)
    cases = [
        ([arch, ("llama.block_count", STR, "one"), *rest], tensors, "not a count"),
        ([arch, ("llama.block_count", I32, -1), *rest], tensors, "out of range"),
        (_llama_kvs(1), [*tensors, ("blk.x.attn_k.weight", (64, 16), F32, 0)], "names no layer number"),
        (_llama_kvs(1), [*tensors, ("blk.0.attn_norm.weight", (64,), F32, 0)], "appears twice"),
    ]
    for kvs, table, says in cases:
        with pytest.raises(BadModelFile, match=says):
            spec_from_header(parse_header(encode_gguf(kvs, table)))


def test_a_header_of_15_million_strings_is_refused_after_the_first_read(tmp_path):
    """15 M empty strings are a 120 MB header of zeros: refused from the count, within the first read."""
    path = tmp_path / "strings.gguf"
    data = bytearray(encode_gguf([*_llama_kvs(1), ("tokenizer.ggml.tokens", ARR, (STR, []))]))
    count_at = data.index(b"tokenizer.ggml.tokens") + len("tokenizer.ggml.tokens") + 4 + 4  # type, element type
    data[count_at : count_at + 8] = (15_000_000).to_bytes(8, "little")
    path.write_bytes(bytes(data).rstrip(b"\0"))
    with path.open("r+b") as f:
        f.truncate(120_000_000)  # sparse zeros: 15 M empty strings
    read = []

    def reader(start: int, end: int) -> bytes:
        read.append(end - start)
        with path.open("rb") as f:
            f.seek(start)
            return f.read(end - start)

    with pytest.raises(BadModelFile, match="more than 4000000 strings"):
        read_header(reader, path.stat().st_size)
    assert sum(read) <= FIRST_READ


def test_many_small_arrays_are_counted_once_the_kept_budget_is_spent():
    arrays = [(f"x.a{i}", ARR, (U32, list(range(4096)))) for i in range(MAX_KEPT // 4096 + 2)]
    header = parse_header(encode_gguf(arrays))
    kept = [v for v in header.metadata.values() if isinstance(v, tuple)]
    assert sum(map(len, kept)) <= MAX_KEPT
    assert isinstance(header.get(f"x.a{len(arrays) - 1}"), ArrayInfo)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [("gemma3.block_count", 1000, "block_count is 1000"), ("gemma3.attention.head_count_kv", 0, "head_count_kv")],
)
def test_the_real_gemma_file_with_a_contradicting_header_is_refused(real_gemma, tmp_path, key, value, says):
    copy = tmp_path / real_gemma.name
    with real_gemma.open("rb") as f:
        copy.write_bytes(f.read(read_local_header_unchecked(real_gemma).data_offset))
    with copy.open("r+b") as f:
        f.truncate(real_gemma.stat().st_size)  # the weights left sparse
    assert CliRunner().invoke(cli, ["inspect", str(copy), *HERE]).exit_code == 0
    patch_u32(copy, key, value)
    result = CliRunner().invoke(cli, ["inspect", str(copy), *HERE])
    assert result.exit_code == 8
    assert says in result.stderr


# ----- fuzz -----


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory, real_gemma_found):
    """Synthetic headers (dense, MoE, sliding-window) and, when present (required under
    OLLAMA_FIT_REAL_REQUIRED), the real Gemma 3 270M header."""
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    shapes = {
        "dense": tiny_shape(n_layer=2, n_vocab=64),
        "moe": tiny_shape(arch="qwen3moe", n_layer=2, n_vocab=64, n_expert=4, n_expert_used=2, expert_ff=64),
        "swa": tiny_shape(arch="gemma3", n_layer=3, n_vocab=64, sliding_window=128),
    }
    seeds = []
    for name, shape in shapes.items():
        path = write_gguf(folder / f"{name}.gguf", shape, "Q4_K_M")
        seeds.append(_header_only(path, folder / f"{name}.header"))
    gemma = want(real_gemma_found)
    if gemma is None:
        print(f"fuzz: the real Gemma 3 270M header is not among the seeds ({real_gemma_found[1]})")
    else:
        seeds.append(_header_only(gemma, folder / "gemma-3-270m.header"))
    return seeds


def _header_only(path: Path, out: Path) -> Path:
    with path.open("rb") as f:
        out.write_bytes(f.read(read_local_header_unchecked(path).data_offset))
    return out


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the memory cap reads /proc (Linux)")
def test_fuzz_mutated_headers_fail_only_with_our_error_in_bounded_memory(fuzz_seeds):
    """3,000 mutated headers (bit flips, cuts, inserts, and counts and hyper-parameters set to edge values)
    through parse + check + spec in a child process allowed 512 MiB more than it starts with. Some must get
    through to a spec: mutations that all died at the magic bytes would test nothing past them."""
    done = subprocess.run(
        [sys.executable, str(TESTS / "fuzz_headers.py"), "3000", str(512 * 1024**2), *map(str, fuzz_seeds)],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    counted = re.search(r"fuzzed (\d+) headers from (\d+) seeds: (\d+) accepted, (\d+) refused", done.stdout)
    assert counted, done.stdout[-4000:]
    fuzzed, seeds, accepted, refused = map(int, counted.groups())
    assert seeds == len(fuzz_seeds)
    assert fuzzed >= 3000
    assert accepted > 0, done.stdout[-4000:]
    assert refused > 0, done.stdout[-4000:]


def test_a_named_pipe_is_refused_before_it_is_opened(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: stat first, refuse what is not a regular file."""
    pipe = tmp_path / "x.gguf"
    os.mkfifo(pipe)
    result = CliRunner().invoke(cli, ["inspect", str(pipe), *HERE])
    assert result.exit_code == 8
    assert "is not a regular file" in result.stderr
    assert "Hint:" in result.stderr


def test_a_damaged_header_cache_entry_is_read_again(tmp_path):
    from ollama_fit.model.gguf.cache import HeaderCache

    cache = HeaderCache(tmp_path)
    header = parse_header(encode_gguf(_llama_kvs(1), [("token_embd.weight", (64, 32), F32, 0)]))
    cache.put("a" * 64, header)
    assert cache.get("a" * 64) == header
    entry = tmp_path / f"{'a' * 64}.json"
    entry.write_text(entry.read_text().replace('"F32"', '"F99"'))
    assert cache.get("a" * 64) is None
    entry.write_text(entry.read_text().replace("[64, 32]", '["x", 32]'))
    assert cache.get("a" * 64) is None
