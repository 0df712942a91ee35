#!/usr/bin/env python3
"""Predicted vs measured memory for every real llama.cpp run in a calibration folder.

    python scripts/calibrate.py [FOLDER]      (default: ../shared/calibration, else tests/fixtures)

Each JSONL row is one llama.cpp run (see the folder's README). The measured figure is what must fit:
on a GPU, the process's device footprint (nvidia-smi peak - baseline, CUDA context included); on the CPU,
the sum of every buffer llama.cpp logged. The target: every row within 3% (or 128 MiB, whichever is larger)
and never more than 2% below the measurement; rows measured with llama-server (compute and output buffers
modelled per slot) within max(3%, 16 MiB). Exit status 1 when a row misses it.

Rows come from synthetic files of a named shape (`preset`, rebuilt from the catalog) or from a real GGUF
(`gguf`, a file name looked up in the test-asset cache, tests/real_assets.py); rows whose file is absent
are listed as skipped. Files a folder lacks are read from tests/fixtures (the llama-server runs live there).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ollama_fit.memory.estimate import Runtime, estimate, split_for_ngl
from ollama_fit.model.catalog import find_model
from ollama_fit.model.gguf.reader import read_local_header
from ollama_fit.model.gguf.shape import spec_from_header
from ollama_fit.model.spec import ModelSpec
from ollama_fit.units import MiB

HERE = Path(__file__).resolve().parent.parent
# the calibration presets are shapes the catalog already has (same published configs)
PRESETS = {"llama-3.2-1b": "llama3.2:1b", "qwen2.5-7b": "qwen2.5-coder:7b", "llama-3.1-8b": "llama3.1:8b"}
# file -> (backend, the program that was run)
FILES = {
    "cpu.jsonl": ("cpu", "llama-completion"),
    "gpu-h200.jsonl": ("cuda", "llama-completion"),
    "gpu-h100-offload.jsonl": ("cuda", "llama-completion"),
    "cpu-llama-server.jsonl": ("cpu", "llama-server"),
}


@dataclass(frozen=True)
class Row:
    name: str
    predicted_mib: float
    measured_mib: float
    runner: str = "llama-completion"

    @property
    def error_mib(self) -> float:
        return self.predicted_mib - self.measured_mib

    @property
    def error_pct(self) -> float:
        return self.error_mib / self.measured_mib * 100

    @property
    def ok(self) -> bool:
        if self.runner == "llama-server":
            return abs(self.error_mib) <= max(0.03 * self.measured_mib, 16)
        within = abs(self.error_mib) <= max(0.03 * self.measured_mib, 128)
        return within and self.error_pct >= -2


def asset_path(name: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ollama-fit" / "test-assets" / name


def record_spec(record: dict) -> ModelSpec | None:
    if "gguf" in record:
        path = asset_path(record["gguf"])
        if not path.exists():
            return None
        return spec_from_header(read_local_header(path), path.stat().st_size)
    return find_model(PRESETS[record["preset"]]).spec(record["quant"])


def runtime(record: dict, backend: str, runner: str) -> Runtime:
    return Runtime(
        ctx=record["ctx"] // record.get("parallel", 1),  # llama-server's -c is shared by its slots
        kv_type=record["kv_type"],
        flash_attn=record["fa"] == "on",
        ubatch=record["ubatch"],
        parallel=record.get("parallel", 1),
        backend=backend,
        runner=runner,
    )


def compare(record: dict, backend: str, runner: str = "llama-completion") -> Row | None:
    spec = record_spec(record)
    if spec is None:
        return None
    rt = runtime(record, backend, runner)
    ngl = int(record.get("ngl", 999))
    if backend != "cpu" and ngl <= spec.shape.n_layer:
        split, output_gpu = split_for_ngl(spec.shape.n_layer, ngl)
        est = estimate(spec, rt, split, output_gpu=output_gpu)
    else:
        est = estimate(spec, rt)
    if backend == "cpu":
        measured = sum(b["mib"] for b in record["buffers"])
        predicted = est.host_bytes / MiB
    else:
        measured = record["gpu_peak_mib"] - record["gpu_baseline_mib"]
        predicted = est.device_bytes / MiB
    model = record.get("preset") or Path(record["gguf"]).stem[:13]
    run = f"ctx {record['ctx']:6} fa {record['fa']:3} kv {record['kv_type']:4}"
    if runner == "llama-server":
        run += f" np {record.get('parallel', 1)} ub {record['ubatch']}"
    if ngl <= spec.shape.n_layer:
        run += f" ngl {ngl}"
    return Row(f"{backend:4} {model:13} {record['quant']:6} {run}", predicted, measured, runner)


def rows(folder: Path, skipped: list[str] | None = None) -> list[Row]:
    out = []
    for file, (backend, runner) in FILES.items():
        path = folder / file
        if not path.exists():
            path = HERE / "tests" / "fixtures" / file
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("rc", 0) != 0:
                continue
            row = compare(record, backend, runner)
            if row is None:
                if skipped is not None:
                    skipped.append(f"{file}: {record['gguf']} not in the test-asset cache")
                continue
            out.append(row)
    return out


def main() -> int:
    default = HERE.parent / "shared" / "calibration"
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else default if default.exists() else HERE / "tests/fixtures"
    skipped: list[str] = []
    table = rows(folder, skipped)
    print(f"{'run':78} {'predicted':>10} {'measured':>10} {'error':>9} {'error%':>7}")
    for r in table:
        mark = "" if r.ok else "  <-- MISS"
        print(
            f"{r.name:78} {r.predicted_mib:10.1f} {r.measured_mib:10.1f} {r.error_mib:+9.1f} {r.error_pct:+6.2f}%{mark}"
        )
    worst = max(table, key=lambda r: abs(r.error_pct))
    print(
        f"{len(table)} runs, {sum(r.ok for r in table)} within target; "
        f"worst {worst.error_pct:+.2f}% ({worst.name.strip()})"
    )
    for note in sorted(set(skipped)):
        print(f"skipped: {note} (python tests/real_assets.py fetches it)")
    return 0 if all(r.ok for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
