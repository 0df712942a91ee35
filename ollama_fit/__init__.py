"""ollama-fit: the best local LLM this machine can really run."""

# The one place the version is written: pyproject.toml reads it from here (hatch's dynamic version), and
# keeping it a literal spares every command the ~60 ms importlib.metadata costs at start-up.
__version__ = "0.1.0"
