#!/usr/bin/env python3
"""Predicted vs measured memory for every real llama.cpp run in a calibration folder.

    python scripts/calibrate.py [FOLDER]      (default: ../shared/calibration, else tests/fixtures)

Each JSONL row is one llama.cpp run (see the folder's README). The measured figure is what must fit:
on a GPU, the process's device footprint (nvidia-smi peak - baseline, CUDA context included); on the CPU,
the sum of every buffer llama.cpp logged. The target: every row within 3% (or 128 MiB, whichever is larger)
and never more than 2% below the measurement. Exit status 1 when a row misses it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ollama_fit.catalog import find_model
from ollama_fit.estimate import Runtime, estimate
from ollama_fit.units import MiB

# the calibration presets are shapes the catalog already has (same published configs)
PRESETS = {"llama-3.2-1b": "llama3.2:1b", "qwen2.5-7b": "qwen2.5-coder:7b"}
FILES = {"cpu.jsonl": "cpu", "gpu-h200.jsonl": "cuda"}


@dataclass(frozen=True)
class Row:
    name: str
    predicted_mib: float
    measured_mib: float

    @property
    def error_mib(self) -> float:
        return self.predicted_mib - self.measured_mib

    @property
    def error_pct(self) -> float:
        return self.error_mib / self.measured_mib * 100

    @property
    def ok(self) -> bool:
        within = abs(self.error_mib) <= max(0.03 * self.measured_mib, 128)
        return within and self.error_pct >= -2


def compare(record: dict, backend: str) -> Row:
    model = find_model(PRESETS[record["preset"]])
    spec = model.spec(record["quant"])
    rt = Runtime(
        ctx=record["ctx"],
        kv_type=record["kv_type"],
        flash_attn=record["fa"] == "on",
        ubatch=record["ubatch"],
        parallel=1,
        backend=backend,
    )
    est = estimate(spec, rt)
    if backend == "cpu":
        measured = sum(b["mib"] for b in record["buffers"])
        predicted = est.host_bytes / MiB
    else:
        measured = record["gpu_peak_mib"] - record["gpu_baseline_mib"]
        predicted = est.device_bytes / MiB
    run = f"ctx {record['ctx']:6} fa {record['fa']:3} kv {record['kv_type']}"
    name = f"{backend:4} {record['preset']:13} {record['quant']:6} {run}"
    return Row(name, predicted, measured)


def rows(folder: Path) -> list[Row]:
    out = []
    for file, backend in FILES.items():
        path = folder / file
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("rc", 0) == 0:
                out.append(compare(record, backend))
    return out


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    default = here.parent / "shared" / "calibration"
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else default if default.exists() else here / "tests/fixtures"
    table = rows(folder)
    print(f"{'run':62} {'predicted':>10} {'measured':>10} {'error':>9} {'error%':>7}")
    for r in table:
        mark = "" if r.ok else "  <-- MISS"
        print(
            f"{r.name:62} {r.predicted_mib:10.1f} {r.measured_mib:10.1f} {r.error_mib:+9.1f} {r.error_pct:+6.2f}%{mark}"
        )
    worst = max(table, key=lambda r: abs(r.error_pct))
    print(
        f"{len(table)} runs, {sum(r.ok for r in table)} within target; "
        f"worst {worst.error_pct:+.2f}% ({worst.name.strip()})"
    )
    return 0 if all(r.ok for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
