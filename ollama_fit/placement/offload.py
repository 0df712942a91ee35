"""Where a model's layers go: one GPU, several GPUs, GPU and CPU, or the CPU alone, and whether that fits.

Follows Ollama and llama.cpp: a model that fits one GPU is loaded on one GPU. Otherwise, where llama-server
runs the model (Ollama since 0.30, serve-cmd), llama.cpp's own --fit decides (fit.py): a MoE model keeps its
attention and dense parts on the GPU(s) and its routed experts in RAM first, a layer may be split inside its
feed-forward. Older Ollama runners split by whole layers: across the GPUs, then what no GPU holds runs on the
CPU, the GPUs keeping the last layers and the output layer (llama.cpp's -ngl). On unified memory (a Mac,
GB10, Strix Halo) the GPU and the CPU share one pool: a model is planned within the GPU's share of it, never
as a GPU part plus a separate RAM part. Every candidate is checked with `estimate`, and the number of
offloaded layers is the largest that fits, so more memory never means fewer layers on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.errors import InvalidInput
from ollama_fit.hardware.model import Budget, DeviceBudget, Hardware
from ollama_fit.memory.estimate import (
    GPU_OVERHEAD,
    MemoryEstimate,
    Runtime,
    compute_bytes,
    estimate,
    layer_kv_bytes,
    layer_state_bytes,
    split_for_ngl,
)
from ollama_fit.model.spec import ModelSpec
from ollama_fit.placement.fit import FitDevice, FitResult, fit
from ollama_fit.speed import Speed, decode_speed

KIND_ORDER = {"gpu": 0, "multi-gpu": 1, "experts": 2, "partial": 3, "cpu": 4}
KIND_TEXT = {
    "gpu": "fully on one GPU",
    "multi-gpu": "split across GPUs",
    "experts": "on the GPU with its experts in RAM",
    "partial": "partly on the GPU, the rest on the CPU",
    "cpu": "on the CPU, from RAM",
}
ON_GPU = ("gpu", "multi-gpu")


@dataclass(frozen=True)
class Placement:
    """Where a load goes (kind, devices), its memory and its decode speed."""

    kind: str  # gpu, multi-gpu, partial, cpu
    memory: MemoryEstimate
    gpu_indices: tuple[int, ...]  # the real GPU index of each entry of memory.gpus
    speed: Speed | None
    fit: FitResult | None = None  # llama.cpp's --fit decided it (None: whole layers, -ngl)

    @property
    def on_gpu(self) -> bool:
        """Every layer on the GPU(s)."""
        return self.kind in ON_GPU

    @property
    def ngl(self) -> int:
        """llama.cpp's -ngl for this placement: -1 for everything, else offloaded layers + the output layer."""
        if self.fit is not None:
            return self.fit.ngl
        mem = self.memory
        if mem.full_offload:
            return -1
        return mem.gpu_layers + 1 if mem.gpus else 0

    @property
    def partial_layer(self) -> dict[str, Any] | None:
        return self.fit.partial_layer if self.fit else None

    def keeps(self, base: Placement) -> bool:
        """Nothing moved off the GPU(s) relative to `base`: the same kind, no fewer layers, no more experts
        in RAM, no new split layer."""
        mem, was = self.memory, base.memory
        return (
            self.kind == base.kind
            and mem.gpu_layers >= was.gpu_layers
            and len(mem.cpu_expert_layers) <= len(was.cpu_expert_layers)
            and (self.partial_layer is None or base.partial_layer is not None)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "gpu_indices": list(self.gpu_indices),
            "gpu_layers": self.ngl,
            "cpu_expert_layers": list(self.memory.cpu_expert_layers),
            "partial_layer": self.partial_layer,
            "decided_by": "llama.cpp --fit" if self.fit else "whole layers (-ngl)",
        }


@dataclass(frozen=True)
class Shortfall:
    """How far a load is from fitting: the device and the bytes it needs and has."""

    device: str
    need_bytes: int
    have_bytes: int

    @property
    def missing_bytes(self) -> int:
        return max(0, self.need_bytes - self.have_bytes)


def _index(g: DeviceBudget) -> int:
    if g.index is None:  # only the host budget has no index
        raise ValueError(f"{g.name} is not a GPU")
    return g.index


def shortfall(est: MemoryEstimate, gpus: Sequence[DeviceBudget], budget: Budget) -> Shortfall | None:
    """Where an estimate does not fit (`gpus`: the budgets of est.gpus, in order): the first GPU over its
    budget, else the RAM (on unified memory the one pool, which holds the GPU's part too); None when it fits."""
    for m, g in zip(est.gpus, gpus, strict=True):
        if m.total_bytes > g.usable_bytes:
            return Shortfall(f"GPU {g.index}", m.total_bytes, g.usable_bytes)
    need = est.host_required_bytes + (est.device_bytes if budget.unified_memory else 0)
    if need > budget.host.usable_bytes:
        return Shortfall(budget.host.name, need, budget.host.usable_bytes)
    return None


def _fits(est: MemoryEstimate, gpus: Sequence[DeviceBudget], budget: Budget) -> bool:
    return shortfall(est, gpus, budget) is None


def _layer_costs(spec: ModelSpec, rt: Runtime) -> list[int]:
    """What each repeating layer takes on a GPU: weights, KV cache and recurrent state."""
    return [
        spec.layer_bytes[i] + layer_kv_bytes(spec, i, rt) + layer_state_bytes(spec, i, rt)
        for i in range(spec.shape.n_layer)
    ]


def _distribute(
    spec: ModelSpec, rt: Runtime, gpus: Sequence[DeviceBudget], k: int, costs: Sequence[int]
) -> list[int] | None:
    """The last `k` layers over the GPUs in order, each filled to its budget (the output layer rides with
    the last layer); None when they do not all find room. `costs`: _layer_costs, computed once."""
    n = spec.shape.n_layer
    holders = len(gpus) if k == n else 1
    fixed = GPU_OVERHEAD[rt.backend] + rt.extra_overhead + compute_bytes(spec, rt, gpus_holding_layers=holders)
    counts = [0] * len(gpus)
    d, used = 0, 0
    for i in range(n - k, n):
        cost = costs[i] + (spec.output_bytes if i == n - 1 else 0)
        while d < len(gpus) and used + cost + fixed > gpus[d].usable_bytes:
            d, used = d + 1, 0
        if d == len(gpus):
            return None
        counts[d] += 1
        used += cost
    return counts


def _placement(
    spec: ModelSpec, rt: Runtime, budget: Budget, hw: Hardware, counts: Sequence[int], kind: str
) -> Placement | None:
    gpus = budget.gpus
    est = estimate(spec, rt, split=list(counts))
    holders = [g for g, c in zip(gpus, counts, strict=True) if c]
    if not _fits(est, holders, budget):
        return None
    indices = tuple(_index(g) for g in holders)
    return Placement(kind, est, indices, decode_speed(spec, est, hw, indices))


def _partial(spec: ModelSpec, rt: Runtime, budget: Budget, hw: Hardware, costs: Sequence[int]) -> Placement | None:
    """The most layers the GPUs can hold, the rest on the CPU. The GPUs' need grows with the number of
    offloaded layers and the host's shrinks, so the largest count that fits the GPUs (a binary search) is
    the one to check against the host. `costs`: _layer_costs, computed once per placement."""

    def gpu_split(k: int) -> list[int] | None:
        counts = _distribute(spec, rt, budget.gpus, k, costs)
        if counts is None:
            return None
        est = estimate(spec, rt, split=counts)
        holders = [g for g, c in zip(budget.gpus, counts, strict=True) if c]
        return counts if all(m.total_bytes <= g.usable_bytes for m, g in zip(est.gpus, holders, strict=True)) else None

    def largest(fits: Callable[[int], list[int] | None], hi: int) -> tuple[int, list[int] | None]:
        """The largest k below `hi` that `fits` (binary search: fitting is monotonic in k)."""
        lo, best = 0, None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            found = fits(mid)
            if found:
                lo, best = mid, found
            else:
                hi = mid
        return lo, best

    # the layer costs alone bound the answer cheaply; the full estimate then confirms it (usually at once)
    bound, _ = largest(lambda k: _distribute(spec, rt, budget.gpus, k, costs), spec.shape.n_layer)
    best = gpu_split(bound) if bound else None
    if bound and best is None:
        _, best = largest(gpu_split, bound)
    return _placement(spec, rt, budget, hw, best, "partial") if best else None


def all_memory(budget: Budget) -> int:
    """Every GPU's usable bytes and the host's together: more than any load can use (one pool counts twice), so
    weights beyond it cannot fit anywhere."""
    return sum(g.usable_bytes for g in budget.gpus) + budget.host.usable_bytes


def place(spec: ModelSpec, rt: Runtime, budget: Budget, hw: Hardware) -> Placement | Shortfall:
    """The best placement that fits (one GPU, several, GPU + CPU, CPU), or how far the model is off."""
    gpus = budget.gpus
    missing: Shortfall | None = None
    if gpus:
        # the runtime's GPU backend wins (inspect --backend); a CPU runtime takes the GPUs' own
        gpu_rt = rt if rt.backend != "cpu" else replace(rt, backend=gpus[0].backend)
        single = estimate(spec, gpu_rt)
        for g in sorted(gpus, key=lambda g: -g.usable_bytes):
            if _fits(single, [g], budget):
                return Placement("gpu", single, (_index(g),), decode_speed(spec, single, hw, (_index(g),)))
        missing = shortfall(single, [max(gpus, key=lambda g: g.usable_bytes)], budget)
        if budget.unified_memory and missing:
            return missing  # one pool: layers moved to the CPU would still take the same memory
        if missing and spec.weights_bytes > all_memory(budget):
            return missing  # the weights alone exceed every device together: no split can hold them
        if gpu_rt.runner == "llama-server":
            fitted = _fitted(spec, gpu_rt, budget, hw)
            if fitted:
                return fitted
            return _cpu(spec, rt, budget, hw, missing)
        costs = _layer_costs(spec, gpu_rt)
        if len(gpus) > 1:
            counts = _distribute(spec, gpu_rt, gpus, spec.shape.n_layer, costs)
            found = _placement(spec, gpu_rt, budget, hw, counts, "multi-gpu") if counts else None
            if found and len(found.gpu_indices) > 1:
                return found
        partial = _partial(spec, gpu_rt, budget, hw, costs)
        if partial:
            return partial
    return _cpu(spec, rt, budget, hw, missing)


def _cpu(
    spec: ModelSpec, rt: Runtime, budget: Budget, hw: Hardware, missing: Shortfall | None
) -> Placement | Shortfall:
    host = budget.host
    cpu = estimate(spec, replace(rt, backend="cpu"))
    if cpu.host_required_bytes <= host.usable_bytes:
        return Placement("cpu", cpu, (), decode_speed(spec, cpu, hw, ()))
    return missing or Shortfall(host.name, cpu.host_required_bytes, host.usable_bytes)


def fit_devices(rt: Runtime, gpus: Sequence[DeviceBudget]) -> list[FitDevice]:
    """The GPUs as llama.cpp's fit sees them: the free memory it reads already excludes the backend's own
    context (GPU_OVERHEAD, and what real loads here taught), the margin is the headroom (--fit-target)."""
    own = GPU_OVERHEAD[rt.backend] + rt.extra_overhead
    return [FitDevice(g.free_bytes - own, g.headroom_bytes) for g in gpus]


def _fitted(spec: ModelSpec, rt: Runtime, budget: Budget, hw: Hardware) -> Placement | None:
    """llama.cpp's --fit over the machine's GPUs (in index order); None when it leaves nothing on a GPU or
    its placement does not fit (the RAM, which the fit does not check)."""
    gpus = sorted(budget.gpus, key=lambda g: g.index or 0)
    result = fit(spec, rt, fit_devices(rt, gpus))
    est = result.estimate
    if not est.gpus:
        return None
    holders = [gpus[m.position or 0] for m in est.gpus]
    if not _fits(est, holders, budget):
        return None
    if est.full_offload:
        kind = "gpu" if len(est.gpus) == 1 else "multi-gpu"
    else:
        kind = "experts" if est.gpu_layers == est.n_layer else "partial"
    indices = tuple(_index(g) for g in holders)
    return Placement(kind, est, indices, decode_speed(spec, est, hw, indices), result)


def max_context(
    spec: ModelSpec,
    rt: Runtime,
    budget: Budget,
    hw: Hardware,
    worst_kind: str,
    ceiling: int,
    accept: Callable[[Placement], bool] = lambda p: True,
) -> Placement | None:
    """The largest context (a multiple of 256, up to `ceiling`) that fits no worse than `worst_kind` and
    that `accept` takes (the planner's speed target); None when not even 256 tokens do."""

    def ok(ctx: int) -> Placement | None:
        p = place(spec, replace(rt, ctx=ctx), budget, hw)
        good = isinstance(p, Placement) and KIND_ORDER[p.kind] <= KIND_ORDER[worst_kind] and accept(p)
        return p if good and isinstance(p, Placement) else None

    top = ok(ceiling)
    if top is not None:
        return top
    lo, hi = 0, max(1, ceiling // 256)  # ok(lo * 256) holds (or lo == 0), ok(hi * 256) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid * 256) is not None:
            lo = mid
        else:
            hi = mid
    return ok(lo * 256) if lo else None


def place_ngl(spec: ModelSpec, rt: Runtime, budget: Budget, ngl: int) -> Placement | Shortfall:
    """The placement llama.cpp makes with -ngl `ngl` (no speed figure): over several GPUs it splits the
    offloaded layers by free memory, as llama.cpp does without --tensor-split."""
    gpus = sorted(budget.gpus, key=lambda g: g.index or 0)
    if ngl > 0 and not gpus:
        raise InvalidInput("--gpu-layers needs a GPU", hint="simulate one with --gpu or --vram, or drop --backend cpu")
    split, output_gpu = split_for_ngl(spec.shape.n_layer, ngl, [g.free_bytes for g in gpus])
    if not any(split) and output_gpu is None:
        est = estimate(spec, replace(rt, backend="cpu"))
    else:
        est = estimate(spec, rt, split, output_gpu=output_gpu)
    holders = [g for d, g in enumerate(gpus) if split[d] or d == output_gpu]
    missing = shortfall(est, holders, budget)
    if missing:
        return missing
    kind = (
        "cpu" if not est.gpus else "partial" if not est.full_offload else "gpu" if len(est.gpus) == 1 else "multi-gpu"
    )
    return Placement(kind, est, tuple(_index(g) for g in holders), None)
