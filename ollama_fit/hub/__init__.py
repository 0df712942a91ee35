"""Hugging Face: repository listings, quant files and shards, header range reads, one retry policy, and
verified, resumable downloads into the Hub's cache (fetch/)."""

from ollama_fit.hub.repos import Hub, HubFile, HubRef, QuantFiles

__all__ = ["Hub", "HubFile", "HubRef", "QuantFiles"]
