"""The time one generated token takes, device by device: a few physical terms, each fitted to measurements.

For every device a token passes through (a layer split runs the devices one after another, so their times add):

    t = layers x per-layer cost                 kernel launches and synchronisation: what dominates a small
                                                model on a fast device
      + bytes read / effective bandwidth        the weights of the layers there (only the routed experts of a
                                                MoE layer) and the part of the KV cache a token attends to
      + elements x ops per element / compute    dequantization and dot products: heavy for low-bit K-quants,
                                                light for F16 and Q8_0

A GPU overlaps the memory and the arithmetic only partly within its many short kernels, so the two add up; a
CPU streams and computes on the same cores, so the slower of the two sets the pace there. The constants live
in `params.py` with where each came from; docs/speed.md explains the fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ollama_fit.speed.params import PARAMS, Params


@dataclass(frozen=True)
class SpeedDevice:
    """What the speed model needs of one device."""

    name: str
    kind: str  # cuda, rocm, metal, cpu
    bandwidth_gbs: float | None  # peak memory bandwidth; None when unknown
    efficiency: float  # the share of it that large weight reads reach
    compute_tops: float  # arithmetic throughput for decoding, in 1e12 ops/s (a CPU: its cores together)
    layer_cost_s: float  # fixed time per layer per token
    assumptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """The part of one token's pass that runs on one device."""

    device: SpeedDevice
    layers: int
    weights: tuple[tuple[str, int, int], ...]  # (ggml type, bytes read, elements read) per token
    kv_read_bytes: int  # the KV cache a token attends to on this device
    crossings: int = 0  # hand-offs to this device and back inside a layer (experts kept in RAM by --fit)


def ops_per_element(ggml_type: str, p: Params = PARAMS, kind: str = "cuda") -> float:
    if kind == "cpu" and ggml_type in p.cpu_ops:
        return p.cpu_ops[ggml_type]
    return p.ops.get(ggml_type, p.ops_default)


def stage_seconds(stage: Stage, p: Params = PARAMS) -> float | None:
    """Seconds per token on this stage; None when the device's bandwidth is unknown."""
    dev = stage.device
    if not dev.bandwidth_gbs:
        return None
    read = sum(b for _, b, _ in stage.weights) + stage.kv_read_bytes
    memory = read / (dev.bandwidth_gbs * 1e9 * dev.efficiency)
    ops = sum(n * ops_per_element(t, p, dev.kind) for t, _, n in stage.weights)
    compute = ops / (dev.compute_tops * 1e12) if dev.compute_tops > 0 else 0.0
    fixed = stage.layers * dev.layer_cost_s
    if dev.kind == "cpu":
        return fixed + max(memory, compute)
    return fixed + memory + compute


def token_seconds(stages: Sequence[Stage], p: Params = PARAMS) -> tuple[float, bool] | None:
    """Seconds per token over all stages, and whether a stage of unknown bandwidth was left out (then the
    figure is an upper bound on the speed); None when no stage's time is known."""
    times = [stage_seconds(s, p) for s in stages]
    known = [t for t in times if t is not None]
    if not known:
        return None
    boundaries = max(0, len(stages) - 1)  # activations handed from one device to the next
    inner = sum(s.crossings for s in stages) * p.expert_handoff_s
    return sum(known) + boundaries * p.handoff_s + inner, len(known) < len(times)
