"""The Ollama adapter: server checks, blob uploads, create/show/delete/generate/ps.

The official `ollama` client does create, show, list, delete, generate and ps. Blob upload and the version
check go through httpx (which the client itself uses) because the client's `create_blob` hashes the file
again and never asks first whether the server already has the blob. Constructors do no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ollama_fit import config
from ollama_fit.errors import OllamaError
from ollama_fit.units import MiB

JSON_CREATE = (0, 5, 5)  # /api/create with `files`
SHARDS = (0, 30, 0)  # split GGUF imports
INSTALL_HINT = "start it with `ollama serve` (install from https://ollama.com/download), or set OLLAMA_HOST"
UPLOAD_CHUNK = 1 * MiB


@dataclass(frozen=True)
class ServerInfo:
    host: str
    version: str

    @property
    def release(self) -> tuple[int, int, int]:
        """The version as numbers (runtime/ollama.parse_version: a development build counts as the newest)."""
        from ollama_fit.runtime.ollama import parse_version

        return parse_version(self.version, strict=False)

    @property
    def json_create(self) -> bool:
        return self.release >= JSON_CREATE

    @property
    def shards(self) -> bool:
        return self.release >= SHARDS

    @property
    def local(self) -> bool:
        return urlsplit(self.host).hostname in ("127.0.0.1", "localhost", "::1", "0.0.0.0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "version": self.version,
            "json_create": self.json_create,
            "shards": self.shards,
            "local": self.local,
        }


@dataclass(frozen=True)
class Generated:
    text: str
    eval_count: int
    eval_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.eval_count / self.eval_seconds if self.eval_seconds > 0 else 0.0


class Ollama:
    def __init__(self, host: str | None = None, timeout: float = 30.0) -> None:
        self.host = (host or config.DEFAULT_OLLAMA).rstrip("/")
        self.timeout = timeout
        self._client: Any = None

    @classmethod
    def from_env(cls) -> Ollama:
        return cls(config.ollama_host())

    def client(self) -> Any:
        if self._client is None:
            import ollama  # deferred: only the commands that talk to Ollama pay for the import

            self._client = ollama.Client(host=self.host, timeout=self.timeout)
        return self._client

    def _http(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            return httpx.request(method, self.host + path, timeout=kw.pop("timeout", self.timeout), **kw)
        except httpx.ConnectError as exc:
            raise OllamaError(f"Ollama is not running at {self.host}", hint=INSTALL_HINT) from exc
        except httpx.HTTPError as exc:
            raise OllamaError(
                f"Ollama at {self.host} did not answer ({type(exc).__name__})", hint=INSTALL_HINT
            ) from exc

    def check(self) -> ServerInfo:
        """Reachable, and new enough for `/api/create` with files (v0.5.5)?"""
        response = self._http("GET", "/api/version", timeout=5)
        if response.status_code != 200:
            raise OllamaError(
                f"{self.host} answered {response.status_code} to /api/version: is it Ollama?", hint="check OLLAMA_HOST"
            )
        version = str(response.json().get("version", "0"))
        info = ServerInfo(self.host, version)
        if not info.json_create:
            raise OllamaError(
                f"Ollama {version} is too old to import GGUF files through its API (needs 0.5.5+)",
                hint="update Ollama: https://ollama.com/download",
            )
        return info

    # ----- blobs -----
    def has_blob(self, digest: str) -> bool:
        return self._http("HEAD", f"/api/blobs/{digest}").status_code == 200

    def upload(self, path: Path, digest: str, on_chunk: Callable[[int], None] = lambda n: None) -> int:
        """Stream a verified file to the server in one pass (the digest is already known); returns bytes sent,
        0 when the server already had the blob."""
        if self.has_blob(digest):
            return 0
        size = path.stat().st_size
        sent = 0

        def chunks() -> Iterator[bytes]:
            nonlocal sent
            with path.open("rb") as f:
                while block := f.read(UPLOAD_CHUNK):
                    sent += len(block)
                    on_chunk(len(block))
                    yield block

        response = self._http(
            "POST", f"/api/blobs/{digest}", content=chunks(), headers={"Content-Length": str(size)}, timeout=None
        )
        if response.status_code not in (200, 201):
            message = _error_text(response)
            raise OllamaError(f"Ollama refused {path.name}: {message}", hint="the file changed on disk? pull it again")
        return sent

    # ----- models (official client) -----
    def create(self, name: str, files: dict[str, str], parameters: dict[str, Any]) -> list[str]:
        from ollama import ResponseError

        statuses: list[str] = []
        try:
            for progress in self.client().create(model=name, files=files, parameters=parameters, stream=True):
                statuses.append(str(progress.status))
        except ResponseError as exc:
            raise OllamaError(f"Ollama could not create {name}: {exc.error}", hint="see `ollama serve` logs") from exc
        except Exception as exc:
            raise self._connection_error(exc) from exc
        return statuses

    def show(self, name: str) -> Any | None:
        from ollama import ResponseError

        try:
            return self.client().show(name)
        except ResponseError as exc:
            if exc.status_code == 404:
                return None
            raise OllamaError(f"Ollama could not show {name}: {exc.error}") from exc
        except Exception as exc:
            raise self._connection_error(exc) from exc

    def delete(self, name: str) -> None:
        from ollama import ResponseError

        try:
            self.client().delete(name)
        except ResponseError as exc:
            if exc.status_code != 404:
                raise OllamaError(f"Ollama could not delete {name}: {exc.error}") from exc

    def models(self) -> list[tuple[str, int]]:
        """(name, size in bytes) of every model Ollama has."""
        try:
            return [(str(m.model), int(m.size or 0)) for m in self.client().list().models if m.model]
        except Exception as exc:
            raise self._connection_error(exc) from exc

    def manifest_digest(self, name: str) -> str | None:
        """The digest of the model's manifest as /api/tags lists it (it changes whenever the model is created
        again, by anyone); None when Ollama has no model of that name."""
        try:
            models = self.client().list().models
        except Exception as exc:
            raise self._connection_error(exc) from exc
        wanted = canonical(name)
        return next((str(m.digest or "") for m in models if m.model and canonical(m.model) == wanted), None)

    def generate(self, name: str, prompt: str, num_predict: int = 16) -> Generated:
        from ollama import ResponseError

        try:
            r = self.client().generate(model=name, prompt=prompt, options={"num_predict": num_predict})
        except ResponseError as exc:
            raise OllamaError(f"{name} did not answer: {exc.error}", hint="see `ollama serve` logs") from exc
        except Exception as exc:
            raise self._connection_error(exc) from exc
        return Generated(str(r.response), int(r.eval_count or 0), (r.eval_duration or 0) / 1e9)

    def ps(self) -> list[Any]:
        try:
            return list(self.client().ps().models)
        except Exception as exc:
            raise self._connection_error(exc) from exc

    def _connection_error(self, exc: BaseException) -> OllamaError:
        if isinstance(exc, OllamaError):
            return exc
        return OllamaError(f"lost the connection to Ollama at {self.host} ({type(exc).__name__})", hint=INSTALL_HINT)


def _error_text(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return str(response.text)[:200]


def canonical(name: str) -> str:
    """Ollama matches names case-insensitively and adds :latest when no tag is given."""
    low = name.lower()
    return low if ":" in low.rsplit("/", 1)[-1] else low + ":latest"
