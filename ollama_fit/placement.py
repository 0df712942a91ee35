"""Where a model's layers go: one GPU, several GPUs, GPU and RAM, or RAM only, and whether that fits.

Follows Ollama: a model that fits one GPU is loaded on one GPU; otherwise its layers are split across the
GPUs in order; what does not fit on any GPU runs on the CPU. Every candidate is checked with `estimate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.estimate import GPU_OVERHEAD, MemoryEstimate, Runtime, compute_bytes, estimate, layer_kv_bytes
from ollama_fit.hardware.model import Budget, DeviceBudget, Hardware
from ollama_fit.spec import ModelSpec
from ollama_fit.speed import DEFAULT_RAM_BANDWIDTH_GBS, Speed, decode_speed

KIND_ORDER = {"gpu": 0, "multi-gpu": 1, "partial": 2, "cpu": 3}
KIND_TEXT = {
    "gpu": "fully on one GPU",
    "multi-gpu": "split across GPUs",
    "partial": "partly on the GPU, the rest on the CPU",
    "cpu": "on the CPU, from RAM",
}


@dataclass(frozen=True)
class Placement:
    kind: str  # gpu, multi-gpu, partial, cpu
    memory: MemoryEstimate
    gpu_indices: tuple[int, ...]  # the real GPU index of each entry of memory.gpus
    speed: Speed | None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "gpu_indices": list(self.gpu_indices)}


@dataclass(frozen=True)
class Shortfall:
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


def _fits(est: MemoryEstimate, gpus: Sequence[DeviceBudget], host: DeviceBudget) -> bool:
    return all(m.total_bytes <= g.usable_bytes for m, g in zip(est.gpus, gpus, strict=True)) and (
        est.host_required_bytes <= host.usable_bytes
    )


def _greedy_split(spec: ModelSpec, rt: Runtime, gpus: Sequence[DeviceBudget], *, holders: int, full: bool) -> list[int]:
    """Layers per GPU, filling each in order; the output layer rides with the last layer. As llama.cpp's -ngl
    offloads the LAST layers, a partial split (not `full`) fills from the last layer and the last GPU back."""
    fixed = GPU_OVERHEAD[rt.backend] + rt.extra_overhead + compute_bytes(spec, rt, gpus_holding_layers=holders)
    counts = [0] * len(gpus)
    n = spec.shape.n_layer
    devices = list(range(len(gpus))) if full else list(range(len(gpus) - 1, -1, -1))
    k, used = 0, 0
    for i in range(n) if full else range(n - 1, -1, -1):
        cost = spec.layer_bytes[i] + layer_kv_bytes(spec, i, rt)
        if i == n - 1:
            cost += spec.output_bytes
        while k < len(devices) and used + cost + fixed > gpus[devices[k]].usable_bytes:
            k, used = k + 1, 0
        if k == len(devices):
            break
        counts[devices[k]] += 1
        used += cost
    return counts


def _speed(spec: ModelSpec, hw: Hardware, est: MemoryEstimate, indices: Sequence[int]) -> Speed | None:
    ratio = spec.layer_read_ratio
    by_index = {g.index: g for g in hw.gpus}
    parts: list[tuple[int, int, float | None]] = []
    start = 0
    for mem, index in zip(est.gpus, indices, strict=True):
        read = int(sum(spec.layer_bytes[start : start + mem.layers]) * ratio)
        start += mem.layers
        if est.full_offload and mem is est.gpus[-1]:
            read += spec.output_bytes
        parts.append((read, mem.kv_bytes, by_index[index].bandwidth_gbs))
    notes = []
    if est.host.layers or not est.gpus:
        read = int(sum(spec.layer_bytes[start:]) * ratio) + (0 if est.full_offload else spec.output_bytes)
        ram_bw = hw.cpu.bandwidth_gbs
        if ram_bw is None:
            ram_bw = DEFAULT_RAM_BANDWIDTH_GBS
            notes.append(f"RAM bandwidth assumed {DEFAULT_RAM_BANDWIDTH_GBS:g} GB/s")
        parts.append((read, est.host.kv_bytes, ram_bw))
    return decode_speed(parts, notes)


def place(spec: ModelSpec, rt: Runtime, budget: Budget, hw: Hardware) -> Placement | Shortfall:
    """The best placement that fits (one GPU, several, GPU + RAM, RAM), or how far the model is off."""
    gpus = budget.gpus
    host = budget.host
    best_shortfall: Shortfall | None = None
    if gpus:
        # the runtime's GPU backend wins (inspect --backend); a CPU runtime takes the GPUs' own
        gpu_rt = rt if rt.backend != "cpu" else replace(rt, backend=gpus[0].backend)
        single = estimate(spec, gpu_rt)
        for g in sorted(gpus, key=lambda g: -g.usable_bytes):
            if _fits(single, [g], host):
                return Placement("gpu", single, (_index(g),), _speed(spec, hw, single, (_index(g),)))
        biggest = max(gpus, key=lambda g: g.usable_bytes)
        best_shortfall = Shortfall(f"GPU {biggest.index}", single.device_bytes, biggest.usable_bytes)
        if single.device_bytes <= biggest.usable_bytes:  # the GPU fits, RAM does not
            best_shortfall = Shortfall("RAM", single.host_required_bytes, host.usable_bytes)
        if len(gpus) > 1:
            counts = _greedy_split(spec, gpu_rt, gpus, holders=len(gpus), full=True)
            found = _try_split(spec, gpu_rt, gpus, host, hw, counts, "multi-gpu")
            if found:
                return found
        counts = _greedy_split(spec, gpu_rt, gpus, holders=1, full=False)
        if 0 < sum(counts) < spec.shape.n_layer:
            found = _try_split(spec, gpu_rt, gpus, host, hw, counts, "partial")
            if found:
                return found
            split = estimate(spec, gpu_rt, split=counts)
            if split.host_required_bytes > host.usable_bytes:  # the GPUs take part; RAM cannot hold the rest
                where = f"RAM (with {sum(counts)} of {spec.shape.n_layer} layers on the GPU)"
                best_shortfall = Shortfall(where, split.host_required_bytes, host.usable_bytes)
    cpu = estimate(spec, replace(rt, backend="cpu"))
    if cpu.host_required_bytes <= host.usable_bytes:
        return Placement("cpu", cpu, (), _speed(spec, hw, cpu, ()))
    return best_shortfall or Shortfall("RAM", cpu.host_required_bytes, host.usable_bytes)


def _try_split(
    spec: ModelSpec,
    rt: Runtime,
    gpus: Sequence[DeviceBudget],
    host: DeviceBudget,
    hw: Hardware,
    counts: list[int],
    kind: str,
) -> Placement | None:
    if kind == "multi-gpu" and (sum(counts) < spec.shape.n_layer or sum(1 for c in counts if c) < 2):
        return None
    est = estimate(spec, rt, split=counts)
    holders = [g for g, c in zip(gpus, counts, strict=True) if c]
    if not _fits(est, holders, host):
        return None
    indices = tuple(_index(g) for g in holders)
    return Placement(kind, est, indices, _speed(spec, hw, est, indices))


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
    that `accept` takes (the planner's speed floor); None when not even 256 tokens do."""

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
