"""Parsed GGUF headers kept on disk by the file's sha256, so a plan reads a remote header once, not per run.

Content-addressed: the sha256 the Hub publishes names the bytes, so an entry can never go stale. A damaged
entry, or one naming a tensor type this version does not know, is ignored (and rewritten on the next read);
what an entry holds is checked against its tensor table like any header (spec_from_header).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ollama_fit.files import write_atomic
from ollama_fit.model.gguf.reader import ArrayInfo, GGUFHeader, TensorInfo
from ollama_fit.model.quants import GGML_TYPES


def _encode(value: Any) -> Any:
    if isinstance(value, ArrayInfo):
        return {"__array__": [value.type, value.count]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        return ArrayInfo(*value["__array__"])
    if isinstance(value, dict) and "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    return value


class HeaderCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.json"

    def get(self, sha256: str | None) -> GGUFHeader | None:
        if not sha256:
            return None
        try:
            data = json.loads(self._path(sha256).read_text())
            tensors = tuple(TensorInfo(str(n), tuple(map(int, s)), str(t), int(o)) for n, s, t, o in data["tensors"])
            if any(t.type not in GGML_TYPES for t in tensors):  # written by another version: read it again
                return None
            return GGUFHeader(
                version=int(data["version"]),
                metadata={k: _decode(v) for k, v in data["metadata"].items()},
                tensors=tensors,
                data_offset=int(data["data_offset"]),
                alignment=int(data["alignment"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, sha256: str | None, header: GGUFHeader) -> None:
        if not sha256:
            return
        data = {
            "version": header.version,
            "metadata": {k: _encode(v) for k, v in header.metadata.items()},
            "tensors": [[t.name, list(t.shape), t.type, t.offset] for t in header.tensors],
            "data_offset": header.data_offset,
            "alignment": header.alignment,
        }
        write_atomic(self._path(sha256), json.dumps(data))
