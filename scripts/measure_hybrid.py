#!/usr/bin/env python3
"""Load sparse GGUFs of the hybrid architectures in the real llama.cpp (CPU) and record the buffers it logs.

    python scripts/measure_hybrid.py [--runner server|lib] [--preset NAME ...] [--append] [OUT.jsonl]
    (default OUT: tests/fixtures/hybrid-llama-cpu.jsonl, rewritten; default runner: server when built, else lib;
    default presets: all of them; --preset measures only the named ones, --append adds their rows to OUT)

The files are tests/hybrid_ggufs.py's presets (real tensor tables, zero data, the MTP_PRESETS files with their
MTP block) written to a temporary folder. Each run: `llama-server -m FILE -c CTX*NP -np NP --no-kv-unified -ngl 0
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
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from measure_llama_server import LlamaServer, default_binary, free_port, parse_buffers  # noqa: E402

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
    "gemma4moe", "gemma4e2b", "llama4", "mistral3", "nemotron_h_moe", "glm4moe", "minimax_m2", "deepseek2", "mistral4",
    "glm_dsa",
)  # fmt: skip


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


def run_server(binary: Path, model: Path, ctx: int, slots: int, fa: str, kv: str) -> str:
    """llama-server on loopback until /health answers 200 (bounded), then stopped; its log."""
    port = free_port()
    args = ["-m", str(model), "-c", str(ctx * slots), "-np", str(slots), "--no-kv-unified", "-ngl", "0"]
    args += ["-fa", fa, "-ctk", kv, "-ctv", kv, "--no-warmup", "--no-repack", "-t", "2", "-lv", "4"]  # 4: buffers
    args += ["--host", "127.0.0.1", "--port", str(port)]
    with LlamaServer(binary, args, port, timeout=300) as server:
        return server.log()


def measure(run: Any, runner: str, preset: str, quant: str, folder: Path) -> list[dict[str, Any]]:
    from hybrid_ggufs import MTP_PRESETS, write_hybrid
    from hybrid_ggufs import PRESETS as SHAPES

    mtp = preset in MTP_PRESETS
    path = write_hybrid(folder / f"{preset}-{quant}.gguf", SHAPES[preset], quant, mtp=mtp)
    rows = []
    for ctx, slots, fa, kv in RUNS:
        log = run(path, ctx, slots, fa, kv)
        buffers = parse_buffers(log)
        rows.append(
            {
                "preset": preset,
                "runner": runner,
                "quant": quant,
                "mtp_block": mtp,
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
