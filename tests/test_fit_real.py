"""The fit placement (placement/fit.py) against the real llama-server's own --fit decisions: an rpc-server on this
CPU serving as a device of a chosen size (tests/fixtures/fit-rpc-llama.md says how the rows were made). The
estimator stands in for llama.cpp's dry runs, with the RPC device's CPU-backend compute buffers and no CUDA
context; the same runtime Ollama 0.32.15 gives llama-server (its argv in each row)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ollama_fit.memory.estimate import Runtime
from ollama_fit.model.catalog import find_model
from ollama_fit.placement.fit import FRACTION_NAMES, FitDevice, FitResult, fit

FIXTURE = Path(__file__).parent / "fixtures" / "fit-rpc-llama.jsonl"
MiB = 1024**2
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines()] if FIXTURE.exists() else []
MEASURED = [r for r in ROWS if r["status"] not in ("error",)]


def _flag(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


@cache
def _spec(model: str, quant: str) -> Any:
    return find_model(model).spec(quant)


def runtime_of(row: dict[str, Any]) -> tuple[Runtime, bool, int]:
    """The llama-server runtime of a row's argv: (runtime, context unset, KV streams)."""
    argv = row["argv"]
    spec = _spec(row["model"], row["quant"])
    unset = _flag(argv, "-c") is None
    slots = int(_flag(argv, "-np", "1") or 1)
    ctx = spec.shape.context_length if unset else int(_flag(argv, "-c") or 0) // slots
    batch = int(_flag(argv, "-ub", "512") or 512)
    kv = _flag(argv, "--cache-type-k", "f16") or "f16"
    # --flash-attn auto turns it on for the CPU backend behind the RPC device (every row of the argv fixture)
    # llama-server without -np serves 4 slots from one unified cache: one KV stream, state and outputs for 4
    parallel = 4 if _flag(argv, "-np") is None else slots
    rt = Runtime(
        ctx=ctx, kv_type=kv, ubatch=batch, parallel=parallel, backend="rpc", runner="llama-server", kv_unified=unset
    )
    return rt, unset, rt.streams


@dataclass(frozen=True)
class Compared:
    row: dict[str, Any]
    ours: FitResult

    @property
    def decision(self) -> tuple[Any, ...]:
        o = self.ours
        parts = sum(d.n_part for d in o.layers)
        overflow = FRACTION_NAMES[o.layers[0].overflow] if parts else None
        ngl = None if o.ngl == -1 else o.ngl
        return (o.status, self.ctx_total, ngl, parts if ngl is not None else None, overflow)

    @property
    def real(self) -> tuple[Any, ...]:
        r = self.row
        ngl = r["ngl"]
        return (r["status"], r["n_ctx"], ngl, r["n_part"] if ngl is not None else None, r["overflow_type"])

    @property
    def ctx_total(self) -> int:
        _, _, streams = runtime_of(self.row)
        return self.ours.ctx * streams

    @property
    def layers_off(self) -> int:
        ours, real = self.decision, self.real
        if ours[2] is None or real[2] is None:
            return 0 if ours[2] == real[2] else 99
        return max(abs(ours[2] - real[2]), abs((ours[3] or 0) - (real[3] or 0)))

    @property
    def device_mib(self) -> float:
        g = self.ours.estimate.gpus[0] if self.ours.estimate.gpus else None
        return (g.total_bytes - g.overhead_bytes) / MiB if g else 0.0


def compare(row: dict[str, Any]) -> Compared:
    rt, unset, streams = runtime_of(row)
    device = FitDevice(row["device_mib"] * MiB, row["fit_target_mib"] * MiB)
    spec = _spec(row["model"], row["quant"])
    mtp = 1 if row.get("mtp") else 0  # the file carried its prediction block (tests/hybrid_ggufs.py)
    return Compared(row, fit(spec, rt, [device], ctx_auto=unset, streams=streams, mtp=mtp))


def _table(results: list[Compared]) -> str:
    lines = []
    for c in results:
        r = c.row
        mark = "ok " if c.decision == c.real else "!! "
        lines.append(
            f"{mark}{r['model']:>18} dev={r['device_mib']:>6} tgt={r['fit_target_mib']:>4} "
            f"ctx={r['num_ctx']}x{r['parallel']}: real {c.real} ours {c.decision} "
            f"used real={r['device_used_mib']} ours={c.device_mib:.0f}"
        )
    return "\n".join(lines)


pytestmark = pytest.mark.skipif(not MEASURED, reason="no fit fixture (scripts/measure_fit.py)")


def test_the_fixture_covers_dense_and_moe_models_from_tiny_to_whole_devices():
    models = {r["model"] for r in MEASURED}
    assert {"llama3.1:8b", "qwen3:4b", "qwen3.5:35b-a3b"} <= models
    statuses = {r["status"] for r in MEASURED}
    assert {"fit", "no-change"} <= statuses
    assert any(r["overflow_type"] in ("UP", "GATE", "ATTN") for r in MEASURED)  # a split layer, measured
    assert any(r["num_ctx"] is None for r in MEASURED)  # context unset
    assert {r["fit_target_mib"] for r in MEASURED} >= {512, 1024}


def test_the_fit_decides_as_the_real_llama_server():
    results = [compare(r) for r in MEASURED]
    same = sum(c.decision == c.real for c in results)
    # >= 90% identical decisions (status, context, -ngl, partial layers, what the split layer keeps) and
    # never more than one layer off
    assert same >= 0.9 * len(results), _table(results)
    assert all(c.layers_off <= 1 for c in results), _table([c for c in results if c.layers_off > 1])


def test_the_device_memory_of_each_decision_is_llama_cpps_projection():
    """Where both chose the same placement, the device's buffers within max(3%, 128 MiB) of llama.cpp's
    projection for it (the MiB it logs)."""
    results = [compare(r) for r in MEASURED]
    same = [c for c in results if c.decision == c.real and c.row["device_used_mib"] is not None]
    assert same
    off = [c for c in same if abs(c.device_mib - c.row["device_used_mib"]) > max(0.03 * c.row["device_used_mib"], 128)]
    assert not off, _table(off)
