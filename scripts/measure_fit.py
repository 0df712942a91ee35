#!/usr/bin/env python3
"""Record what the real llama-server's --fit decides for a GPU of a chosen size, on a machine without one:
llama.cpp's RPC backend serves its CPU backend as a remote "GPU" whose memory an LD_PRELOAD shim
(scripts/fake_device_memory.c) reports as FAKE_DEVICE_MIB MiB, all free.

    python scripts/measure_fit.py [--model ID ...] [--quick] [--limit N] [--append] [OUT.jsonl]
    (default OUT: tests/fixtures/fit-rpc-llama.jsonl, rewritten row by row, or added to with --append;
    default models: the whole grid; tests/fixtures/fit-rpc-llama.md says how the fixture was made)

Each case writes the catalog model's sparse Q4_K_M GGUF (tests/hybrid_ggufs.py: the real tensor table, zero data;
Qwen3.5 with and without its MTP block), starts `ggml-rpc-server -H 127.0.0.1 -p PORT -t 1` with the shim, then
llama-server with `--rpc 127.0.0.1:PORT` and the argv Ollama 0.32.15 starts it with (runtime/ollama.py `plan_load` for a
CPU-only machine, then `server_argv`) less `--load-mode none` (a machine with a GPU maps the file), plus
`--fit-target M` when the case's target is not llama.cpp's default 1024 MiB; for the "context unset" cases `-c` and
`-np` are dropped so that llama-server's own defaults apply (the trained context; 4 slots, unified cache).
Ollama's `--log-verbosity 4` makes common/fit.cpp print its trace; once the fit is decided ("fitting params to
free memory took") both processes are killed, before any weight is copied over RPC. Every wait is bounded and
everything binds loopback only. The binaries: $LLAMA_SERVER (and ggml-rpc-server beside it), else the build of
scripts/build_llama_cpp.sh; the shim is compiled into that cache on first use.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from measure_llama_server import default_binary, free_port  # noqa: E402

from ollama_fit.errors import InvalidInput  # noqa: E402
from ollama_fit.model.catalog import find_model  # noqa: E402
from ollama_fit.model.gguf import read_local_header, spec_from_header  # noqa: E402
from ollama_fit.runtime.ollama import NEWEST, Machine, plan_load, server_argv  # noqa: E402

QUANT = "Q4_K_M"
DEFAULT_TARGET = 1024  # llama.cpp's --fit-target default (MiB)
# (catalog id, the model it stands for, MTP block in the file); fake device sizes in MiB, from "barely anything"
# to "fits whole at 32K"; the two sizes (indices) also run with a 512 MiB target
GRID: list[tuple[str, bool, list[int], tuple[int, int]]] = [
    ("llama3.1:8b", False, [1536, 3072, 4608, 6144, 8192, 11264], (2, 3)),
    ("qwen3:4b", False, [1536, 2560, 3584, 5120, 6656, 9216], (1, 3)),
    ("qwen2.5-coder:14b", False, [1536, 4096, 7168, 10240, 13312, 16896], (2, 3)),
    ("qwen3.5:35b-a3b", True, [1536, 3072, 6144, 12288, 18432, 24576], (2, 3)),
    ("qwen3.5:35b-a3b", False, [1536, 6144, 12288, 24576], ()),  # the same file without its MTP block
    ("nemotron-3-nano:30b", False, [1536, 3072, 6144, 12288, 18432, 26624], (2, 3)),
    # Qwen3-Next-80B-A3B (qwen3next)
    ("qwen3-next:80b-a3b", False, [1536, 6144, 12288, 24576, 36864, 51200], (2, 3)),
]
# (num_ctx per slot, OLLAMA_NUM_PARALLEL); None: context unset, -c and -np dropped
SETTINGS: list[tuple[int | None, int | None]] = [(8192, 1), (32768, 1), (8192, 2), (None, None)]

SUMMARY = re.compile(
    r"common_params_fit_impl:\s+- .*?:\s+(\d+) layers(?: \(\s*(\d+) overflowing\))?,"
    r"\s+(-?\d+) MiB used,\s+(-?\d+) MiB free"
)
TEST_ROW = re.compile(r"id=(\d+), n_layer=\s*(\d+), n_part=\s*(\d+), overflow_type=(\d+), mem=\s*(-?\d+) MiB")
SET_NGL = re.compile(r"set ngl_per_device\[\d+\]")
SET_TYPE = re.compile(r"set ngl_per_device\[\d+\]\.\(n_layer, n_part, overflow_type\)=\(\d+, \d+, (\w+)\)")
CTX_REDUCED = re.compile(r"context size reduced from (\d+) to (\d+)")
PROJECTED = re.compile(r"projected to use (\d+) MiB of device memory vs\. (\d+) MiB of free device memory")
# common_memory_breakdown_print's row of a device: total = free + (self = model + context + compute) + unaccounted
BREAKDOWN = re.compile(
    r"common_memory_breakdown_print: \|\s+- (?!Host)(\S+) .*?\|"
    r"\s*(\d+)\s*=\s*(\d+)\s*\+\s*\(\s*(\d+)\s*=\s*(\d+)\s*\+\s*(\d+)\s*\+\s*(\d+)\s*\)"
)
RPC_PORT = re.compile(r"127\.0\.0\.1:\d+")  # the fake device's name: its endpoint, a free port each run
DONE = "fitting params to free memory took"


@dataclass(frozen=True)
class Case:
    model: str
    mtp: bool
    device_mib: int
    target_mib: int
    num_ctx: int | None
    parallel: int | None


def cache_dir(binary: Path) -> Path:
    return binary.parent.parent.parent  # <cache>/build-11434/bin/llama-server


def rpc_binaries() -> Path | None:
    """The llama-server whose folder also holds ggml-rpc-server (the measured devices), or None, said on stderr."""
    binary = default_binary()
    if binary.exists() and (binary.parent / "ggml-rpc-server").exists():
        return binary
    print(f"no llama-server / ggml-rpc-server in {binary.parent} (scripts/build_llama_cpp.sh)", file=sys.stderr)
    return None


def shim(binary: Path) -> Path:
    """The compiled shim in the llama.cpp cache, rebuilt when its source is newer."""
    src = ROOT / "scripts" / "fake_device_memory.c"
    out = cache_dir(binary) / "fake_device_memory.so"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(out), str(src), "-ldl"], check=True, timeout=120)
    return out


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ggml-rpc-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return  # the server reads no HELLO from this probe and waits for the next client
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"ggml-rpc-server not listening on {port} after {timeout:.0f} s")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (a port the OS hands out twice is asked for again)."""
    ports: list[int] = []
    for _ in range(50 * count):
        port = free_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} distinct free ports")


def run_devices(binary: Path, so: Path, argv: list[str], sizes: Sequence[int], timeout: float) -> tuple[str, list[int]]:
    """Start one fake device per entry of `sizes` (MiB) and llama-server on them (--rpc in that order); return
    llama-server's log up to the fit's end and the devices' ports."""
    *rpc_ports, port = free_ports(len(sizes) + 1)
    args = [str(port) if a == "PORT" else a for a in argv[1:]]
    procs: list[subprocess.Popen[bytes]] = []
    server = None
    with tempfile.TemporaryFile() as rpc_log, tempfile.TemporaryFile() as log:
        try:
            for rpc_port, mib in zip(rpc_ports, sizes, strict=True):
                env = os.environ | {"FAKE_DEVICE_MIB": str(mib), "LD_PRELOAD": str(so)}
                cmd = [str(binary.parent / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", str(rpc_port), "-t", "1"]
                procs.append(
                    subprocess.Popen(cmd, stdout=rpc_log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                )
                wait_listening(rpc_port, procs[-1], 30)
            endpoints = ",".join(f"127.0.0.1:{p}" for p in rpc_ports)
            server = subprocess.Popen(
                [str(binary), *args, "--rpc", endpoints], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            deadline = time.monotonic() + timeout
            text = ""
            while time.monotonic() < deadline:
                log.seek(0)
                text = log.read().decode(errors="replace")
                if DONE in text:
                    return text, rpc_ports
                if server.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {server.returncode}:\n{text[-3000:]}")
                time.sleep(0.2)
            raise TimeoutError(f"no fit decision after {timeout:.0f} s:\n{text[-3000:]}")
        finally:
            kill(server)
            for proc in procs:
                kill(proc)


def run_fit(binary: Path, so: Path, argv: list[str], device_mib: int, timeout: float) -> str:
    """One fake device of `device_mib` MiB: llama-server's log up to the fit's end."""
    return run_devices(binary, so, argv, [device_mib], timeout)[0]


def fit_outcome(text: str, requested_ctx: int | None) -> tuple[str, int | None]:
    """The fit's status (no-change, ctx-reduced, fit, failed; error when the trace never says) and final context
    (the last "context size reduced", else `requested_ctx`)."""
    if "no changes needed" in text:
        status = "no-change"
    elif "entire model can be fit by reducing context" in text:
        status = "ctx-reduced"
    elif "successfully fit params" in text:
        status = "fit"
    elif "failed to fit params" in text:
        status = "failed"
    else:
        status = "error"
    reduced = CTX_REDUCED.findall(text)
    return status, int(reduced[-1][1]) if reduced else requested_ctx


def parse_fit(log: str, requested_ctx: int) -> dict[str, Any]:
    """fit.cpp's decisions, read from its LOG_TRC lines (llama.cpp b11434). `requested_ctx`: the context fit
    starts from (-c; unset: the trained context, one stream as the server's automatic slots share one cache)."""
    lines = log.splitlines()
    trace = [RPC_PORT.sub("127.0.0.1:RPCPORT", ln.rstrip()) for ln in lines if ln.startswith("common_params_fit_impl:")]
    text = "\n".join(lines)
    status, n_ctx = fit_outcome(text, requested_ctx)
    projected = PROJECTED.search(text)

    # replay the test allocations: each "set ngl_per_device[..]" accepts the allocation just measured; the first
    # (nothing on the device) is the starting point. A device's breakdown row precedes its test's header.
    breakdown: dict[str, int] | None = None
    pending: dict[str, Any] | None = None
    accepted: dict[str, Any] | None = None
    overflow: str | None = None
    in_test = False
    for ln in lines:
        m = BREAKDOWN.search(ln)
        if m:
            breakdown = {"model": int(m[5]), "context": int(m[6]), "compute": int(m[7])}
            continue
        if not ln.startswith("common_params_fit_impl:"):
            continue
        if "memory for test allocation by device:" in ln:
            pending, in_test = {"breakdown": breakdown}, True
            continue
        m = TEST_ROW.search(ln)
        if m and in_test and pending is not None:
            pending |= {"n_layer": int(m[2]), "n_part": int(m[3]), "mem": int(m[5])}
            if accepted is None:
                accepted = pending
            continue
        in_test = False
        if SET_NGL.search(ln) and pending is not None:
            accepted = pending
            t = SET_TYPE.search(ln)
            if t:
                overflow = t[1]
    summaries = [SUMMARY.search(ln) for ln in trace]
    last = [s for s in summaries if s][-1:] or [None]
    summary = last[0]

    row: dict[str, Any] = {"status": status, "n_ctx": n_ctx, "ngl": None, "n_part": None, "overflow_type": None}
    row["device_used_mib"] = int(projected[1]) if status == "no-change" and projected else None
    row["projected_mib"] = int(projected[1]) if projected else None  # with the initial parameters
    if status in ("fit", "failed") and summary:
        ngl = int(summary[1])
        n_part = int(summary[2]) if summary[2] is not None else None
        if n_part is None:  # dense-only summary: a dense model, or a MoE whose dense weights do not all fit
            n_part = accepted["n_part"] if accepted and accepted.get("n_layer") == ngl else 0
        row |= {"ngl": ngl, "n_part": n_part, "device_used_mib": int(summary[3])}
        row["overflow_type"] = overflow or ("MOE" if n_part > 0 else None)
        if (
            accepted
            and accepted.get("breakdown")
            and accepted.get("n_layer") == ngl
            and accepted.get("n_part") == n_part
            and accepted.get("mem") == int(summary[3])
        ):
            row["breakdown"] = accepted["breakdown"]
    elif status == "no-change" and breakdown is not None:
        first = next((BREAKDOWN.search(ln) for ln in lines if BREAKDOWN.search(ln)), None)
        if first:  # the initial parameters' measurement is the first table printed
            row["breakdown"] = {"model": int(first[5]), "context": int(first[6]), "compute": int(first[7])}
    row["trace"] = trace
    return row


def case_argv(case: Case, shape: Any, file_bytes: int) -> tuple[list[str], Any]:
    load = plan_load(NEWEST, shape, Machine(), case.num_ctx, file_bytes, case.parallel or 1)
    argv = server_argv(load)  # MODEL and PORT placeholders
    if "--load-mode" in argv:
        i = argv.index("--load-mode")
        del argv[i : i + 2]
    if case.num_ctx is None:
        for flag in ("-c", "-np"):
            i = argv.index(flag)
            del argv[i : i + 2]
    if case.target_mib != DEFAULT_TARGET:
        argv += ["--fit-target", str(case.target_mib)]
    return argv, load


def cases_for(model: str, mtp: bool, sizes: list[int], low: tuple[int, int], quick: bool) -> list[Case]:
    if quick:  # smallest, middle, largest; the 512 target at the middle one
        mid = sizes[len(sizes) // 2]
        sizes, low_sizes = [sizes[0], mid, sizes[-1]], [mid]
    else:
        low_sizes = [sizes[i] for i in low]
    out = []
    for size in sizes:
        for target in [DEFAULT_TARGET] + ([512] if size in low_sizes else []):
            for num_ctx, parallel in SETTINGS:
                out.append(Case(model, mtp, size, target, num_ctx, parallel))
    return out


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="only these catalog ids")
    parser.add_argument("--quick", action="store_true", help="3 sizes per model (smallest, middle, largest)")
    parser.add_argument("--limit", type=int, default=0, help="stop after N measured cases (timing)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one fit")
    parser.add_argument("--append", action="store_true", help="add to OUT, skipping cases it already has")
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "tests" / "fixtures" / "fit-rpc-llama.jsonl")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still kill the servers, delete the file
    binary = rpc_binaries()
    if binary is None:
        return 2
    so = shim(binary)
    from ggufs import patch_u32
    from hybrid_ggufs import write_hybrid

    done: set[tuple[Any, ...]] = set()
    if args.append and args.out.exists():
        for ln in args.out.read_text().splitlines():
            r = json.loads(ln)
            done.add((r["model"], r["mtp"], r["device_mib"], r["fit_target_mib"], tuple(r["argv"])))
    else:
        args.out.write_text("")
    measured, started = 0, time.monotonic()
    for model, mtp, sizes, low in GRID:
        if (args.model and model not in args.model) or (args.limit and measured >= args.limit):
            continue
        try:
            shape = find_model(model).shape
        except InvalidInput as e:  # a model missing from the catalog is skipped, and said
            print(f"skip {model}: {e}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = write_hybrid(Path(tmp) / "model.gguf", shape, QUANT, mtp=mtp)
            if shape.arch == "qwen3":  # write_hybrid gives every qwen3* Qwen3.5's partial rotary (key_length / 4)
                patch_u32(path, "qwen3.rope.dimension_count", shape.key_length)  # dense Qwen3 rotates whole heads
            spec = spec_from_header(read_local_header(path), path.stat().st_size)
            file_bytes = spec.file_bytes or path.stat().st_size
            for case in cases_for(model, mtp, sizes, low, args.quick):
                argv, load = case_argv(case, spec.shape, file_bytes)
                key = (model, mtp, case.device_mib, case.target_mib, tuple(argv))
                if key in done:  # e.g. 8192 x 2 where Ollama gives the architecture one slot anyway
                    continue
                done.add(key)
                if args.limit and measured >= args.limit:
                    break
                t0 = time.monotonic()
                run_argv = [str(path) if a == "MODEL" else a for a in argv]
                try:
                    log = run_fit(binary, so, run_argv, case.device_mib, args.timeout)
                    ctx = shape.context_length if case.num_ctx is None else load.num_ctx * load.parallel
                    fit = parse_fit(log, ctx)
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
                    "device_mib": case.device_mib,
                    "fit_target_mib": case.target_mib,
                    "num_ctx": case.num_ctx,
                    "parallel": None if case.num_ctx is None else load.parallel,
                    "requested_parallel": case.parallel,
                    "batch": load.batch,
                    "argv": argv,
                    "secs": round(time.monotonic() - t0, 1),
                } | fit
                trace = row.pop("trace")
                row["trace"] = trace
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                measured += 1
                print(
                    f"[{measured} {time.monotonic() - started:.0f}s] {model} dev={case.device_mib} "
                    f"target={case.target_mib} ctx={case.num_ctx}x{case.parallel}: {row['status']} "
                    f"n_ctx={row.get('n_ctx')} ngl={row.get('ngl')} part={row.get('n_part')} "
                    f"{row.get('overflow_type')} used={row.get('device_used_mib')} ({row['secs']} s)",
                    file=sys.stderr,
                )
    print(f"{measured} rows -> {args.out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
