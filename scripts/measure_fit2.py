#!/usr/bin/env python3
"""Record what the real llama-server's --fit decides for TWO GPUs of chosen sizes, on a machine without one: two
llama.cpp rpc-servers each serve their CPU backend as a remote "GPU" whose memory the LD_PRELOAD shim
(scripts/fake_device_memory.c) reports as that server's own FAKE_DEVICE_MIB MiB, all free.

    python scripts/measure_fit2.py [--model ID ...] [--limit N] [--append] [OUT.jsonl]
    (default OUT: tests/fixtures/fit-rpc2-llama.jsonl, rewritten row by row, or added to with --append;
    tests/fixtures/fit-rpc2-llama.md says how the fixture was made)

The one-device script (scripts/measure_fit.py) supplies the model files, Ollama's argv and the shim; here
`ggml-rpc-server -H 127.0.0.1 -p P -t 1` runs twice (ports P1, P2, each with its FAKE_DEVICE_MIB) and
llama-server gets `--rpc 127.0.0.1:P1,127.0.0.1:P2`. fit.cpp's trace (Ollama's `--log-verbosity 4`) is read per
device, in the order llama.cpp lists the devices (its `id=`), and both servers are killed as soon as the fit is
decided ("fitting params to free memory took"). One case at a time, every wait bounded, loopback only.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import measure_fit as one  # noqa: E402  (puts tests/ on sys.path too)

from ollama_fit.errors import InvalidInput  # noqa: E402
from ollama_fit.model.catalog import find_model  # noqa: E402
from ollama_fit.model.gguf import read_local_header, spec_from_header  # noqa: E402

QUANT = one.QUANT
TARGET = one.DEFAULT_TARGET  # 1024 MiB on each device
# device pairs (MiB, in --rpc order): tiny, uneven both ways, even, large, and one where every model fits whole at
# 8192 (with the context unset it is the trained context that has to shrink first)
PAIRS: list[tuple[int, int]] = [
    (1536, 1536),
    (2048, 2048),
    (2048, 4096),
    (4096, 2048),
    (1536, 6144),
    (6144, 1536),
    (3072, 3072),
    (4096, 6144),
    (8192, 4096),
    (6144, 6144),
    (12288, 12288),
]
# (catalog id, the file carries its MTP block)
MODELS: list[tuple[str, bool]] = [("llama3.1:8b", False), ("qwen3:4b", False), ("qwen3.5:35b-a3b", True)]
# (num_ctx per slot, OLLAMA_NUM_PARALLEL); None: context unset, -c and -np dropped
SETTINGS: list[tuple[int | None, int | None]] = [(8192, 1), (None, None)]

FRACTIONS = {1: "ATTN", 2: "UP", 3: "GATE", 4: "MOE"}  # common_layer_fraction_t
TEST_HEADER = "memory for test allocation by device:"
INITIAL = re.compile(
    r"common_params_fit_impl:\s+- (.+?)\s*:\s+(\d+) total,\s+(-?\d+) used,\s+(-?\d+) free vs\. target of\s+(-?\d+)"
)
SUMMARY = re.compile(
    r"common_params_fit_impl:\s+- (.+?)\s*:\s+(\d+) layers(?: \(\s*(\d+) overflowing\))?,"
    r"\s+(-?\d+) MiB used,\s+(-?\d+) MiB free"
)
BREAKDOWN = re.compile(
    r"common_memory_breakdown_print: \|\s+- (?!Host)(.+?) \|"
    r"\s*(\d+)\s*=\s*(\d+)\s*\+\s*\(\s*(\d+)\s*=\s*(\d+)\s*\+\s*(\d+)\s*\+\s*(\d+)\s*\)"
)


@dataclass(frozen=True)
class Case:
    model: str
    mtp: bool
    devices_mib: tuple[int, int]  # in --rpc order
    num_ctx: int | None
    parallel: int | None


def _anon(line: str, ports: list[int]) -> str:
    for i, p in enumerate(ports, 1):
        line = line.replace(f"127.0.0.1:{p}", f"127.0.0.1:RPCPORT{i}")
    return line


def parse_fit2(log: str, requested_ctx: int, ports: list[int], sizes: tuple[int, int]) -> dict[str, Any]:
    """fit.cpp's decision per device, read from its LOG_TRC lines (llama.cpp b11434). Device names (`RPCk
    (127.0.0.1:port)`) are stored with the port as RPCPORT1/RPCPORT2 (its place in --rpc); the devices are listed
    in llama.cpp's order (`id=`), each with the fake size its server reported."""
    lines = [_anon(ln.rstrip(), ports) for ln in log.splitlines()]
    text = "\n".join(lines)
    status, n_ctx = one.fit_outcome(text, requested_ctx)
    projected = one.PROJECTED.search(text)

    # the device order: the per-device lines of the initial projection (printed when nd > 1), in id order
    names: list[str] = []
    initial: list[dict[str, int]] = []
    for ln in lines:
        m = INITIAL.match(ln)
        if m and m[1] not in names:
            names.append(m[1])
            initial.append({"total": int(m[2]), "used": int(m[3]), "free": int(m[4]), "target": int(m[5])})
    if not names:  # no projection lines: the first breakdown table's device rows
        for ln in lines:
            m = BREAKDOWN.search(ln)
            if m and m[1] not in names:
                names.append(m[1])

    def size_of(name: str) -> int | None:
        for i, mib in enumerate(sizes, 1):
            if f"RPCPORT{i}" in name:
                return mib
        return None

    # replay the test allocations: each "set ngl_per_device[..]" accepts the allocation measured just before it;
    # the first (nothing anywhere) is the starting point. A test's breakdown table precedes its header.
    table: list[dict[str, int]] = []  # the device rows of the latest breakdown table
    first_table: list[dict[str, int]] | None = None  # the initial parameters' (every layer, default split)
    table_open = False
    accepted: dict[int, dict[str, Any]] | None = None
    accepted_tables: list[dict[str, int]] = []
    pending: dict[int, dict[str, Any]] = {}
    pending_tables: list[dict[str, int]] = []
    in_test = False
    for ln in lines:
        if "common_memory_breakdown_print:" in ln:
            m = BREAKDOWN.search(ln)
            if m:
                if not table_open:
                    table, table_open = [], True
                table.append({"model": int(m[5]), "context": int(m[6]), "compute": int(m[7])})
            continue
        if table_open and first_table is None:
            first_table = table
        table_open = False
        if not ln.startswith("common_params_fit_impl:"):
            continue
        if TEST_HEADER in ln:
            pending, pending_tables, in_test = {}, list(table), True
            continue
        t = one.TEST_ROW.search(ln)
        if t and in_test:
            pending[int(t[1])] = {
                "n_layer": int(t[2]),
                "n_part": int(t[3]),
                "overflow": int(t[4]),
                "mem": int(t[5]),
            }
            if accepted is None and len(pending) == len(names):
                accepted, accepted_tables = dict(pending), pending_tables
            continue
        in_test = False
        if one.SET_NGL.search(ln) and pending:
            accepted, accepted_tables = dict(pending), pending_tables

    # the last summary line per device ("N layers[ (M overflowing)], X MiB used")
    summary: dict[str, tuple[int, int | None, int]] = {}
    for ln in lines:
        s = SUMMARY.match(ln)
        if s:
            summary[s[1]] = (int(s[2]), int(s[3]) if s[3] is not None else None, int(s[4]))

    devices: list[dict[str, Any]] = []
    consistent = True
    for i, name in enumerate(names):
        dev: dict[str, Any] = {"name": name, "device_mib": size_of(name)}
        if i < len(initial):
            dev["projected_used_mib"] = initial[i]["used"]
        if first_table is not None and i < len(first_table):
            dev["projected_breakdown"] = first_table[i]
        if status in ("fit", "failed") and accepted is not None and i in accepted:
            a = accepted[i]
            dev |= {
                "n_layer": a["n_layer"],
                "n_part": a["n_part"],
                "overflow_type": FRACTIONS[a["overflow"]] if a["n_part"] > 0 else None,
                "used_mib": a["mem"],
            }
            if i < len(accepted_tables):
                dev["breakdown"] = accepted_tables[i]
            # a device's summary is printed when that device is done; its MiB can change afterwards (the
            # compute buffers follow the layers given to the devices before it), its layers cannot
            said = summary.get(name)
            if said is None or said[0] != a["n_layer"] or (said[1] is not None and said[1] != a["n_part"]):
                consistent = False
            dev["summary_used_mib"] = said[2] if said else None
        else:
            dev |= {"n_layer": None, "n_part": None, "overflow_type": None, "used_mib": None}
        devices.append(dev)
    row: dict[str, Any] = {"status": status, "n_ctx": n_ctx}
    row["ngl"] = sum(d["n_layer"] for d in devices) if status in ("fit", "failed") and devices else None
    row["projected_mib"] = int(projected[1]) if projected else None
    row["devices"] = devices
    if status in ("fit", "failed"):
        row["summary_matches_replay"] = consistent
    row["trace"] = [ln for ln in lines if ln.startswith("common_params_fit_impl:")]
    return row


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="only these catalog ids")
    parser.add_argument("--limit", type=int, default=0, help="stop after N measured cases (timing)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for one fit")
    parser.add_argument("--append", action="store_true", help="add to OUT, skipping cases it already has")
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "tests" / "fixtures" / "fit-rpc2-llama.jsonl")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still kill the servers, delete the file
    binary = one.rpc_binaries()
    if binary is None:
        return 2
    so = one.shim(binary)
    from ggufs import patch_u32
    from hybrid_ggufs import write_hybrid

    done: set[tuple[Any, ...]] = set()
    if args.append and args.out.exists():
        for ln in args.out.read_text().splitlines():
            r = json.loads(ln)
            done.add((r["model"], r["mtp"], tuple(r["rpc_device_mib"]), tuple(r["argv"])))
    else:
        args.out.write_text("")
    measured, started = 0, time.monotonic()
    for model, mtp in MODELS:
        if (args.model and model not in args.model) or (args.limit and measured >= args.limit):
            continue
        try:
            shape = find_model(model).shape
        except InvalidInput as e:
            print(f"skip {model}: {e}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = write_hybrid(Path(tmp) / "model.gguf", shape, QUANT, mtp=mtp)
            if shape.arch == "qwen3":  # as measure_fit.py: dense Qwen3 rotates whole heads
                patch_u32(path, "qwen3.rope.dimension_count", shape.key_length)
            spec = spec_from_header(read_local_header(path), path.stat().st_size)
            file_bytes = spec.file_bytes or path.stat().st_size
            for pair in PAIRS:
                for num_ctx, parallel in SETTINGS:
                    case = Case(model, mtp, pair, num_ctx, parallel)
                    argv, load = one.case_argv(
                        one.Case(model, mtp, 0, TARGET, num_ctx, parallel), spec.shape, file_bytes
                    )
                    key = (model, mtp, pair, tuple(argv))
                    if key in done:
                        continue
                    done.add(key)
                    if args.limit and measured >= args.limit:
                        break
                    t0 = time.monotonic()
                    run_argv = [str(path) if a == "MODEL" else a for a in argv]
                    try:
                        log, ports = one.run_devices(binary, so, run_argv, pair, args.timeout)
                        ctx = shape.context_length if num_ctx is None else load.num_ctx * load.parallel
                        fit = parse_fit2(log, ctx, ports, pair)
                    except (RuntimeError, TimeoutError) as e:
                        print(f"{model} {case}: {e}", file=sys.stderr)
                        fit = {"status": "error", "error": str(e)[-2000:], "trace": []}
                    row = {
                        "model": model,
                        "quant": QUANT,
                        "n_layer": shape.n_layer,
                        "n_expert": shape.n_expert,
                        "mtp": mtp,
                        "file_bytes": file_bytes,
                        "rpc_device_mib": list(pair),
                        "fit_target_mib": TARGET,
                        "num_ctx": num_ctx,
                        "parallel": None if num_ctx is None else load.parallel,
                        "requested_parallel": parallel,
                        "batch": load.batch,
                        "argv": argv,
                        "secs": round(time.monotonic() - t0, 1),
                    } | fit
                    trace = row.pop("trace")
                    row["trace"] = trace
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    measured += 1
                    devs = " ".join(
                        f"[{d['name'].split(' ')[0]} {d['device_mib']}: {d.get('n_layer')}/{d.get('n_part')} "
                        f"{d.get('overflow_type')} {d.get('used_mib')}]"
                        for d in row.get("devices", [])
                    )
                    print(
                        f"[{measured} {time.monotonic() - started:.0f}s] {model} {pair} ctx={num_ctx}x{parallel}: "
                        f"{row['status']} n_ctx={row.get('n_ctx')} ngl={row.get('ngl')} {devs} ({row['secs']} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    print(f"{measured} rows -> {args.out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
