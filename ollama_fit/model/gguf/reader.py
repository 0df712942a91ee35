"""Bounded GGUF header parsing: metadata and the tensor table, never tensor data.

Input is untrusted (a download, a Range read of a remote file), so every count and length is capped and
a short buffer raises `NeedMore` with the size to ask for, letting callers read headers in growing chunks.
Big arrays (the tokenizer's tokens and merges) are counted and skipped, not kept.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_fit.errors import BadModelFile
from ollama_fit.model.quants import GGML_BY_ID

MAGIC = b"GGUF"
MAX_KV = 65_536
MAX_TENSORS = 100_000  # the largest published models have a few thousand tensors
MAX_ARRAY = 16_000_000  # the largest tokenizers have about 1M entries
MAX_STRINGS = 4_000_000  # strings in all arrays together: 4x the biggest tokenizer (tokens + merges)
MAX_STRING = 16 * 1024**2  # chat templates are kilobytes; 16 MiB is generous
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_HEADER = 64 * 1024**2  # @huggingface/gguf stops at 50 MB
KEEP_ARRAY = 4096  # arrays up to this length are kept (per-layer hyper-parameters), longer ones counted
MAX_KEPT = 262_144  # array entries kept in all: a header of small arrays cannot grow ten times in memory
FIRST_READ = 4 * 1024**2

# general.file_type -> quant label (llama.cpp's llama_ftype)
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}
_U64 = struct.Struct("<Q")
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class NeedMore(Exception):
    """The buffer ended inside the header; read at least `size` bytes and try again."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass(frozen=True)
class ArrayInfo:
    """A long metadata array, summarised: its element type and length."""

    type: int
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order
    type: str
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any] = field(hash=False)
    tensors: tuple[TensorInfo, ...]
    data_offset: int  # header size: where tensor data starts
    alignment: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.get("general.architecture", "unknown"))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)


class _Reader:
    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = memoryview(buf)
        self.pos = 0
        self.strings = 0  # array strings seen so far, capped at MAX_STRINGS
        self.kept = 0  # array entries kept as Python objects so far

    def keep(self, n: int) -> bool:
        """Keep an array of `n` entries, or only count it (long ones, and any once MAX_KEPT is reached)."""
        if n > KEEP_ARRAY or self.kept + n > MAX_KEPT:
            return False
        self.kept += n
        return True

    def take(self, n: int) -> memoryview:
        self.need(n)
        view = self.buf[self.pos : self.pos + n]
        self.pos += n
        return view

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def count(self, what: str, limit: int) -> int:
        n = self.scalar("<Q")
        if n > limit:
            raise BadModelFile(f"GGUF {what} count {n} exceeds {limit}", hint="the file is damaged or not a GGUF")
        return int(n)

    def string(self) -> str:
        n = self.count("string length", MAX_STRING)
        return bytes(self.take(n)).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.scalar("<I")
            n = self.count("array", MAX_ARRAY)
            return self.array(etype, n)
        raise BadModelFile(f"unknown GGUF value type {vtype}", hint="the file is damaged or from a newer format")

    def array(self, etype: int, n: int) -> Any:
        if etype in _SCALARS:
            size = struct.calcsize(_SCALARS[etype])
            raw = self.take(size * n)
            if not self.keep(n):
                return ArrayInfo(etype, n)
            return tuple(struct.unpack(f"<{n}{_SCALARS[etype][1]}", raw))
        if etype == _STRING:
            self.strings += n
            if self.strings > MAX_STRINGS:
                raise BadModelFile(
                    f"GGUF header holds more than {MAX_STRINGS} strings", hint="the file is damaged or hostile"
                )
            self.need(8 * n)  # every string has at least its 8-byte length: fail or ask for more at once
            if not self.keep(n):
                self.skip_strings(n)
                return ArrayInfo(etype, n)
            return tuple(self.string() for _ in range(n))
        raise BadModelFile(f"unsupported GGUF array element type {etype}", hint="the file is damaged")

    def need(self, n: int) -> None:
        """At least `n` more bytes must follow: refuse past MAX_HEADER, ask for more when the buffer is short."""
        end = self.pos + n
        if end > len(self.buf):
            if end > MAX_HEADER:
                raise BadModelFile(f"GGUF header larger than {MAX_HEADER >> 20} MiB", hint="the file is damaged")
            raise NeedMore(end)

    def skip_strings(self, n: int) -> None:
        """Skip `n` strings in one tight loop: tokenizers hold hundreds of thousands."""
        buf, pos, size, unpack = self.buf, self.pos, len(self.buf), _U64.unpack_from
        for _ in range(n):
            if pos + 8 > size:
                self.need(pos + 8 - self.pos)
            (length,) = unpack(buf, pos)
            if length > MAX_STRING:
                raise BadModelFile(f"GGUF string length {length} exceeds {MAX_STRING}", hint="the file is damaged")
            pos += 8 + length
        self.need(pos - self.pos)
        self.pos = pos


def _check_magic(head: bytes) -> None:
    if head.startswith(MAGIC):
        return
    text = head[:64].lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        raise BadModelFile(
            "got a git-LFS pointer instead of the GGUF file",
            hint="download through the Hub's resolve URL (git clone without git-lfs gives pointers)",
        )
    if text.startswith((b"<!doctype", b"<html", b"<")):
        raise BadModelFile("got an HTML page instead of a GGUF file", hint="check the URL, the token and the proxy")
    raise BadModelFile(f"not a GGUF file (starts with {bytes(head[:4])!r})", hint="check the file name and source")


def parse_header(buf: bytes | memoryview, file_size: int | None = None) -> GGUFHeader:
    """Parse a GGUF header from the first bytes of a file. Raises NeedMore when `buf` is too short."""
    r = _Reader(buf)
    if len(r.buf) < 4:
        raise NeedMore(24)
    _check_magic(bytes(r.buf[:64]))
    r.take(4)
    version = r.scalar("<I")
    if version not in (2, 3):
        raise BadModelFile(f"unsupported GGUF version {version}", hint="ollama-fit reads GGUF v2 and v3")
    n_tensors = r.count("tensor", MAX_TENSORS)
    n_kv = r.count("metadata", MAX_KV)
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.scalar("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("<I")
        if not 1 <= n_dims <= MAX_DIMS:
            raise BadModelFile(f"tensor {name!r} has {n_dims} dimensions", hint="the file is damaged")
        shape = tuple(r.scalar("<Q") for _ in range(n_dims))
        type_id = r.scalar("<I")
        offset = r.scalar("<Q")
        ggml = GGML_BY_ID.get(type_id)
        if ggml is None:
            raise BadModelFile(f"tensor {name!r} has unknown ggml type {type_id}", hint="update ollama-fit")
        if any(d == 0 or d > 1 << 40 for d in shape):
            raise BadModelFile(f"tensor {name!r} has an impossible shape {shape}", hint="the file is damaged")
        tensors.append(TensorInfo(name, shape, ggml.name, offset))
    alignment = meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise BadModelFile(f"invalid general.alignment {alignment!r}", hint="the file is damaged")
    data_offset = -(-r.pos // alignment) * alignment
    header = GGUFHeader(version, meta, tuple(tensors), data_offset, alignment)
    if file_size is not None:
        _check_extent(header, file_size)
    return header


def tensor_nbytes(t: TensorInfo) -> int:
    from ollama_fit.model.quants import GGML_TYPES

    n = 1
    for d in t.shape:
        n *= d
    return GGML_TYPES[t.type].nbytes(n)


def _check_extent(header: GGUFHeader, file_size: int) -> None:
    end = max((t.offset + tensor_nbytes(t) for t in header.tensors), default=0)
    if header.data_offset + end > file_size:
        raise BadModelFile(
            f"the file is truncated: its tensors need {header.data_offset + end} bytes but it has {file_size}",
            hint="download it again",
        )


Read = Callable[[int, int], bytes]  # (start, end exclusive) -> bytes


def read_header(read: Read, file_size: int | None = None, first: int = FIRST_READ) -> tuple[GGUFHeader, int]:
    """Parse a header by reading growing prefixes; returns it and the number of bytes read."""
    want = min(first, file_size) if file_size else first
    buf = b""
    while True:  # each pass grows `buf` or raises, and `buf` is capped at MAX_HEADER
        asked = want - len(buf)
        chunk = read(len(buf), want) if asked > 0 else b""
        buf += chunk
        at_end = (asked > 0 and len(chunk) < asked) or (file_size is not None and len(buf) >= file_size)
        try:
            return parse_header(buf, file_size), len(buf)
        except NeedMore as more:
            if at_end:
                raise BadModelFile("the file ends inside its GGUF header", hint="download it again") from None
            want = min(max(more.size, len(buf) * 2), MAX_HEADER, file_size or MAX_HEADER)


def read_local_header(path: Path) -> GGUFHeader:
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):  # a named pipe or a device would block the read, or never end
            raise BadModelFile(f"{path} is not a regular file", hint="name a .gguf file on disk")
        size = st.st_size
        with path.open("rb") as f:

            def read(start: int, end: int) -> bytes:
                f.seek(start)
                return f.read(end - start)

            return read_header(read, size)[0]
    except FileNotFoundError as exc:
        raise BadModelFile(f"{path} does not exist", hint="check the path") from exc
    except IsADirectoryError as exc:
        raise BadModelFile(f"{path} is a folder, not a GGUF file", hint="name the .gguf file") from exc
