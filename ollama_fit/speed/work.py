"""What one token reads and computes on each device, from the spec's per-layer reads and the layer split.

llama.cpp offloads the last layers and the output layer (its -ngl); the input embedding is one row per
token and costs nothing. A MoE layer reads only the experts a token is routed to (ModelSpec.token_reads).
Where --fit keeps part of an offloaded layer in system memory (its routed experts, or the feed-forward of a
split layer: MemoryEstimate.moves), the CPU reads that part and the token crosses to the CPU and back.
"""

from __future__ import annotations

from collections.abc import Sequence

from ollama_fit.memory.estimate import FRACTION_MOVES, MemoryEstimate, Move
from ollama_fit.model.spec import ModelSpec
from ollama_fit.speed.model import SpeedDevice, Stage

Reads = dict[str, list[int]]  # ggml type -> [bytes, elements] read per token


def _add(into: Reads, kind: str, size: int, elements: int, sign: int = 1) -> None:
    entry = into.setdefault(kind, [0, 0])
    entry[0] += sign * size
    entry[1] += sign * elements


def _weights(spec: ModelSpec, layers: range, with_output: bool) -> Reads:
    reads = spec.token_reads
    chosen = [*layers, spec.shape.n_layer] if with_output else list(layers)
    by_type: Reads = {}
    for index in chosen:
        for kind, size, elements in reads[index]:
            _add(by_type, kind, size, elements)
    return by_type


def _moved_reads(spec: ModelSpec, moves: Sequence[Move]) -> Reads:
    """What a token reads of the moved parts: a routed expert tensor only for the experts it is sent to."""
    s = spec.shape
    routed = s.n_expert_used / s.n_expert if s.n_expert else 1.0
    by_layer = {m.layer: FRACTION_MOVES[m.fraction] for m in moves}
    out: Reads = {}
    for t in spec.tensors:
        pattern = by_layer.get(t.layer) if t.layer is not None else None
        if pattern is not None and pattern.search(t.name):
            share = routed if "_exps" in t.name else 1.0
            _add(out, t.type, int(t.nbytes * share), int(t.n_elements * share))
    return out


def _frozen(reads: Reads) -> tuple[tuple[str, int, int], ...]:
    return tuple((k, v[0], v[1]) for k, v in sorted(reads.items()) if v[0] > 0)


def stages(
    spec: ModelSpec,
    est: MemoryEstimate,
    gpu_devices: Sequence[SpeedDevice],
    cpu: SpeedDevice,
    fill_tokens: int,
) -> list[Stage]:
    """One stage per device a token passes through, in order: the CPU's layers first, then each GPU's."""
    n = spec.shape.n_layer
    fill = min(1.0, fill_tokens / max(1, est.kv_cells))
    offloaded = min(n, est.gpu_layers) if est.gpus else 0
    out: list[Stage] = []
    to_cpu = [m for m in est.moves if m.to is None]
    if offloaded < n or not est.gpus or to_cpu:
        cpu_layers = range(0, n - offloaded)
        reads = _weights(spec, cpu_layers, not est.gpus)
        for kind, (size, elements) in _moved_reads(spec, to_cpu).items():
            _add(reads, kind, size, elements)
        kv = int(est.host.kv_bytes * fill)
        out.append(Stage(cpu, len(cpu_layers) + len(to_cpu), _frozen(reads), kv, crossings=2 * len(to_cpu)))
    start = n - offloaded
    for i, (mem, dev) in enumerate(zip(est.gpus, gpu_devices, strict=True)):
        layers = range(start, min(n, start + mem.layers))
        start += mem.layers
        last = i == len(est.gpus) - 1
        reads = _weights(spec, layers, last)
        here = [m for m in est.moves if m.layer in layers and m.to is None]
        for kind, (size, elements) in _moved_reads(spec, here).items():
            _add(reads, kind, size, elements, sign=-1)
        out.append(Stage(dev, len(layers), _frozen(reads), int(mem.kv_bytes * fill)))
    return out
