#!/usr/bin/env python3
"""Start the real llama-server as Ollama 0.32.15 starts it for a model created with a separate draft file
(Modelfile `DRAFT`, create API `draft_files`: a layer `application/vnd.ollama.image.draft`), and record the buffers
of the target and of the draft model / context separately.

    python scripts/measure_draft.py [--case NAME ...] [OUT.jsonl]
    (default OUT: tests/fixtures/draft-llama-cpu.jsonl, rewritten)

Cases (targets from tests/hybrid_ggufs.py, drafts from tests/draft_ggufs.py, all Q4_K_M but the F16 DFlash):
- `mtp`: the Qwen3.5-9B preset (no MTP block of its own) with an MTP-only drafter (its block, embedding, head);
- `mtp-ollama`: the same target with the draft `ollama create` makes of a Qwen3.5 MTP safetensors DRAFT (the base
  model's tensors plus the block, convert/convert_qwen3next.go `ConvertQwen35MTPDraft`);
- `dflash-qwen35`: the same target with a DFlash drafter (5 layers, target layers 1, 4, 7);
- `dflash-qwen3`: Qwen3-8B's first 4 layers (vocabulary 32768; Ollama gives it the slots asked for) with a
  DFlash drafter (target layers 1, 2, 3);
- refusals, at 4096 x 1: `mtp-width` (the MTP-only drafter of the 4096-wide Qwen3.5 preset beside the 2048-wide
  Qwen3.5-MoE preset), `plain-draft` (a draft without an MTP block and not `dflash`: the Qwen3 target's own file,
  which Ollama still passes as `draft-mtp`).

For each (num_ctx, OLLAMA_NUM_PARALLEL) of SETTINGS the command line is runtime/ollama.py's (`plan_load` for a
CPU-only machine with the draft's architecture, then `server_argv`): Ollama's `appendDraftArgs` adds `--spec-type
TYPE --spec-draft-n-max 4 [--spec-draft-backend-sampling] --spec-draft-model PATH` (draft 4); each setting is also
run without the draft file (draft 0). Buffers: every `... buffer size = X MiB` line, `context` "main" before
`common_speculative_init_result: loading draft model` and "draft" after (the draft's weights and context);
compute lines carry `reserve` (the context holds its last one, as scripts/measure_mtp.py explains).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import measure_mtp  # noqa: E402
from measure_llama_server import built_binary, free_port  # noqa: E402
from measure_mtp import held, mem_available, parse_log, run, wait_for_memory  # noqa: E402

from ollama_fit.model.gguf import read_local_header, spec_from_header  # noqa: E402
from ollama_fit.model.gguf.reader import tensor_nbytes  # noqa: E402
from ollama_fit.runtime.ollama import NEWEST, Machine, plan_load, server_argv  # noqa: E402

SETTINGS = [(4096, 1), (16384, 1), (8192, 2)]
DRAFT_N = 4
measure_mtp.DRAFT_START = "loading draft model"  # common_speculative_init_result, before the draft's load


def _targets(folder: Path) -> dict[str, Callable[[], Path]]:
    from hybrid_ggufs import PRESETS, QWEN35, catalog_layers, write_hybrid

    qwen3 = catalog_layers("qwen3:8b", range(4), n_vocab=32768)
    return {
        "qwen35": lambda: write_hybrid(folder / "qwen35.gguf", QWEN35, "Q4_K_M"),
        "qwen35moe": lambda: write_hybrid(folder / "qwen35moe.gguf", PRESETS["qwen35moe"], "Q4_K_M"),
        "qwen3": lambda: write_hybrid(folder / "qwen3.gguf", qwen3, "Q4_K_M"),
    }


def _drafts(folder: Path) -> dict[str, Callable[[], Path]]:
    from draft_ggufs import DFLASH, write_dflash_draft, write_mtp_draft
    from hybrid_ggufs import QWEN35, write_hybrid

    return {
        "mtp": lambda: write_mtp_draft(folder / "mtp-draft.gguf", QWEN35),
        "mtp-ollama": lambda: write_hybrid(folder / "mtp-ollama-draft.gguf", QWEN35, "Q4_K_M", mtp=True),
        "dflash-qwen35": lambda: write_dflash_draft(folder / "dflash-qwen35.gguf", DFLASH),
        "dflash-qwen3": lambda: write_dflash_draft(
            folder / "dflash-qwen3.gguf", DFLASH.__class__(target_layers=(1, 2, 3), n_vocab=32768)
        ),
        "plain": lambda: folder / "qwen3.gguf",  # the Qwen3 target's file (written first)
    }


# case -> (target, draft, settings)
CASES: dict[str, tuple[str, str, list[tuple[int, int]]]] = {
    "mtp": ("qwen35", "mtp", SETTINGS[:2]),
    "mtp-ollama": ("qwen35", "mtp-ollama", SETTINGS[:2]),
    "dflash-qwen35": ("qwen35", "dflash-qwen35", SETTINGS[:2]),
    "dflash-qwen3": ("qwen3", "dflash-qwen3", SETTINGS),
    "mtp-width": ("qwen35moe", "mtp", SETTINGS[:1]),
    "plain-draft": ("qwen3", "plain", SETTINGS[:1]),
}


def measure(binary: Path, case: str, folder: Path, done: set[tuple[str, int, int]]) -> list[dict[str, Any]]:
    target_name, draft_name, settings = CASES[case]
    target = _targets(folder)[target_name]()
    draft = _drafts(folder)[draft_name]()
    spec = spec_from_header(read_local_header(target), target.stat().st_size)
    draft_arch = read_local_header(draft).architecture
    file_bytes = target.stat().st_size + draft.stat().st_size
    rows = []
    for num_ctx, parallel in settings:
        for n in (0, DRAFT_N):
            if not n and (target_name, num_ctx, parallel) in done:
                continue  # the target alone was measured with another case
            load = plan_load(
                NEWEST, spec.shape, Machine(), num_ctx, spec.file_bytes or 0, parallel, draft=n,
                draft_arch=draft_arch if n else None,
            )  # fmt: skip
            port = free_port()
            row: dict[str, Any] = {
                "case": case if n else f"{target_name}-alone",
                "target": target_name,
                "draft_file": draft_name if n else None,
                "draft_arch": draft_arch if n else None,
                "ollama": ".".join(map(str, NEWEST)),
                "num_ctx": num_ctx,
                "parallel": parallel,
                "batch": load.batch,
                "draft": n,
                "target_bytes": target.stat().st_size,
                "draft_bytes": draft.stat().st_size if n else 0,
                "draft_tensor_bytes": sum(tensor_nbytes(t) for t in read_local_header(draft).tensors) if n else 0,
                "argv": server_argv(load),  # MODEL, PORT and DRAFT for the files and the port
            }
            if not wait_for_memory(int(file_bytes * 1.2) + 2 * 2**30):
                row |= {"error": f"skipped: MemAvailable {mem_available() / 2**30:.1f} GiB < the files read in"}
            else:
                started = time.monotonic()
                args = server_argv(load, model=str(target), port=str(port), draft_model=str(draft))[1:]
                log, error = run(binary, args, port, 300.0)
                log = log.replace(str(target), "MODEL").replace(str(draft), "DRAFT")
                row |= {"secs": round(time.monotonic() - started, 2)} | parse_log(log)
                if error is not None:
                    row["error"] = error
            if not n:
                done.add((target_name, num_ctx, parallel))
            rows.append(row)
            total = {c: held(row.get("buffers", []), c) for c in ("main", "draft")}
            print(
                f"{row['case']} {num_ctx}x{parallel} draft={n}: {total} {row.get('error', '')}"[:300], file=sys.stderr
            )
    return rows


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(CASES), default=[], help="only these cases")
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "tests" / "fixtures" / "draft-llama-cpu.jsonl")
    args = parser.parse_args()
    binary = built_binary()
    if binary is None:
        return 2
    rows: list[dict[str, Any]] = []
    done: set[tuple[str, int, int]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.case or list(CASES):
            rows += measure(binary, case, Path(tmp), done)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
