#!/usr/bin/env python3
"""Predicted vs measured decode speed for every published measurement in a calibration file.

    python scripts/calibrate_speed.py [FILE.jsonl ...]      (default: ../shared/calibration/speed-public.jsonl
                                                             and tests/fixtures/speed-cpu.jsonl)
    python scripts/calibrate_speed.py --fit                  (refit the constants; needs scipy)

Each row names the hardware, the model and the quant of a real llama.cpp run and its measured tokens/s. The
script simulates that machine (`--gpu`), rebuilds the model's tensor table, places it as the planner would and
prints the point estimate, the range shown to users and the error. Targets (issue 11): median |error| of the
point estimate at most 10%, at least 80% of measurements inside the range, median range width at most 1.5x.
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.memory.estimate import Runtime, estimate
from ollama_fit.model.spec import ModelShape, rebuild
from ollama_fit.speed import decode_speed
from ollama_fit.speed.params import PARAMS, Params
from ollama_fit.units import GiB

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = (ROOT.parent / "shared/calibration/speed-public.jsonl", ROOT / "tests/fixtures/speed-cpu.jsonl")


def _llama(layers: int, embd: int, heads: int, kv: int, ffn: int, vocab: int, **kw: Any) -> ModelShape:
    return ModelShape(
        arch="llama",
        n_layer=layers,
        n_embd=embd,
        n_head=heads,
        n_head_kv=(kv,) * layers,
        key_length=embd // heads,
        value_length=embd // heads,
        n_ff=ffn,
        n_vocab=vocab,
        context_length=8192,
        **kw,
    )


# published configs of the measured models (meta-llama/Meta-Llama-3-8B, -70B, Llama-2-7b; gemma-3-270m)
MODELS = {
    "llama3-8b": _llama(32, 4096, 32, 8, 14336, 128256),
    "llama3-70b": _llama(80, 8192, 64, 8, 28672, 128256),
    "llama2-7b": _llama(32, 4096, 32, 32, 11008, 32000),
    "gemma3-270m": ModelShape(
        arch="gemma3",
        n_layer=18,
        n_embd=640,
        n_head=4,
        n_head_kv=(1,) * 18,
        key_length=256,
        value_length=256,
        n_ff=2048,
        n_vocab=262144,
        context_length=32768,
        tied_embeddings=True,
        sliding_window=512,
        swa_layers=tuple(i % 6 < 5 for i in range(18)),
        qk_norm=True,
        post_norms=True,
    ),
}
FILL = {"tg128": 64, "gen1024": 258 + 512}  # tokens in the cache, averaged over the generated ones


@dataclass(frozen=True)
class Result:
    row: dict[str, Any]
    predicted: float
    low: float
    high: float

    @property
    def measured(self) -> float:
        return float(self.row["tg_tps"])

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1

    @property
    def inside(self) -> bool:
        return self.low <= self.measured <= self.high


def _hardware(row: dict[str, Any]) -> Hardware:
    base = Hardware(gpus=(), ram_total_bytes=256 * GiB, ram_available_bytes=256 * GiB, cpu=Cpu("unknown", None, None))
    if row.get("vendor") == "cpu":  # a CPU run: cores and RAM bandwidth as measured
        cpu = Cpu(row["device"], row["cores"], row["cores"], bandwidth_gbs=float(row["bandwidth_gbs"]))
        return replace(base, cpu=cpu)
    device = row["device"].removeprefix("Apple ").strip()
    if row.get("vendor") == "apple":
        hw = simulate(Simulation(gpus=(f"{device} {row['memory_gb']}GB",)), lambda: base)
        cores = _apple_cores(row["hardware"])
        return replace(hw, apple=replace(hw.apple, gpu_cores=cores)) if hw.apple and cores else hw
    count = int(row.get("gpu_count") or 1)
    return simulate(Simulation(gpus=(f"{count}x {device}",), ram="256GiB"), lambda: base)


def _apple_cores(text: str) -> int | None:
    for word in text.replace("‑", "-").split():
        if word.endswith("-Core"):
            return int(word.split("-")[0])
    return None


def predict(row: dict[str, Any], p: Params = PARAMS) -> Result:
    """Every measured run had all layers on its GPU(s) (-ngl 99, layers split evenly over two cards) or ran
    on the CPU alone; the memory fit is not the question here, so the placement is taken as measured."""
    hw = _hardware(row)
    spec = rebuild(MODELS[row["model_id"]], row["quant"])
    count = len(hw.gpus)
    rt = Runtime(ctx=int(row.get("ctx", 4096)), backend=hw.gpus[0].backend if count else "cpu")
    n = spec.shape.n_layer
    split = [n // count + (1 if i < n % count else 0) for i in range(count)] if count else None
    est = estimate(spec, rt, split=split)
    speed = decode_speed(spec, est, hw, [g.index for g in hw.gpus], FILL.get(row["test"], 64), p)
    if speed is None:
        raise SystemExit(f"{row['id']}: no bandwidth known")
    return Result(row, speed.tps, speed.low, speed.high)


def load(files: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for f in files:
        if f.exists():
            rows.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return rows


def summary(results: list[Result]) -> tuple[float, float, float]:
    median_err = statistics.median(abs(r.error) for r in results)
    inside = sum(r.inside for r in results) / len(results)
    width = statistics.median(r.high / r.low for r in results)
    return median_err, inside, width


def report(results: list[Result]) -> int:
    print(f"{'measurement':58} {'measured':>8} {'predicted':>9} {'range':>13} {'error':>7}")
    for r in results:
        mark = " " if r.inside else "*"
        rng = f"{r.low:.1f}-{r.high:.1f}"
        print(f"{r.row['id'][:58]:58} {r.measured:8.1f} {r.predicted:9.1f} {rng:>13} {r.error * 100:+6.1f}%{mark}")
    median_err, inside, width = summary(results)
    print(
        f"{len(results)} rows: median |error| {median_err * 100:.1f}% (target <= 10%), "
        f"{inside * 100:.0f}% inside the range (target >= 80%), median range width {width:.2f}x (target <= 1.5x)"
    )
    ratios = sorted(r.measured / r.predicted for r in results)
    q = statistics.quantiles(ratios, n=20)
    print(f"measured / predicted: 5th percentile {q[0]:.3f}, 95th {q[-1]:.3f} (the range shown is derived from these)")
    print("(* = measurement outside the range shown)")
    return 0 if median_err <= 0.10 and inside >= 0.8 and width <= 1.5 else 1


def fit(rows: list[dict[str, Any]]) -> Params:
    """Least squares on log(predicted / measured), every constant bounded to a physically plausible range."""
    from scipy.optimize import least_squares  # only for refitting

    names = [
        ("efficiency", "gddr", 0.5, 1.0),
        ("efficiency", "hbm", 0.3, 1.0),
        ("efficiency", "apple", 0.4, 1.0),
        ("efficiency", "apple-ultra", 0.3, 1.0),
        ("layer_cost_s", "cuda", 5e-6, 300e-6),
        ("layer_cost_s", "metal", 5e-6, 400e-6),
        ("ops", "Q8_0", 2.0, 30.0),
        ("ops", "Q4_0", 2.0, 30.0),
        ("ops", "Q4_K", 2.0, 40.0),
        ("ops", "Q2_K", 2.0, 80.0),
        ("compute_share", None, 0.1, 1.0),
    ]

    def make(x: list[float]) -> Params:
        eff, cost, ops = dict(PARAMS.efficiency), dict(PARAMS.layer_cost_s), dict(PARAMS.ops)
        share = PARAMS.compute_share
        for (group, key, _, _), v in zip(names, x, strict=True):
            if group == "efficiency":
                eff[str(key)] = v
            elif group == "layer_cost_s":
                cost[str(key)] = v
            elif group == "ops":
                ops[str(key)] = v
            else:
                share = v
        for k in ("Q5_K", "Q6_K"):  # the K-quants share one dequantization scheme
            ops[k] = ops["Q4_K"]
        ops["Q3_K"] = ops["Q2_K"]
        ops["Q4_1"] = ops["Q4_0"]
        return replace(PARAMS, efficiency=eff, layer_cost_s=cost, ops=ops, compute_share=share)

    gpu_rows = [r for r in rows if r.get("vendor") != "cpu"]

    def residuals(x: list[float]) -> list[float]:
        p = make(list(x))
        return [math.log(predict(r, p).predicted / float(r["tg_tps"])) for r in gpu_rows]

    x0 = [PARAMS.efficiency["gddr"], 0.6, 0.75, 0.55, 60e-6, 100e-6, 3.0, 4.0, 6.0, 12.0, 0.5]
    lo = [n[2] for n in names]
    hi = [n[3] for n in names]
    scale = [0.1, 0.1, 0.1, 0.1, 50e-6, 50e-6, 1, 1, 1, 1, 0.1]
    out = least_squares(residuals, x0, bounds=(lo, hi), x_scale=scale, loss="soft_l1", f_scale=0.1)
    for (group, key, _, _), v in zip(names, out.x, strict=True):
        print(f"{group}[{key}] = {v:.4g}")
    return make(list(out.x))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--fit", action="store_true", help="refit the constants (needs scipy) and report with them")
    args = ap.parse_args()
    rows = load(args.files or list(DEFAULT_FILES))
    if not rows:
        print("no calibration rows found", file=sys.stderr)
        return 2
    p = fit(rows) if args.fit else PARAMS
    return report([predict(r, p) for r in rows])


if __name__ == "__main__":
    sys.exit(main())
