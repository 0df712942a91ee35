#!/usr/bin/env python3
"""Load sparse GGUFs of the hybrid architectures in the real llama.cpp (CPU) and record the buffers it logs.

    python scripts/measure_hybrid.py [--runner server|lib] [--preset NAME ...] [--append] [OUT.jsonl]
    (default OUT: tests/fixtures/hybrid-llama-cpu.jsonl, rewritten; default runner: server when built, else lib;
    default presets: all of them; --preset measures only the named ones, --append adds their rows to OUT)

The files are tests/hybrid_ggufs.py's presets (real tensor tables, zero data, Qwen3.5 files with their MTP
block) written to a temporary folder. Each run: `llama-server -m FILE -c CTX*NP -np NP --no-kv-unified -ngl 0
-fa on|off -ctk T -ctv T --no-warmup --no-repack -lv 4` on loopback, stopped once /health answers (bounded
wait). The binary: $LLAMA_SERVER, else ~/.cache/ollama-fit/llama.cpp/build-11434/bin/llama-server.
The `lib` runner compiles scripts/hybrid_load.c against that build's libllama (the same allocation code, with
llama-server's memory defaults) for when only the library is built. tests/test_hybrid_calibration.py compares
the estimator with the rows (without the binary).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

BUFFER = re.compile(r"(\S+)\s+(model|KV|RS|output|compute) buffer size =\s+([\d.]+) MiB")
# (per-sequence context, slots, flash attention, KV type)
RUNS = [
    (4096, 1, "on", "f16"),
    (32768, 1, "on", "f16"),
    (8192, 4, "on", "f16"),
    (65536, 2, "on", "f16"),
    (16384, 1, "on", "q8_0"),
    (16384, 2, "off", "f16"),
]
PRESETS = (
    "qwen35", "qwen35moe", "qwen3next", "granitehybrid", "lfm2", "nemotron_h", "gemma4",
    "gemma4moe", "gemma4e2b", "llama4", "mistral3", "nemotron_h_moe",
)  # fmt: skip


def default_binary() -> Path:
    if os.environ.get("LLAMA_SERVER"):
        return Path(os.environ["LLAMA_SERVER"])
    return Path.home() / ".cache" / "ollama-fit" / "llama.cpp" / "build-11434" / "bin" / "llama-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_dir() -> Path:
    return Path(os.environ.get("LLAMA_CPP_BUILD") or default_binary().parent.parent)


def lib_runner(folder: Path) -> Path:
    """Compile scripts/hybrid_load.c against the build's libllama; returns the executable."""
    build = build_dir()
    src = Path(os.environ.get("LLAMA_CPP_SRC") or build.parent / "src-11434" / "llama.cpp")
    exe = folder / "hybrid_load"
    cmd = ["gcc", "-O1", "-o", str(exe), str(ROOT / "scripts" / "hybrid_load.c"), f"-I{src}/include"]
    cmd += [f"-I{src}/ggml/include", f"-L{build}/bin", "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{build}/bin"]
    subprocess.run(cmd, check=True)
    return exe


def run_lib(exe: Path, model: Path, ctx: int, slots: int, fa: str, kv: str, timeout: float = 300) -> str:
    args = [str(exe), str(model), str(ctx * slots), str(slots), "1" if fa == "on" else "0", kv]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.stderr


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def run_server(binary: Path, model: Path, ctx: int, slots: int, fa: str, kv: str, timeout: float = 300) -> str:
    """Start llama-server, wait (bounded) until /health answers 200, stop it; return its log (flushed on exit)."""
    port = _free_port()
    args = [
        str(binary),
        "-m",
        str(model),
        "-c",
        str(ctx * slots),
        "-np",
        str(slots),
        "--no-kv-unified",
        "-ngl",
        "0",
        "-fa",
        fa,
        "-ctk",
        kv,
        "-ctv",
        kv,
        "--no-warmup",
        "--no-repack",
        "-t",
        "2",
        "-lv",
        "4",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]  # fmt: skip  (-lv 4: the buffer lines)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None and not _healthy(port):
                time.sleep(0.5)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        return log.read().decode(errors="replace")


def measure(run: Any, runner: str, preset: str, quant: str, folder: Path) -> list[dict[str, Any]]:
    from hybrid_ggufs import PRESETS as SHAPES
    from hybrid_ggufs import write_hybrid

    path = write_hybrid(folder / f"{preset}-{quant}.gguf", SHAPES[preset], quant, mtp=preset.startswith("qwen3"))
    rows = []
    for ctx, slots, fa, kv in RUNS:
        log = run(path, ctx, slots, fa, kv)
        buffers = [{"where": w, "kind": k, "mib": float(m)} for w, k, m in BUFFER.findall(log)]
        rows.append(
            {
                "preset": preset,
                "runner": runner,
                "quant": quant,
                "mtp_block": preset.startswith("qwen3"),
                "file_bytes": path.stat().st_size,
                "ctx": ctx,
                "parallel": slots,
                "fa": fa,
                "kv_type": kv,
                "buffers": buffers,
                "unused_tensors": len(re.findall(r"model has unused tensor", log)),
                # every preset allocates a KV cache, and those with recurrent layers a recurrent state
                "ok": any(b["kind"] == "KV" for b in buffers)
                and (not any(SHAPES[preset].recurrent_layers) or any(b["kind"] == "RS" for b in buffers)),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    path.unlink()
    return rows


def main() -> int:
    args = sys.argv[1:]
    runner, chosen, append = "auto", [], False
    while args[:1] and args[0].startswith("--"):
        if args[0] == "--append":
            append, args = True, args[1:]
        elif args[0] in ("--runner", "--preset") and len(args) > 1:
            if args[0] == "--runner":
                runner = args[1]
            else:
                chosen.append(args[1])
            args = args[2:]
        else:
            print(f"unknown option {args[0]} (see the docstring)", file=sys.stderr)
            return 2
    unknown = [p for p in chosen if p not in PRESETS]
    if unknown:
        print(f"unknown preset(s) {unknown}; presets: {', '.join(PRESETS)}", file=sys.stderr)
        return 2
    out = Path(args[0]) if args else ROOT / "tests" / "fixtures" / "hybrid-llama-cpu.jsonl"
    binary = default_binary()
    if runner == "auto":
        runner = "server" if binary.exists() else "lib"
    if runner == "server" and not binary.exists():
        print(f"no llama-server at {binary} (set LLAMA_SERVER)", file=sys.stderr)
        return 2
    if runner == "lib" and not (build_dir() / "bin" / "libllama.so").exists():
        print(f"no libllama.so in {build_dir()}/bin (set LLAMA_CPP_BUILD)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if runner == "lib":
            exe = lib_runner(Path(tmp))

            def run(path: Path, ctx: int, slots: int, fa: str, kv: str) -> str:
                return run_lib(exe, path, ctx, slots, fa, kv)
        else:

            def run(path: Path, ctx: int, slots: int, fa: str, kv: str) -> str:
                return run_server(binary, path, ctx, slots, fa, kv)

        for preset in chosen or PRESETS:
            rows += measure(run, "llama-server" if runner == "server" else "libllama", preset, "Q4_K_M", Path(tmp))
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if append:
        with out.open("a") as f:
            f.write(text)
    else:
        out.write_text(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
