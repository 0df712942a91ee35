"""Settings from the environment, read when asked (never at import), and per-user folders."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


DOWNLOAD_CONNECTIONS = 8  # ranged connections per large file (pull/auto --connections)


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_HF_ENDPOINT).rstrip("/")


def hf_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hf_token() -> str | None:
    """HF_TOKEN (or the legacy name), else the token file `hf auth login` writes. Never logged."""
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(key, "").strip()
        if value:
            return value
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    try:
        return (home / "token").read_text().strip() or None
    except OSError:
        return None


def hub_timeout(default: float) -> float:
    """Seconds to wait for a Hub API answer: HF_HUB_ETAG_TIMEOUT (huggingface_hub's own setting for metadata
    requests) when set to a positive number, else `default`."""
    try:
        value = float(os.environ.get("HF_HUB_ETAG_TIMEOUT", ""))
    except ValueError:
        return default
    return value if 0 < value < float("inf") else default


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def state_dir() -> Path:
    """Per-user state (verification markers, observations); OLLAMA_FIT_STATE_DIR overrides it."""
    if os.environ.get("OLLAMA_FIT_STATE_DIR"):
        return Path(os.environ["OLLAMA_FIT_STATE_DIR"])
    from platformdirs import user_state_path

    return user_state_path("ollama-fit")


DEFAULT_OLLAMA = "http://127.0.0.1:11434"


def ollama_host() -> str:
    """OLLAMA_HOST as the ollama client reads it: a bare host gets port 11434, http:// means 80."""
    raw = os.environ.get("OLLAMA_HOST", "").strip()
    if not raw:
        return DEFAULT_OLLAMA
    scheme, _, rest = raw.rpartition("://")
    scheme = scheme or "http"
    hostport = rest.split("/", 1)[0]
    default_port = {"http": 80, "https": 443}[scheme] if "://" in raw else 11434
    if hostport.startswith("["):  # [::1]:port
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
        host = f"[{host}]"
    else:
        host, _, port = hostport.partition(":")
    return f"{scheme}://{host or '127.0.0.1'}:{port or default_port}"


def ollama_models_dir() -> Path:
    """Where a local Ollama keeps its blobs: OLLAMA_MODELS, else the user's ~/.ollama/models."""
    if os.environ.get("OLLAMA_MODELS"):
        return Path(os.environ["OLLAMA_MODELS"])
    return Path.home() / ".ollama" / "models"


def cache_dir() -> Path:
    """Per-user cache (parsed GGUF headers); OLLAMA_FIT_CACHE_DIR overrides it."""
    if os.environ.get("OLLAMA_FIT_CACHE_DIR"):
        return Path(os.environ["OLLAMA_FIT_CACHE_DIR"])
    from platformdirs import user_cache_path

    return user_cache_path("ollama-fit")


# RAM bandwidth in GB/s above any machine's: a typo (MB/s for GB/s); the environment's and --ram-bandwidth's bound
MAX_RAM_BANDWIDTH_GBS = 10_000


def ram_bandwidth_override() -> float | None:
    """OLLAMA_FIT_RAM_BANDWIDTH_GBS: the RAM bandwidth to plan with instead of measuring it (GB/s)."""
    text = os.environ.get("OLLAMA_FIT_RAM_BANDWIDTH_GBS", "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < MAX_RAM_BANDWIDTH_GBS else None
