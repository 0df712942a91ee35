"""ollama-fit: the best local LLM this machine can really run."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ollama-fit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
