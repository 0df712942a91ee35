"""Real GGUF files for tests, written with the `gguf` package.

Headers are realistic (tokenizer arrays of the real size); tensor data is left sparse: the file is extended
to its full size without writing it, so a multi-GB model costs a few MB of disk.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np

from ollama_fit.model.gguf.reader import FILE_TYPES, read_local_header
from ollama_fit.model.spec import ModelShape, Tensor, rebuild

LABEL_TO_FTYPE = {label: code for code, label in FILE_TYPES.items()}


def write_gguf(
    path: Path,
    shape: ModelShape,
    quant: str,
    *,
    vocab: int | None = None,
    merges: int = 0,
    chat_template: str | None = "{% for m in messages %}{{ m.content }}{% endfor %}",
    name: str = "Test Model",
    tensors_only: tuple[str, ...] | None = None,
    split: tuple[int, int] | None = None,
) -> Path:
    """A GGUF whose tensor table is what llama-quantize makes of `shape` at `quant` (data left sparse)."""
    spec = rebuild(shape, quant)
    n_vocab = vocab or shape.n_vocab
    arch = shape.arch
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(name)
    w.add_file_type(LABEL_TO_FTYPE[quant])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(shape.n_layer)
    w.add_context_length(shape.context_length)
    w.add_embedding_length(shape.n_embd)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv[0])
    w.add_key_length(shape.key_length)
    w.add_value_length(shape.value_length)
    if shape.sliding_window:
        w.add_sliding_window(shape.sliding_window)
    if shape.n_expert:
        w.add_expert_count(shape.n_expert)
        w.add_expert_used_count(shape.n_expert_used)
        w.add_expert_feed_forward_length(shape.expert_ff)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(n_vocab)])
    if merges:
        w.add_token_merges([f"t{i} k{i}" for i in range(merges)])
    if chat_template:
        w.add_chat_template(chat_template)
    if split:
        w.add_uint16("split.no", split[0])
        w.add_uint16("split.count", split[1])
    tensors = [t for t in spec.tensors if tensors_only is None or t.name in tensors_only]
    return finish_sparse(w, tensors, path)


def finish_sparse(w: gguf.GGUFWriter, tensors: Sequence[Tensor], path: Path) -> Path:
    """Write the tensor table after the keys already added to `w`, then extend the file to its full size
    without writing the data (sparse: it reads as zeros)."""
    for t in tensors:
        raw = gguf.GGMLQuantizationType[t.type]
        w.add_tensor_info(t.name, tuple(reversed(t.shape)), np.dtype(np.float32), t.nbytes, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header = read_local_header_unchecked(path)
    end = max((t.offset + _nbytes(t) for t in header.tensors), default=0)
    with path.open("r+b") as f:
        f.truncate(header.data_offset + end)
    read_local_header(path)  # the result must parse with the size check on
    return path


def _nbytes(t: object) -> int:
    from ollama_fit.model.gguf.reader import tensor_nbytes

    return tensor_nbytes(t)  # type: ignore[arg-type]


def read_local_header_unchecked(path: Path):  # the file is not yet extended to its full size
    from ollama_fit.model.gguf.reader import read_header

    with path.open("rb") as f:

        def read(start: int, end: int) -> bytes:
            f.seek(start)
            return f.read(end - start)

        return read_header(read, None)[0]


# ----- hand-made headers: hostile values the gguf package would not write -----

U32, I32, STR, ARR, U64 = 4, 5, 8, 9, 10
_FMT = {U32: "<I", I32: "<i", U64: "<Q"}


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def encode_gguf(kvs: list[tuple[str, int, object]], tensors: list[tuple[str, tuple[int, ...], int, int]] = ()) -> bytes:
    """A GGUF v3 header: (key, type, value) entries (STR, U32, I32, U64, or ARR of (type, values)) and
    (name, ggml shape, ggml type id, offset) tensors, padded to 32 bytes. No tensor data."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        out += _gguf_string(key) + struct.pack("<I", vtype)
        if vtype == STR:
            out += _gguf_string(str(value))
        elif vtype == ARR:
            etype, items = value  # type: ignore[misc]
            out += struct.pack("<IQ", etype, len(items))
            out += b"".join(_gguf_string(v) if etype == STR else struct.pack(_FMT[etype], v) for v in items)
        else:
            out += struct.pack(_FMT[vtype], value)
    for name, shape, type_id, offset in tensors:
        out += _gguf_string(name) + struct.pack(f"<I{len(shape)}QIQ", len(shape), *shape, type_id, offset)
    return out + b"\0" * (-len(out) % 32)


def patch_u32(path: Path, key: str, value: int) -> None:
    """Overwrite a u32 metadata value in place (the header keeps its size)."""
    with path.open("rb") as f:
        data = f.read(read_local_header_unchecked(path).data_offset)
    at = data.index(_gguf_string(key) + struct.pack("<I", U32)) + 8 + len(key) + 4
    with path.open("r+b") as f:
        f.seek(at)
        f.write(struct.pack("<I", value))
