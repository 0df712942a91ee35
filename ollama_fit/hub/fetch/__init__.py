"""Verified, resumable, parallel downloads into the Hugging Face cache (see fetcher.py for the whole story)."""

from ollama_fit.hub.fetch.fetcher import CONNECTIONS, Fetched, Fetcher, Listener, Progress
from ollama_fit.hub.fetch.layout import PARTIAL, RANGES, existing_parent
from ollama_fit.hub.fetch.ranges import done_bytes

__all__ = [
    "CONNECTIONS",
    "PARTIAL",
    "RANGES",
    "Fetched",
    "Fetcher",
    "Listener",
    "Progress",
    "done_bytes",
    "existing_parent",
]
