"""What a model is, before any machine: the catalog, hyper-parameters and tensor tables, quant types, and
GGUF headers read from untrusted files."""

from ollama_fit.model.catalog import CatalogModel, catalog, find_model
from ollama_fit.model.quants import QuantInfo, normalize_quant, quant_table
from ollama_fit.model.spec import ModelShape, ModelSpec, Tensor, rebuild

__all__ = [
    "CatalogModel",
    "ModelShape",
    "ModelSpec",
    "QuantInfo",
    "Tensor",
    "catalog",
    "find_model",
    "normalize_quant",
    "quant_table",
    "rebuild",
]
