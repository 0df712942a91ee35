#!/usr/bin/env python3
"""Run the real llama-server on a GGUF at several settings and record every buffer it logs (JSONL, in the
format of ../shared/calibration: the calibration rows scripts/calibrate.py checks).

    python scripts/measure_llama_server.py MODEL.gguf [OUT.jsonl]     (default OUT: stdout)

The binary: $LLAMA_SERVER, else scripts/build_llama_cpp.sh's cache. Each run binds a free loopback port,
waits (bounded) until /health answers 200, and is always terminated. The tests use `LlamaServer` too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

BUFFER = re.compile(r"(\S+)\s+(model|KV|RS|output|compute) buffer size =\s+([\d.]+) MiB")
# (-c, -np, -ub, -fa, KV type): contexts, slots and micro-batches, flash attention on and off, a quantized cache
RUNS = [
    (4096, 1, 512, "on", "f16"),
    (8192, 1, 512, "on", "f16"),
    (32768, 1, 512, "on", "f16"),
    (8192, 4, 512, "on", "f16"),
    (32768, 4, 512, "on", "f16"),
    (8192, 1, 128, "on", "f16"),
    (8192, 1, 2048, "on", "f16"),
    (32768, 8, 1024, "on", "f16"),
    (8192, 1, 512, "off", "f16"),
    (32768, 2, 512, "off", "f16"),
    (16384, 1, 512, "on", "q8_0"),
]


def default_binary() -> Path:
    if os.environ.get("LLAMA_SERVER"):
        return Path(os.environ["LLAMA_SERVER"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ollama-fit" / "llama.cpp"
    return Path(os.environ.get("OLLAMA_FIT_LLAMA_CACHE") or cache) / "build-11434" / "bin" / "llama-server"


def built_binary() -> Path | None:
    """The llama-server the measurements run, or None (said on stderr) when it is not built."""
    binary = default_binary()
    if binary.exists():
        return binary
    print(f"no llama-server at {binary} (run scripts/build_llama_cpp.sh, or set LLAMA_SERVER)", file=sys.stderr)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_buffers(log: str) -> list[dict[str, Any]]:
    return [{"where": w, "kind": k, "mib": float(m)} for w, k, m in BUFFER.findall(log)]


class LlamaServer:
    """A llama-server process on loopback: started with `args` (which must bind 127.0.0.1 and `port`), ready
    once /health answers 200 within `timeout` seconds, and always stopped (TERM, then KILL) on exit."""

    def __init__(self, binary: Path, args: list[str], port: int, timeout: float = 240.0) -> None:
        self.binary, self.args, self.port, self.timeout = binary, args, port, timeout
        self.log_file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the object, closed on exit
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def __enter__(self) -> LlamaServer:
        cmd = [str(self.binary), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"llama-server not healthy after {self.timeout:.0f} s:\n{self.log()[-3000:]}")

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
        self.log_file.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def get(self, path: str, timeout: float = 30.0) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            result: dict[str, Any] = json.loads(r.read())
            return result

    def post(self, path: str, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as r:
            result: dict[str, Any] = json.loads(r.read())
            return result


def measure(binary: Path, model: Path, ctx: int, slots: int, ubatch: int, fa: str, kv: str) -> dict[str, Any]:
    port = free_port()
    args = ["-m", str(model), "-c", str(ctx), "-np", str(slots), "-ub", str(ubatch), "-fa", fa]
    args += ["--cache-type-k", kv, "--cache-type-v", kv, "-ngl", "0", "--no-warmup", "-lv", "4"]  # 4: buffer lines
    args += ["--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with LlamaServer(binary, args, port) as server:
        log = server.log()
    return {
        "gguf": model.name,
        "quant": "",
        "file_bytes": model.stat().st_size,
        "program": "llama-server",
        "build": "b11434",
        "ctx": ctx,
        "parallel": slots,
        "fa": fa,
        "kv_type": kv,
        "ubatch": ubatch,
        "rc": 0,
        "secs": round(time.monotonic() - started, 2),
        "buffers": parse_buffers(log),
    }


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    model = Path(sys.argv[1])
    binary = default_binary()
    from ollama_fit.model.gguf.reader import read_local_header
    from ollama_fit.model.gguf.shape import spec_from_header

    quant = spec_from_header(read_local_header(model), model.stat().st_size).quant
    lines = []
    for ctx, slots, ubatch, fa, kv in RUNS:
        row = measure(binary, model, ctx, slots, ubatch, fa, kv) | {"quant": quant}
        lines.append(json.dumps(row))
        total = sum(b["mib"] for b in row["buffers"])
        print(f"-c {ctx} -np {slots} -ub {ubatch} -fa {fa} {kv}: {total:.2f} MiB in {row['secs']} s", file=sys.stderr)
    text = "\n".join(lines) + "\n"
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
