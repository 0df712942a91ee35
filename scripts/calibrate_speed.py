#!/usr/bin/env python3
"""Predicted vs measured decode speed for every published measurement in a calibration file.

    python scripts/calibrate_speed.py [FILE.jsonl ...]      (default: ../shared/calibration/speed-public.jsonl
                                                             and tests/fixtures/speed-cpu.jsonl)
    python scripts/calibrate_speed.py --fit                  (refit the constants; needs scipy)

With the default files it also predicts the rows of tests/fixtures/speed-public-extra.jsonl, sources no fit has
seen, with the shipped constants ("unseen sources").

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
import re
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ollama_fit.errors import InvalidInput
from ollama_fit.hardware.known import find_chip
from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.memory.estimate import MemoryEstimate, Runtime, estimate
from ollama_fit.model.spec import ModelShape, ModelSpec, rebuild
from ollama_fit.speed.devices import cpu_device, gpu_device
from ollama_fit.speed.model import Stage, token_seconds
from ollama_fit.speed.params import PARAMS, Params
from ollama_fit.speed.prompt import prompt_seconds_per_token
from ollama_fit.speed.work import stages
from ollama_fit.units import GiB

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = (
    ROOT.parent / "shared/calibration/speed-public.jsonl",
    ROOT.parent / "shared/calibration/speed-public-current.jsonl",
    ROOT / "tests/fixtures/speed-cpu.jsonl",
)


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
# rows of models the catalog holds, by the id a calibration file gives them (tests/fixtures/speed-public-extra.md)
CATALOG_MODELS = {
    "gpt-oss-20b": "gpt-oss:20b",
    "gpt-oss-120b": "gpt-oss:120b",
    "qwen3-30b-a3b": "qwen3:30b-a3b",
    "qwen3.6-35b-a3b": "qwen3.6:35b-a3b",
    "qwen3.5-9b": "qwen3.5:9b",
    "qwen3-next-80b-a3b": "qwen3-next:80b-a3b",
    "llama3.2-3b": "llama3.2:3b",
}
# published rows from sources the constants were never fitted on: predicted with the shipped constants only
UNSEEN_FILES = (ROOT / "tests/fixtures/speed-public-extra.jsonl",)
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
    device = re.sub(r"\s*\(.*\)$", "", row["device"]).removeprefix("Apple ").strip()  # "(SXM or PCIe not stated)"
    if row.get("vendor") == "apple":
        cores = row.get("gpu_cores") or _apple_cores(row["hardware"])
        memory = row.get("memory_gb")
        if not memory:  # not stated: the largest configuration of that variant (the model fits either way)
            chip = find_chip(device, gpu_cores=cores, bandwidth_gbs=row.get("bandwidth_gbs"))
            memory = chip.memory_gb[-1] if chip else 64
        hw = simulate(Simulation(gpus=(f"{device} {memory}GB",)), lambda: base)
        return replace(hw, apple=replace(hw.apple, gpu_cores=cores)) if hw.apple and cores else hw
    count = int(row.get("gpu_count") or 1)
    return simulate(Simulation(gpus=(f"{count}x {device}",), ram="256GiB"), lambda: base)


def _apple_cores(text: str) -> int | None:
    for word in text.replace("‑", "-").split():
        if word.endswith("-Core"):
            return int(word.split("-")[0])
    return None


@dataclass(frozen=True)
class Prepared:
    """A row with what does not depend on the constants worked out once: the machine, and the stages of one
    token (bytes and elements read per device), so that a refit only re-times them."""

    row: dict[str, Any]
    hw: Hardware
    stages: tuple[Stage, ...]
    spec: ModelSpec
    est: MemoryEstimate

    @property
    def era(self) -> str:
        return era(self.row)

    @property
    def source(self) -> str:
        return source_of(self.row)


def era(row: dict[str, Any]) -> str:
    """ "current" for builds from 2025 on (what Ollama runs today), "2024" for the older ones."""
    when = str(row.get("date") or "") + " " + str(row.get("build") or "")
    return "current" if re.search(r"\b202[5-9]", when) or "4167" in row.get("source", "") else "2024"


def source_of(row: dict[str, Any]) -> str:
    """The publication a row comes from (a benchmark repository, a discussion, a pull request)."""
    src = row.get("source", "?")
    m = re.match(r"(ggml-org/llama.cpp (?:PR|discussion|issue) \d+)", src)
    return m.group(1) if m else src.split(" (")[0]


def prepare(row: dict[str, Any]) -> Prepared:
    """Every measured run had all layers on its GPU(s) (-ngl 99, layers split evenly over two cards) or ran
    on the CPU alone; the memory fit is not the question here, so the placement is taken as measured."""
    hw = _hardware(row)
    spec = rebuild(_shape(row["model_id"]), row["quant"])
    count = len(hw.gpus)
    rt = Runtime(ctx=int(row.get("ctx", 4096)), backend=hw.gpus[0].backend if count else "cpu")
    n = spec.shape.n_layer
    split = [n // count + (1 if i < n % count else 0) for i in range(count)] if count else None
    est = estimate(spec, rt, split=split)
    gpus = [gpu_device(g, hw) for g in hw.gpus]
    return Prepared(row, hw, tuple(stages(spec, est, gpus, cpu_device(hw), FILL.get(row["test"], 64))), spec, est)


def _shape(model_id: str) -> ModelShape:
    if model_id in MODELS:
        return MODELS[model_id]
    from ollama_fit.model.catalog import find_model

    return find_model(CATALOG_MODELS[model_id]).shape


def unseen_skip(row: dict[str, Any]) -> str:
    """Why a row of an unseen source cannot be predicted like for like ("" when it can)."""
    if row["quant"].startswith("UD-") or "(" in row["quant"]:
        return f"a mixed file ({row['quant']}): not a llama-quantize mixture the rebuild can write"
    if "ANOMALOUS" in (row.get("notes") or ""):
        return "flagged anomalous by its source notes"
    if row.get("vendor") == "nvidia" and "Vulkan" in row.get("backend", ""):
        return "NVIDIA on Vulkan: Ollama runs CUDA there, the only backend predicted for NVIDIA"
    if row.get("vendor") == "cpu" and not row.get("bandwidth_gbs"):
        return "a CPU row without its RAM bandwidth"
    device = re.sub(r"\s*\(.*\)$", "", row["device"]).strip()
    try:
        _hardware(row)
    except InvalidInput:
        return f"{device}: not in the GPU table"
    return ""


def unseen_report() -> tuple[float, float, float] | None:
    """The shipped constants and range on published rows from sources no fit has seen."""
    rows = load(list(UNSEEN_FILES))
    usable = [r for r in rows if not unseen_skip(r)]
    if not usable:
        return None
    result = report([predict(prepare(r)) for r in usable], "unseen sources: rows no fit has seen, shipped constants")
    for r in rows:
        if why := unseen_skip(r):
            print(f"  not predicted: {r['id']}: {why}")
    return result


def retimed(prep: Prepared, p: Params) -> float:
    """Tokens per second of a prepared row under the constants `p` (a 2024 build: its own per-layer costs)."""
    if prep.era == "2024":
        p = replace(p, layer_cost_s={k: v * p.old_build_layer_factor for k, v in p.layer_cost_s.items()})
    gpus = iter(gpu_device(g, prep.hw, p) for g in prep.hw.gpus)
    timed = [
        replace(st, device=cpu_device(prep.hw, p) if st.device.kind == "cpu" else next(gpus)) for st in prep.stages
    ]
    result = token_seconds(timed, p)
    if result is None:
        raise SystemExit(f"{prep.row['id']}: no bandwidth known")
    return 1 / result[0]


def predict(prep: Prepared, p: Params = PARAMS) -> Result:
    tps = retimed(prep, p)
    return Result(prep.row, tps, tps * p.range_low, tps * p.range_high)


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


def _line(label: str, results: list[Result]) -> str:
    median_err, inside, width = summary(results)
    return (
        f"{label:48} {len(results):4} rows  median |error| {median_err * 100:5.1f}%  "
        f"inside {inside * 100:4.0f}%  width {width:.2f}x"
    )


def report(results: list[Result], title: str) -> tuple[float, float, float]:
    print(f"== {title}")
    print(f"{'measurement':58} {'measured':>8} {'predicted':>9} {'range':>13} {'error':>7}")
    for r in results:
        mark = " " if r.inside else "*"
        rng = f"{r.low:.1f}-{r.high:.1f}"
        print(f"{r.row['id'][:58]:58} {r.measured:8.1f} {r.predicted:9.1f} {rng:>13} {r.error * 100:+6.1f}%{mark}")
    for src in sorted({source_of(r.row) for r in results}):
        print(_line(f"  {src[:46]}", [r for r in results if source_of(r.row) == src]))
    print(_line("all", results) + "   (* = outside the range shown)")
    return summary(results)


# the constants refitted: (group, key, low bound, high bound), each a physical quantity kept plausible
FITTED = [
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
    ("old_build_layer_factor", None, 1.0, 4.0),
    ("layer_cost_exponent", None, 0.0, 1.0),
]


def _params(x: list[float], base: Params = PARAMS) -> Params:
    eff, cost, ops = dict(base.efficiency), dict(base.layer_cost_s), dict(base.ops)
    scalars: dict[str, float] = {}
    for (group, key, _, _), v in zip(FITTED, x, strict=True):
        if group == "efficiency":
            eff[str(key)] = v
        elif group == "layer_cost_s":
            cost[str(key)] = v
        elif group == "ops":
            ops[str(key)] = v
        else:
            scalars[group] = v
    for k in ("Q5_K", "Q6_K"):  # the K-quants share one dequantization scheme
        ops[k] = ops["Q4_K"]
    ops["Q3_K"] = ops["Q2_K"]
    ops["Q4_1"] = ops["Q4_0"]
    cost["rocm"] = cost["vulkan"] = cost["cuda"]
    return replace(base, efficiency=eff, layer_cost_s=cost, ops=ops, **scalars)  # type: ignore[arg-type]


def _start(base: Params = PARAMS) -> list[float]:
    out = []
    for group, key, lo, hi in FITTED:
        value = getattr(base, group)
        value = value[key] if key is not None else value
        out.append(min(max(float(value), lo), hi))
    return out


def fit(preps: list[Prepared]) -> Params:
    """Least squares on log(predicted / measured) over the GPU rows, every constant bounded to a physically
    plausible range (the CPU terms come from the CPU rows' own fit, docs/speed.md)."""
    from scipy.optimize import least_squares  # only for refitting

    gpu_rows = [p for p in preps if p.row.get("vendor") != "cpu"]

    def residuals(x: list[float]) -> list[float]:
        q = _params(list(x))
        return [math.log(retimed(p, q) / float(p.row["tg_tps"])) for p in gpu_rows]

    lo = [n[2] for n in FITTED]
    hi = [n[3] for n in FITTED]
    scale = [max(abs(v), 0.1 * (n[3] - n[2])) for v, n in zip(_start(), FITTED, strict=True)]
    out = least_squares(residuals, _start(), bounds=(lo, hi), x_scale=scale, loss="soft_l1", f_scale=0.1)
    return _params(list(out.x))


def with_range(p: Params, ratios: list[float]) -> Params:
    """The range shown: the 10th and 90th percentiles of measured / predicted (held-out predictions)."""
    q = statistics.quantiles(ratios, n=10)
    return replace(p, range_low=q[0], range_high=q[-1])


def held_out(preps: list[Prepared]) -> list[tuple[Prepared, float]]:
    """Leave one source out: fit without a publication's rows, predict them; (row, predicted tok/s)."""
    out = []
    for src in sorted({p.source for p in preps}):
        rest = [p for p in preps if p.source != src]
        q = fit(rest)
        out.extend((p, retimed(p, q)) for p in preps if p.source == src)
    return out


# ----- prompt processing (speed/prompt.py) -----


def prompt_tokens(row: dict[str, Any]) -> int:
    """The prompt a row's pp figure was measured on: pp512, or the README's 1024-token average."""
    return 1024 if "1024" in str(row.get("pp_test", "")) else 512


def prompt_predicted(prep: Prepared, p: Params) -> float:
    seconds = prompt_seconds_per_token(
        prep.spec, prep.est, prep.hw, [g.index for g in prep.hw.gpus], prompt_tokens(prep.row), p
    )
    if not seconds:
        raise SystemExit(f"{prep.row['id']}: no compute throughput known")
    return 1 / seconds


def fit_prompt(preps: list[Prepared], base: Params = PARAMS) -> Params:
    """Each backend's prompt efficiency: the geometric mean of measured / predicted at efficiency 1 over its rows
    (a backend without rows keeps the base value)."""
    unit = replace(base, prompt_efficiency={k: 1.0 for k in base.prompt_efficiency})
    eff = dict(base.prompt_efficiency)
    for backend in ("cuda", "metal"):
        logs = [
            math.log(float(x.row["pp_tps"]) / prompt_predicted(x, unit))
            for x in preps
            if x.row.get("pp_tps") and x.hw.gpus and x.hw.gpus[0].backend == backend
        ]
        if logs:
            eff[backend] = math.exp(statistics.fmean(logs))
    eff["rocm"] = eff["vulkan"] = eff["cuda"]
    return replace(base, prompt_efficiency=eff)


def prompt_report(preps: list[Prepared], p: Params, held_out: bool) -> tuple[float, float, float]:
    rows = [x for x in preps if x.row.get("pp_tps") and x.hw.gpus]
    if held_out:
        pairs = []
        for src in sorted({x.source for x in rows}):
            q = fit_prompt([x for x in rows if x.source != src], p)
            pairs += [(x, prompt_predicted(x, q)) for x in rows if x.source == src]
    else:
        pairs = [(x, prompt_predicted(x, p)) for x in rows]
    ratios = [float(x.row["pp_tps"]) / tps for x, tps in pairs]
    q = statistics.quantiles(ratios, n=10)
    low, high = (q[0], q[-1]) if held_out else (p.prompt_range_low, p.prompt_range_high)
    results = [Result(x.row | {"tg_tps": x.row["pp_tps"]}, tps, tps * low, tps * high) for x, tps in pairs]
    title = "prompt processing, " + ("held out" if held_out else "in sample")
    print(f"== {title}" + (f" (range from held-out residuals: x{low:.3f} - x{high:.3f})" if held_out else ""))
    for src in sorted({source_of(r.row) for r in results}):
        print(_line(f"  {src[:46]}", [r for r in results if source_of(r.row) == src]))
    print(_line("all", results))
    return summary(results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--fit", action="store_true", help="refit the constants (needs scipy) and report with them")
    ap.add_argument(
        "--held-out", action="store_true", help="also leave each source out of a refit and predict it (needs scipy)"
    )
    args = ap.parse_args()
    rows = load(args.files or list(DEFAULT_FILES))
    if not rows:
        print("no calibration rows found", file=sys.stderr)
        return 2
    preps = [prepare(r) for r in rows]
    p = fit(preps) if args.fit else PARAMS
    if args.fit:
        p = fit_prompt(preps, p)
        print("prompt_efficiency = " + ", ".join(f"{k} {v:.3g}" for k, v in p.prompt_efficiency.items()))
        for group, key, _, _ in FITTED:
            value = getattr(p, group)
            print(f"{group}[{key}] = {(value[key] if key is not None else value):.4g}")
    in_sample = report(
        [predict(x, p) for x in preps], "in sample: the constants " + ("refitted" if args.fit else "shipped")
    )
    prompt_report(preps, p, held_out=False)
    if not args.files:
        unseen_report()
    if not args.held_out:
        return 0 if in_sample[0] <= 0.10 and in_sample[1] >= 0.8 and in_sample[2] <= 1.5 else 1
    prompt_report(preps, p, held_out=True)
    pairs = held_out(preps)
    shown = with_range(p, [float(x.row["tg_tps"]) / tps for x, tps in pairs])
    print(f"range from held-out residuals: x{shown.range_low:.3f} - x{shown.range_high:.3f}")
    results = [Result(x.row, tps, tps * shown.range_low, tps * shown.range_high) for x, tps in pairs]
    med, inside, width = report(results, "held out: each source predicted by a fit without it")
    return 0 if med <= 0.10 and inside >= 0.8 and width <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
