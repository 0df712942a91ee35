"""The real Ollama servers of ../shared/bin, run on loopback for the end-to-end tests: 0.32.15 (llama.cpp's
llama-server underneath, the design since 0.30) and 0.24.0 (Ollama's own Go engine, 0.13-0.29).

The shared folder is read-only and its copy of each build has the libraries' version links stored as small
text files naming their target (`libllama.so.0` holds "libllama.so.0.6.0"): 0.32.15's llama-server cannot
start from there. `prepared()` copies a build once per machine into the cache
(${XDG_CACHE_HOME:-~/.cache}/ollama-fit/ollama-<version>/) and turns each such file back into the link it
stands for; the binaries themselves are not changed.

`OllamaServer` starts one isolated from this machine (a scratch HOME and models folder, no cloud calls,
127.0.0.1 on a free port), waits a bounded time for /api/version, keeps its log, and stops it, also when a
test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from real_assets import cache_root

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("0.32.15", "0.24.0")
LINK_STUB = 256  # a version link stored as a file: a few bytes naming a sibling file
START_TIMEOUT = 120.0


def shared_bin() -> Path:
    return Path(os.environ.get("OLLAMA_FIT_SHARED_BIN") or ROOT.parent / "shared" / "bin")


def prepared(version: str) -> tuple[Path | None, str]:
    """The `ollama` binary of `version`, ready to run from the cache; or None and why not."""
    source = shared_bin() / f"ollama-{version}"
    if not (source / "bin" / "ollama").is_file():
        return None, f"no Ollama {version} at {source} (../shared/bin holds the real builds)"
    target = cache_root() / f"ollama-{version}"
    binary = target / "bin" / "ollama"
    if not binary.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".ollama-{version}.", dir=target.parent))
        try:
            copy = scratch / "build"
            shutil.copytree(source, copy, symlinks=True)
            _restore_links(copy)
            for path in copy.rglob("*"):
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o200)
            copy.rename(target)  # whole or not at all: a second session finds either nothing or the build
        except FileExistsError:
            pass
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return binary, ""


def _restore_links(folder: Path) -> None:
    for path in folder.rglob("*.so*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > LINK_STUB:
            continue
        name = path.read_bytes().decode("ascii", "replace").strip()
        if re.fullmatch(r"[A-Za-z0-9._+-]+", name) and (path.parent / name).exists():
            path.unlink()
            path.symlink_to(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OllamaServer:
    """One real Ollama on 127.0.0.1, isolated in `home`, stopped on exit."""

    def __init__(self, binary: Path, home: Path, **env: str) -> None:
        self.binary = binary
        self.home = home
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = home / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OllamaServer:
        (self.home / "home").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home / "home"),
            "OLLAMA_NO_CLOUD": "1",
            "OLLAMA_MODELS": str(self.home / "models"),
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            **self.env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ollama serve exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                self.get("/api/version")
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TimeoutError(f"ollama serve did not answer in {START_TIMEOUT:.0f} s: {self.log()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the runner it started
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.host + path, timeout=10) as answer:
            return json.loads(answer.read())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# ----- what each version logs about a load -----

_LLAMA_BUFFER = re.compile(r"(\w+):\s+(\S+)\s+(model|KV|compute|output|RS) buffer size\s*=\s*([\d.]+) MiB")
_ENGINE_LINE = re.compile(
    r'msg="(model weights|kv cache|compute graph|total memory)"(?: device=(\S+))? size="([\d.]+) MiB"'
)


def llama_server_buffers(log: str) -> dict[str, float]:
    """MiB by kind (model, KV, compute, output, RS) over every buffer line of the last llama-server start."""
    start = log.rfind("starting llama-server")
    totals: dict[str, float] = {}
    for _fn, _device, kind, mib in _LLAMA_BUFFER.findall(log[max(0, start) :]):
        totals[kind] = totals.get(kind, 0.0) + float(mib)
    return totals


def llama_server_argv(log: str) -> list[str]:
    """The llama-server command line Ollama logged for its last start."""
    line = next(x for x in reversed(log.splitlines()) if "llama-server --model" in x)
    return line[line.index("llama-server --model") :].split('"')[0].split()


def engine_memory(log: str) -> dict[str, float]:
    """The Go engine's INFO lines after its last load: model weights, kv cache, compute graph, total memory."""
    found: dict[str, float] = {}
    for what, _device, mib in _ENGINE_LINE.findall(log):
        found[what] = float(mib)  # the last load's lines come last
    return found
