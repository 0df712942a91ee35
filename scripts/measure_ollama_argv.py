#!/usr/bin/env python3
"""Start the real llama-server exactly as Ollama 0.32.15 starts it, on sparse GGUFs of every architecture the
tests keep (tests/hybrid_ggufs.py's presets), and record the buffers it logs.

    python scripts/measure_ollama_argv.py [--preset NAME ...] [OUT.jsonl]
    (default OUT: tests/fixtures/ollama-argv-llama-cpu.jsonl, rewritten; default presets: all)

The command line is runtime/ollama.py's (`plan_load` for a CPU-only machine, then `server_argv`): `-c num_ctx x
parallel -np parallel --load-mode none --flash-attn auto -b B -ub B --context-shift --keep 4` with B Ollama's
automatic batch for that context, the preset's architecture deciding the slots (Ollama gives Qwen3.5/Next and
Nemotron-H one). Each run binds 127.0.0.1 on a free port and is stopped once /health answers (bounded wait).
The binary: $LLAMA_SERVER, else the build of scripts/build_llama_cpp.sh. tests/test_ollama_argv.py compares the
estimator, given the same Ollama runtime, with the rows (without the binary).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from measure_llama_server import LlamaServer, built_binary, free_port, parse_buffers  # noqa: E402

from ollama_fit.model.gguf import read_local_header, spec_from_header  # noqa: E402
from ollama_fit.runtime.ollama import NEWEST, Machine, plan_load, server_argv  # noqa: E402

# (num_ctx, OLLAMA_NUM_PARALLEL): Ollama's batch 512, 1024 (two ways) and 2048
SETTINGS = [(4096, 1), (16384, 1), (8192, 2), (32768, 4)]


def measure(binary: Path, preset: str, folder: Path) -> list[dict[str, Any]]:
    from hybrid_ggufs import MTP_PRESETS, PRESETS, write_hybrid

    path = write_hybrid(folder / f"{preset}.gguf", PRESETS[preset], "Q4_K_M", mtp=preset in MTP_PRESETS)
    spec = spec_from_header(read_local_header(path), path.stat().st_size)
    rows = []
    for num_ctx, parallel in SETTINGS:
        load = plan_load(NEWEST, spec.shape, Machine(), num_ctx, spec.file_bytes or 0, parallel)
        port = free_port()
        argv = server_argv(load, model=str(path), port=str(port))
        with LlamaServer(binary, argv[1:], port, timeout=300) as server:
            log = server.log()
        rows.append(
            {
                "preset": preset,
                "ollama": ".".join(map(str, NEWEST)),
                "num_ctx": num_ctx,
                "parallel": parallel,
                "argv": server_argv(load),  # MODEL and PORT for the file and the port
                "flash_attn_enabled": "Flash Attention enabled" in log or "flash_attn    = enabled" in log,
                "buffers": parse_buffers(log),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    path.unlink()
    return rows


def main() -> int:
    import argparse

    from hybrid_ggufs import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=list(PRESETS), default=[], help="only these layouts")
    parser.add_argument(
        "out", nargs="?", type=Path, default=ROOT / "tests" / "fixtures" / "ollama-argv-llama-cpu.jsonl"
    )
    args = parser.parse_args()
    chosen, out = args.preset, args.out
    binary = built_binary()
    if binary is None:
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in chosen or list(PRESETS):
            rows += measure(binary, preset, Path(tmp))
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
