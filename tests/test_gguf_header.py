from __future__ import annotations

import itertools
import struct

import pytest
from conftest import tiny_shape
from ggufs import write_gguf

from ollama_fit.errors import BadModelFile
from ollama_fit.memory.estimate import Runtime, estimate, kv_bytes
from ollama_fit.model.catalog import find_model
from ollama_fit.model.gguf.reader import MAX_KV, ArrayInfo, NeedMore, parse_header, read_header, read_local_header
from ollama_fit.model.gguf.shape import spec_from_header


def test_realistic_header_gives_the_exact_spec(llama1b_gguf):
    header = read_local_header(llama1b_gguf)
    assert header.architecture == "llama"
    assert len(header.tensors) == 146
    assert isinstance(header.get("tokenizer.ggml.tokens"), ArrayInfo)
    assert header.get("tokenizer.ggml.tokens").count == 128256
    assert 4_000_000 < header.data_offset < 12_000_000  # dominated by the tokenizer arrays
    spec = spec_from_header(header, llama1b_gguf.stat().st_size)
    catalog = find_model("llama3.2:1b").spec("Q4_K_M")
    assert spec.exact
    assert spec.quant == "Q4_K_M"
    assert spec.weights_bytes == catalog.weights_bytes == 799_862_784
    assert spec.shape.n_vocab == 128256
    assert spec.shape.tied_embeddings
    assert spec.extra["chat_template"] == "yes"
    assert estimate(spec, Runtime()).device_bytes == estimate(catalog, Runtime()).device_bytes


def _small(tmp_path, **kw):
    return write_gguf(tmp_path / "m.gguf", tiny_shape(**kw), "Q8_0")


def test_sliding_window_moe_and_per_layer_metadata(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "g.gguf"
    w = gguf.GGUFWriter(path, arch="gemma3")
    w.add_block_count(6)
    w.add_embedding_length(256)
    w.add_head_count(4)
    w.add_array("gemma3.attention.head_count_kv", [2, 2, 2, 2, 2, 0])
    w.add_key_length(64)
    w.add_value_length(64)
    w.add_sliding_window(128)
    w.add_context_length(8192)
    w.add_token_list([f"t{i}" for i in range(300)])
    w.add_tensor_info(
        "token_embd.weight", (300, 256), np.dtype(np.float32), 300 * 256 * 2, gguf.GGMLQuantizationType.F16
    )
    f16 = gguf.GGMLQuantizationType.F16
    for i in range(6):  # every layer has weights; the last one (no KV) has no K projection
        w.add_tensor_info(f"blk.{i}.attn_norm.weight", (256,), np.dtype(np.float32), 256 * 2, f16)
        if i < 5:
            w.add_tensor_info(f"blk.{i}.attn_k.weight", (2 * 64, 256), np.dtype(np.float32), 128 * 256 * 2, f16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size + 2 * (300 * 256 + 6 * 256 + 5 * 128 * 256) + 32 * 12)
    spec = spec_from_header(read_local_header(path))
    assert spec.shape.swa_layers == (True, True, True, True, True, False)  # gemma3: 5 local, 1 global
    assert spec.shape.n_head_kv == (2, 2, 2, 2, 2, 0)
    assert spec.shape.n_vocab == 300
    # the sliding layers keep pad256(128 + 512) cells, the last layer is recurrent-like (no KV)
    assert kv_bytes(spec, Runtime(ctx=8192)) == 5 * 2 * 128 * 768 * 2


def test_moe_metadata(tmp_path):
    shape = tiny_shape(arch="qwen3moe", n_expert=8, n_expert_used=2, expert_ff=128)
    spec = spec_from_header(read_local_header(write_gguf(tmp_path / "moe.gguf", shape, "Q4_K_M")))
    assert (spec.shape.n_expert, spec.shape.n_expert_used, spec.shape.expert_ff) == (8, 2, 128)
    assert spec.active_params < spec.params


def test_lfs_pointer_and_html_are_recognised(tmp_path):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 123\n"
    with pytest.raises(BadModelFile, match="git-LFS pointer"):
        parse_header(pointer)
    with pytest.raises(BadModelFile, match="HTML page"):
        parse_header(b"<!DOCTYPE html><html><body>Rate limited</body></html>")
    with pytest.raises(BadModelFile, match="not a GGUF"):
        parse_header(b"PK\x03\x04 a zip file")


def test_truncated_file_fails_with_a_clear_error(tmp_path):
    path = _small(tmp_path)
    data = path.read_bytes()
    header = parse_header(data)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: header.data_offset // 2])
    with pytest.raises(BadModelFile, match="ends inside its GGUF header"):
        read_local_header(cut)
    short = tmp_path / "short.gguf"
    short.write_bytes(data[: header.data_offset + 10])
    with pytest.raises(BadModelFile, match="truncated"):
        read_local_header(short)


def _header(version=3, n_tensors=0, n_kv=0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def test_bounded_counts_and_versions():
    with pytest.raises(BadModelFile, match="unsupported GGUF version 1"):
        parse_header(_header(version=1))
    with pytest.raises(BadModelFile, match="metadata count"):
        parse_header(_header(n_kv=MAX_KV + 1))
    with pytest.raises(BadModelFile, match="tensor count"):
        parse_header(_header(n_tensors=10**12))
    huge_string = _header(n_kv=1) + struct.pack("<Q", 2**40)
    with pytest.raises(BadModelFile, match="string length"):
        parse_header(huge_string)
    with pytest.raises(NeedMore):
        parse_header(_header(n_kv=1) + struct.pack("<Q", 100) + b"abc")
    five_dims = _header(n_tensors=1) + struct.pack("<Q", 1) + b"t" + struct.pack("<I", 5)
    with pytest.raises(BadModelFile, match="5 dimensions"):
        parse_header(five_dims)
    bad_type = _header(n_tensors=1) + struct.pack("<Q", 1) + b"t" + struct.pack("<IQIQ", 1, 32, 999, 0)
    with pytest.raises(BadModelFile, match="unknown ggml type 999"):
        parse_header(bad_type)


def test_growing_reads_stop_at_the_header(tmp_path):
    path = _small(tmp_path, n_vocab=50_000)
    data = path.read_bytes()
    reads = []

    def read(start, end):
        reads.append((start, end))
        return data[start:end]

    header, used = read_header(read, len(data), first=4096)
    assert used >= header.data_offset
    assert used < 4 * header.data_offset  # doubling never overshoots by much
    assert reads[0] == (0, 4096)
    assert all(b[0] == a[1] for a, b in itertools.pairwise(reads))  # contiguous, no re-reads


@pytest.mark.parametrize(("window", "expected"), [(None, 8192), (4096, 8192), (0, 0)])
def test_llama4_attends_in_8192_token_chunks_unless_the_file_turns_it_off(tmp_path, window, expected):
    from dataclasses import replace

    from ggufs import patch_u32

    written = 0 if window is None else 4096  # no key, or a key (patched to 0 below)
    shape = replace(find_model("llama4:scout").shape, n_layer=4, n_vocab=512, sliding_window=written)
    path = write_gguf(tmp_path / "scout.gguf", shape, "Q4_K_M")
    if window == 0:
        patch_u32(path, "llama4.attention.sliding_window", 0)  # the key present and 0: chunking off
    s = spec_from_header(read_local_header(path)).shape
    assert s.sliding_window == expected
    assert [s.is_swa(i) for i in range(4)] == ([True, True, True, False] if expected else [False] * 4)
