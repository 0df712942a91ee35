#!/usr/bin/env python3
"""Load sparse GGUFs of the hybrid architectures in the real llama-server (CPU) and record the buffers it logs.

    python scripts/measure_hybrid.py [OUT.jsonl]    (default: tests/fixtures/hybrid-llama-cpu.jsonl)

The files are tests/hybrid_ggufs.py's presets (real tensor tables, zero data, Qwen3.5 files with their MTP
block) written to a temporary folder. Each run: `llama-server -m FILE -c CTX*NP -np NP --no-kv-unified -ngl 0
-fa on|off -ctk T -ctv T --no-warmup --no-repack` on loopback, stopped as soon as the model and its memory are set up
(bounded wait). The binary: $LLAMA_SERVER, else ~/.cache/ollama-fit/llama.cpp/build-11434/bin/llama-server.
tests/test_hybrid_calibration.py compares the estimator with the rows (without the binary).
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

BUFFER = re.compile(r"(\S+)\s+(model|KV|RS|output|compute) buffer size =\s+([\d.]+) MiB")
READY = ("server is listening", "main: model loaded", "starting the main loop")
# (per-sequence context, slots, flash attention, KV type)
RUNS = [
    (4096, 1, "on", "f16"),
    (32768, 1, "on", "f16"),
    (8192, 4, "on", "f16"),
    (65536, 2, "on", "f16"),
    (16384, 1, "on", "q8_0"),
    (16384, 2, "off", "f16"),
]
PRESETS = ("qwen35", "qwen35moe", "granitehybrid", "lfm2", "nemotron_h", "gemma4")


def default_binary() -> Path:
    if os.environ.get("LLAMA_SERVER"):
        return Path(os.environ["LLAMA_SERVER"])
    return Path.home() / ".cache" / "ollama-fit" / "llama.cpp" / "build-11434" / "bin" / "llama-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server(binary: Path, model: Path, ctx: int, slots: int, fa: str, kv: str, timeout: float = 300) -> str:
    """Start llama-server, wait (bounded) until it has set up the model, stop it; return its log."""
    args = [
        str(binary), "-m", str(model), "-c", str(ctx * slots), "-np", str(slots), "--no-kv-unified",
        "-ngl", "0", "-fa", fa, "-ctk", kv, "-ctv", kv, "--no-warmup", "--no-repack", "-t", "2",
        "--host", "127.0.0.1", "--port", str(_free_port()),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                log.seek(0)
                if any(r in log.read().decode(errors="replace") for r in READY):
                    break
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


def measure(binary: Path, preset: str, quant: str, folder: Path) -> list[dict[str, Any]]:
    from hybrid_ggufs import PRESETS as SHAPES
    from hybrid_ggufs import write_hybrid

    path = write_hybrid(folder / f"{preset}-{quant}.gguf", SHAPES[preset], quant, mtp=preset.startswith("qwen35"))
    rows = []
    for ctx, slots, fa, kv in RUNS:
        log = run_server(binary, path, ctx, slots, fa, kv)
        buffers = [{"where": w, "kind": k, "mib": float(m)} for w, k, m in BUFFER.findall(log)]
        rows.append(
            {
                "preset": preset,
                "quant": quant,
                "mtp_block": preset.startswith("qwen35"),
                "file_bytes": path.stat().st_size,
                "ctx": ctx,
                "parallel": slots,
                "fa": fa,
                "kv_type": kv,
                "buffers": buffers,
                "unused_tensors": len(re.findall(r"model has unused tensor", log)),
                "ok": any(b["kind"] == "KV" for b in buffers) and any(b["kind"] == "RS" for b in buffers),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    path.unlink()
    return rows


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "hybrid-llama-cpu.jsonl"
    binary = default_binary()
    if not binary.exists():
        print(f"no llama-server at {binary} (set LLAMA_SERVER)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            rows += measure(binary, preset, "Q4_K_M", Path(tmp))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
