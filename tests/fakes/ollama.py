"""A local fake Ollama server, faithful to ../shared/reference/ollama-api.md (checklist in its section 15).

Blob digests are checked like the server does (format, then the sha256 of the body), create validates
names, file keys and blobs, streams NDJSON with the v0.12.6+ error semantics, and `version` selects the
behaviour on either side of v0.5.5 and v0.30. Blob bodies are hashed and counted, never kept whole.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEAD = 16 << 20  # bytes of each blob kept: enough to see a GGUF header with a large tokenizer
DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
NAME = re.compile(
    rf"^(?:(?P<host>[A-Za-z0-9_][A-Za-z0-9_.:-]{{0,349}})/)?(?:(?P<ns>[A-Za-z0-9_][A-Za-z0-9_-]{{0,79}})/)?"
    rf"(?P<model>{PART})(?::(?P<tag>{PART}))?$"
)
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def normalize(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


@dataclass
class Blob:
    size: int
    head: bytes  # the first bytes, to tell GGUF from anything else


@dataclass
class Model:
    name: str
    files: dict[str, str]
    parameters: dict[str, Any]
    template: str
    digest: str
    modified_at: str = "2026-11-27T00:00:00Z"
    draft: str = ""  # the draft file's blob path a model created with DRAFT shows (server/images.go L601-604)
    # the GGUF key/values /api/show returns (long arrays emptied, as the server does): Llama 3.2 1B's
    model_info: dict[str, Any] = field(
        default_factory=lambda: {
            "general.architecture": "llama",
            "llama.block_count": 16,
            "llama.embedding_length": 2048,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.attention.key_length": 64,
            "llama.attention.value_length": 64,
            "llama.context_length": 131072,
            "llama.vocab_size": 128256,
            "tokenizer.ggml.tokens": [],
        }
    )


@dataclass
class FakeOllama:
    version: str = "0.12.10"
    blobs: dict[str, Blob] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_create_after: int | None = None  # send this many progress lines, then an error line
    generate_text: str = "Hello! I am ready."
    tokens_per_second: float = 50.0  # what generate reports in eval_count / eval_duration
    keep_head: int = HEAD  # bytes of each blob kept (tests that measure client memory keep fewer)
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)  # /api/ps: what generate loaded

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> FakeOllama:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def shards_supported(self) -> bool:
        return version_tuple(self.version) >= (0, 30)


def _handler(o: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def json(self, status: int, data: Any) -> None:
            self.reply(status, json.dumps(data).encode())

        def error(self, status: int, message: str) -> None:
            self.json(status, {"error": message})

        def body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not raw:
                return None
            return json.loads(raw)

        def route(self) -> None:
            path = self.path.split("?", 1)[0]
            with o.lock:
                o.requests.append((self.command, path))
            m = re.match(r"^/api/blobs/(.+)$", path)
            if path == "/" and self.command in ("GET", "HEAD"):
                return self.reply(200, b"Ollama is running", "text/plain")
            if path == "/api/version" and self.command in ("GET", "HEAD"):
                return self.json(200, {"version": o.version})
            if m and self.command in ("HEAD", "POST"):
                return self.blob(m.group(1))
            handlers = {
                ("POST", "/api/create"): self.create,
                ("POST", "/api/show"): self.show,
                ("GET", "/api/tags"): self.tags,
                ("DELETE", "/api/delete"): self.delete,
                ("GET", "/api/ps"): self.ps,
                ("POST", "/api/generate"): self.generate,
            }
            handler = handlers.get((self.command, path))
            if handler is None:
                known = {p for _, p in handlers} | {"/", "/api/version"}
                return self.reply(405 if path in known else 404, b"404 page not found", "text/plain")
            return handler()

        do_GET = do_HEAD = do_POST = do_DELETE = route

        # ----- blobs -----
        def blob(self, digest: str) -> None:
            if not DIGEST.match(digest):
                return self.error(400, "invalid digest format")
            key = "sha256-" + digest[7:]
            if self.command == "HEAD":
                return self.reply(200 if key in o.blobs else 404)
            if key in o.blobs:  # exists: the body is not read
                self.close_connection = True
                return self.reply(200)
            h = hashlib.sha256()
            size, head = 0, b""
            for chunk in self.chunks():
                h.update(chunk)
                if len(head) < o.keep_head:
                    head += chunk[: o.keep_head - len(head)]
                size += len(chunk)
            real = "sha256-" + h.hexdigest()
            with o.lock:
                o.blobs[real] = Blob(size, head)  # kept under its real digest, as the server does
            if "sha256:" + h.hexdigest() != digest:
                return self.error(400, f'digest mismatch, expected "{digest}", got "sha256:{h.hexdigest()}"')
            return self.reply(201)

        def chunks(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return
                    yield self.rfile.read(size)
                    self.rfile.readline()
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(1 << 20, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

        # ----- create -----
        def create(self) -> None:
            try:
                req = self.body()
            except json.JSONDecodeError as exc:
                return self.error(400, str(exc))
            if req is None:
                return self.error(400, "missing request body")
            name = req.get("model") or req.get("name") or ""
            if version_tuple(o.version) < (0, 5, 5):
                return self.error(400, "path or Modelfile are required")
            if not NAME.match(name):
                return self.error(400, "invalid model name")
            files: dict[str, str] = req.get("files") or {}
            for key in files:
                if key.startswith("/") or ".." in key.split("/"):
                    return self.error(400, "file path must be relative")
            lines = [{"status": "parsing GGUF"}]
            if not files and not req.get("from"):
                return self.stream_error(lines[:0], 400, "neither 'from' or 'files' was specified", req)
            problem = self.check_files(files)
            if problem:
                return self.stream_error(lines, *problem, req=req)
            blobs = [o.blobs["sha256-" + d[7:]] for d in files.values()]
            template = "{{ .Prompt }}" if not any(b"tokenizer.chat_template" in b.head for b in blobs) else "chatml"
            lines += [{"status": f"using existing layer {d}"} for d in files.values()]
            if template != "{{ .Prompt }}":
                lines.append({"status": "using autodetected template chatml"})
            lines += [{"status": "creating new layer sha256:" + "a" * 64}, {"status": "writing manifest"}]
            if o.fail_create_after is not None:
                return self.stream_error(lines[: o.fail_create_after], 500, "injected failure while creating", req)
            # the manifest lists the model, template and parameters layers: any change gives a new digest
            manifest = {"files": files, "parameters": req.get("parameters") or {}, "template": template}
            digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
            with o.lock:
                o.models[normalize(name)] = Model(
                    normalize(name), dict(files), dict(req.get("parameters") or {}), template, digest
                )
            self.stream([*lines, {"status": "success"}], req)

        def check_files(self, files: dict[str, str]) -> tuple[int, str] | None:
            gguf = [k for k in files if k.endswith(".gguf")]
            for key, digest in files.items():
                blob = o.blobs.get("sha256-" + digest[7:]) if DIGEST.match(digest) else None
                if blob is None:
                    return 500, f"open /root/.ollama/models/blobs/{digest.replace(':', '-')}: no such file or directory"
                if key.endswith(".gguf") and not blob.head.startswith(b"GGUF"):
                    return 400, "supplied file was not in GGUF format"
                if not key.endswith((".gguf", ".safetensors")) and not blob.head.startswith(b"GGUF"):
                    return 400, "unknown type"
            if len(gguf) > 1 and o.shards_supported:
                # server/create.go (v0.32.15): each GGUF is a layer of its own (a projector is told by its
                # metadata); the shards of a split file are merged, and must agree on their count
                counts = {SHARD.search(k).group(2) for k in gguf if SHARD.search(k)}
                if len(counts) > 1:
                    return 400, "split GGUF has 2 shard counts: shard names must follow <prefix>-0000N-of-0000M.gguf"
            return None

        def stream(self, lines: list[dict[str, Any]], req: dict[str, Any]) -> None:
            if req.get("stream") is False:
                return self.json(200, lines[-1])
            body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
            self.reply(200, body, "application/x-ndjson")

        def stream_error(self, lines: list[dict[str, Any]], status: int, message: str, req: dict[str, Any]) -> None:
            if req.get("stream") is False:
                return self.error(status, message)
            if version_tuple(o.version) < (0, 12, 6):  # always HTTP 200; the error line carries the status
                return self.stream([*lines, {"error": message, "status": status}], req)
            if not lines:  # v0.12.6+: nothing written yet -> the real status
                return self.error(status, message)
            self.stream([*lines, {"error": message}], req)

        # ----- the rest -----
        def show(self) -> None:
            req = self.body() or {}
            name = req.get("model") or req.get("name")
            if not name:
                return self.error(400, "model is required")
            model = o.models.get(normalize(name))
            if model is None:
                return self.error(404, f"model '{name}' not found")
            params = "\n".join(f"{k:<30} {json.dumps(v)}" for k, v in model.parameters.items())
            digests = list(model.files.values())
            self.json(
                200,
                {
                    "license": "",
                    "modelfile": "".join(f"FROM /blobs/{d.replace(':', '-')}\n" for d in digests)
                    + (f"DRAFT {model.draft}\n" if model.draft else ""),
                    "parameters": params,
                    "template": model.template,
                    "details": {
                        "format": "gguf",
                        "family": "llama",
                        "parameter_size": "1B",
                        "quantization_level": "Q4_K_M",
                    },
                    "model_info": model.model_info,
                    "capabilities": ["completion"],
                    "modified_at": model.modified_at,
                },
            )

        def tags(self) -> None:
            models = [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": m.modified_at,
                    "digest": m.digest,
                    "size": sum(o.blobs["sha256-" + d[7:]].size for d in m.files.values()),
                    "details": {
                        "format": "gguf",
                        "family": "llama",
                        "parameter_size": "1B",
                        "quantization_level": "Q4_K_M",
                    },
                }
                for m in o.models.values()
            ]
            self.json(200, {"models": models})

        def delete(self) -> None:
            req = self.body() or {}
            name = normalize(req.get("model") or req.get("name") or "")
            if o.models.pop(name, None) is None:
                return self.error(404, f"model '{req.get('model')}' not found")
            o.loaded.pop(name, None)
            self.reply(200)

        def ps(self) -> None:
            self.json(200, {"models": list(o.loaded.values())})

        def generate(self) -> None:
            req = self.body() or {}
            name = normalize(req.get("model") or "")
            model = o.models.get(name)
            if model is None:
                return self.error(404, f"model '{req.get('model')}' not found, try pulling it first")
            size = sum(o.blobs["sha256-" + d[7:]].size for d in model.files.values())
            ctx = int(model.parameters.get("num_ctx", 4096))
            o.loaded[name] = {
                "name": name,
                "model": name,
                "size": size + 600 * 2**20,
                "digest": model.digest,
                "details": {"format": "gguf"},
                "expires_at": "2026-11-27T00:05:00Z",
                "size_vram": size + 600 * 2**20,
                "context_length": ctx,
            }
            words = o.generate_text.split()
            done = {
                "model": name,
                "created_at": "2026-11-27T00:00:00Z",
                "response": "",
                "done": True,
                "done_reason": "stop",
                "eval_count": len(words),
                "eval_duration": int(len(words) / o.tokens_per_second * 1e9),
                "prompt_eval_count": 5,
                "prompt_eval_duration": 10_000_000,
                "total_duration": 300_000_000,
                "load_duration": 90_000_000,
            }
            time.sleep(0.01)
            if req.get("stream") is False:
                return self.json(200, done | {"response": o.generate_text})
            parts = [
                {"model": name, "created_at": "2026-11-27T00:00:00Z", "response": w + " ", "done": False} for w in words
            ]
            self.stream([*parts, done], req)

    return Handler
