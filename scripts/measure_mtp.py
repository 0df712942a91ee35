#!/usr/bin/env python3
"""Start the real llama-server as Ollama 0.32.15 starts it for a GGUF with its own multi-token-prediction (MTP)
block, with and without the speculative-decoding flags Ollama appends when the model sets `draft_num_predict`,
and record the buffers of the main context and of the MTP draft context separately.

    python scripts/measure_mtp.py [--preset NAME ...] [OUT.jsonl]
    (default OUT: tests/fixtures/mtp-llama-cpu.jsonl, rewritten; default presets: tests/hybrid_ggufs.py's MTP_PRESETS)

Each preset is written with its MTP block (`write_hybrid(..., mtp=True)`: `nextn_predict_layers` = 1, tensors
blk.{n_layer}.*). For each (num_ctx, OLLAMA_NUM_PARALLEL) of SETTINGS the command line is runtime/ollama.py's
(`plan_load` for a CPU-only machine, then `server_argv`), run twice: as is (draft 0), and with what Ollama's
`appendDraftArgs` (llm/llama_server.go) adds, where it adds it (after the log arguments): `--spec-type draft-mtp
--spec-draft-n-max 4 --spec-draft-backend-sampling` (draft 4). Ollama's constant for an MTP draft is "draft-mtp";
one more run per preset passes the bare name `mtp` to record llama-server's answer to it (`spec_type` "mtp", with
its `error`).

Buffers: every `... buffer size = X MiB` line, with `context` "main" (the model's weights and the target context)
or "draft" (every line after `common_speculative_init_result: creating MTP draft context`, the MTP context built
against the target's weights, including its scheduler's re-reservation once the draft-mtp implementation attaches
its backend sampler). Compute lines carry `reserve` (1, 2, ...): llama_context::sched_reserve replaces the
scheduler and its buffer, so a context holds its last one. `fit` keeps llama.cpp's own projection
(common_memory_breakdown_print, "main" then the "draft" extra model); `params` each context's n_ctx, n_ubatch,
n_rs_seq, n_outputs_max...; `unused` the tensors the loader skipped (the MTP block when it is not loaded).

Runs: 127.0.0.1 on a free port, one at a time, stopped once /health answers (bounded wait), skipped with an
`error` when the machine lacks the memory to read the file in (`--load-mode none` reads every weight).
The binary: $LLAMA_SERVER, else the build of scripts/build_llama_cpp.sh.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from measure_llama_server import BUFFER, LlamaServer, built_binary, free_port  # noqa: E402

from ollama_fit.model.gguf import read_local_header, spec_from_header  # noqa: E402
from ollama_fit.runtime.ollama import NEWEST, Machine, plan_load, server_argv  # noqa: E402

# (num_ctx, OLLAMA_NUM_PARALLEL): Ollama's batch 512 and 1024 (one slot, and two where the architecture has them)
SETTINGS = [(4096, 1), (16384, 1), (8192, 2)]
DRAFT_N = 4
SPEC_TYPE = "draft-mtp"  # Ollama 0.32.15's draftTypeMTP


def draft_args(spec_type: str = SPEC_TYPE, n: int = DRAFT_N) -> list[str]:
    """What Ollama's appendDraftArgs appends for an MTP draft with DraftNumPredict = n."""
    return ["--spec-type", spec_type, "--spec-draft-n-max", str(n), "--spec-draft-backend-sampling"]


def with_draft(argv: list[str], extra: list[str]) -> list[str]:
    """`extra` where Ollama puts it: appendDraftArgs runs after the log (and jinja / mmproj) arguments, before
    the load mode, cache type, flash attention and batch arguments (llm/llama_server.go)."""
    at = argv.index("--no-log-timestamps") + 1
    return argv[:at] + extra + argv[at:]


DRAFT_START = "creating MTP draft context"  # common_speculative_init_result, before llama_init_from_model
FIT_DRAFT = "getting device memory data for the extra model"  # common_fit_params, the draft/MTP context's turn
FIT_ROW = re.compile(r"\|\s+- (\S+)\s+\|\s+(\d+) =\s+(\d+) \+\s+(\d+) \+\s+(\d+)")
PARAM = re.compile(
    r"llama_context: (n_seq_max|n_ctx|n_ctx_seq|n_batch|n_ubatch|n_rs_seq|n_outputs_max|"
    r"n_outputs_max_per_seq|flash_attn)\s+= (\S+)"
)
UNUSED = re.compile(r"model has unused tensor (\S+) \(size = (\d+) bytes\)")
NOTE = re.compile(
    r"nextn|mtp|speculative|spec common|llama_kv_cache: size|llama_memory_recurrent: size|"
    r"error|failed|GGML_ASSERT|exception",
    re.IGNORECASE,
)


def parse_log(log: str) -> dict[str, Any]:
    """The buffers of each context, llama.cpp's fit projection, the context parameters and the MTP notes."""
    context, fit_context = "main", "main"
    buffers: list[dict[str, Any]] = []
    fit: list[dict[str, Any]] = []
    params: dict[str, dict[str, str]] = {}
    unused: list[tuple[str, int]] = []
    notes: list[str] = []
    reserves: dict[tuple[str, str], int] = {}
    for line in log.splitlines():
        if DRAFT_START in line:
            context = "draft"
        if FIT_DRAFT in line:
            fit_context = "draft"
        for where, kind, mib in BUFFER.findall(line):
            row: dict[str, Any] = {"context": context, "where": where, "kind": kind, "mib": float(mib)}
            if kind == "compute":
                reserves[context, where] = reserves.get((context, where), 0) + 1
                row["reserve"] = reserves[context, where]
            buffers.append(row)
        if m := FIT_ROW.search(line):
            where, total, model, ctx, compute = m.groups()
            fit.append(
                {
                    "context": fit_context,
                    "where": where,
                    "total": int(total),
                    "model": int(model),
                    "context_mib": int(ctx),
                    "compute": int(compute),
                }
            )
        elif "common_params_fit_impl: projected" in line:
            notes.append(line.strip())
        if m := PARAM.search(line):
            params.setdefault(context, {})[m.group(1)] = m.group(2)
        if m := UNUSED.search(line):
            unused.append((m.group(1), int(m.group(2))))
        elif (NOTE.search(line) and "llama_model_loader: - kv" not in line) or "nextn_predict_layers" in line:
            notes.append(line.strip())
    return {
        "buffers": buffers,
        "fit": fit,
        "params": params,
        "unused": {
            "count": len(unused),
            "bytes": sum(b for _, b in unused),
            "blocks": sorted({n.split(".")[1] for n, _ in unused if n.startswith("blk.")}),
        },
        "notes": notes,
    }


def held(buffers: list[dict[str, Any]], context: str) -> float:
    """MiB a context holds: its buffers, counting only the last reservation of each compute buffer."""
    last = {b["where"]: b["mib"] for b in buffers if b["context"] == context and b["kind"] == "compute"}
    rest = sum(b["mib"] for b in buffers if b["context"] == context and b["kind"] != "compute")
    return round(rest + sum(last.values()), 2)


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_for_memory(need: int, patience: float = 300.0) -> bool:
    """True once MemAvailable covers `need` bytes (the test suite beside us may hold some for a while)."""
    deadline = time.monotonic() + patience
    while mem_available() < need:
        if time.monotonic() > deadline:
            return False
        time.sleep(10)
    return True


def run(binary: Path, args: list[str], port: int, timeout: float) -> tuple[str, str | None]:
    """llama-server's log once healthy (None), or its log and the reason it never was."""
    server = LlamaServer(binary, args, port, timeout=timeout)
    try:
        with server:
            return server.log(), None
    except (RuntimeError, TimeoutError) as e:
        log = server.log()
        server.log_file.close()
        why = [
            ln.strip()
            for ln in log.splitlines()
            if re.search(r"error|failed|GGML_ASSERT|exception|what\(\)", ln, re.IGNORECASE)
        ]
        return log, "; ".join(why[-6:]) or str(e).splitlines()[0]


def measure(binary: Path, preset: str, folder: Path) -> list[dict[str, Any]]:
    from hybrid_ggufs import PRESETS, mtp_tensors, write_hybrid

    shape = PRESETS[preset]
    path = write_hybrid(folder / f"{preset}.gguf", shape, "Q4_K_M", mtp=True)
    spec = spec_from_header(read_local_header(path), path.stat().st_size)
    file_bytes = path.stat().st_size
    mtp_bytes = sum(t.nbytes for t in mtp_tensors(shape, "Q4_K_M"))
    timeout = max(300.0, file_bytes / 2**30 * 40)  # the repack of a 15 GB file takes minutes on 2 cores
    runs = [(c, p, d, SPEC_TYPE) for c, p in SETTINGS for d in (0, DRAFT_N)] + [(*SETTINGS[0], DRAFT_N, "mtp")]
    rows = []
    for num_ctx, parallel, draft, spec_type in runs:
        load = plan_load(NEWEST, spec.shape, Machine(), num_ctx, spec.file_bytes or 0, parallel)
        extra = draft_args(spec_type) if draft else []
        port = free_port()
        row: dict[str, Any] = {
            "preset": preset,
            "arch": shape.arch,
            "ollama": ".".join(map(str, NEWEST)),
            "num_ctx": num_ctx,
            "parallel": parallel,
            "batch": load.batch,
            "draft": draft,
            "spec_type": spec_type if draft else None,
            "file_bytes": file_bytes,
            "mtp_tensor_bytes": mtp_bytes,
            "argv": with_draft(server_argv(load), extra),  # MODEL and PORT for the file and the port
        }
        if not wait_for_memory(int(file_bytes * 1.1) + 2 * 2**30):
            row |= {"error": f"skipped: MemAvailable {mem_available() / 2**30:.1f} GiB < the file read in"}
        else:
            started = time.monotonic()
            log, error = run(
                binary, with_draft(server_argv(load, model=str(path), port=str(port)), extra)[1:], port, timeout
            )
            log = log.replace(str(path), "MODEL")
            row |= {"secs": round(time.monotonic() - started, 2)} | parse_log(log)
            if error is not None:
                row["error"] = error
        rows.append(row)
        total = {c: held(row.get("buffers", []), c) for c in ("main", "draft")}
        print(
            f"{preset} {num_ctx}x{parallel} draft={draft} {spec_type}: {total} {row.get('error', '')}"[:300],
            file=sys.stderr,
        )
    path.unlink()
    return rows


def main() -> int:
    import argparse

    from hybrid_ggufs import MTP_PRESETS

    order = [p for p in ("qwen35", "qwen35moe", "qwen3next", "glm4moe", "deepseek2") if p in MTP_PRESETS]
    order += sorted(MTP_PRESETS - set(order))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=order, default=[], help="only these layouts")
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "tests" / "fixtures" / "mtp-llama-cpu.jsonl")
    args = parser.parse_args()
    binary = built_binary()
    if binary is None:
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset or order:
            rows += measure(binary, preset, Path(tmp))
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
