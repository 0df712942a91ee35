"""GGUF files: the bounded header reader, its cross-checks against the tensor table, the mapping to a model
shape, and the on-disk cache of parsed headers."""

from ollama_fit.model.gguf.reader import GGUFHeader, TensorInfo, read_header, read_local_header
from ollama_fit.model.gguf.shape import shape_from_metadata, spec_from_header

__all__ = ["GGUFHeader", "TensorInfo", "read_header", "read_local_header", "shape_from_metadata", "spec_from_header"]
