"""Talking to an Ollama server: the client adapter, registration with ownership records, the doctor's checks,
and what real loads teach about this machine."""

from ollama_fit.ollama.client import Ollama, ServerInfo

__all__ = ["Ollama", "ServerInfo"]
