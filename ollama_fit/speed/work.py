"""What one token reads and computes on each device, from the spec's per-layer reads and the layer split.

llama.cpp offloads the last layers and the output layer (its -ngl); the input embedding is one row per
token and costs nothing. A MoE layer reads only the experts a token is routed to (ModelSpec.token_reads).
"""

from __future__ import annotations

from collections.abc import Sequence

from ollama_fit.memory.estimate import MemoryEstimate
from ollama_fit.model.spec import ModelSpec
from ollama_fit.speed.model import SpeedDevice, Stage


def _weights(spec: ModelSpec, layers: range, with_output: bool) -> tuple[tuple[str, int, int], ...]:
    reads = spec.token_reads
    chosen = [*layers, spec.shape.n_layer] if with_output else list(layers)
    by_type: dict[str, list[int]] = {}
    for index in chosen:
        for kind, size, elements in reads[index]:
            entry = by_type.setdefault(kind, [0, 0])
            entry[0] += size
            entry[1] += elements
    return tuple((k, v[0], v[1]) for k, v in sorted(by_type.items()))


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
    if offloaded < n or not est.gpus:
        cpu_layers = range(0, n - offloaded)
        out.append(Stage(cpu, len(cpu_layers), _weights(spec, cpu_layers, not est.gpus), int(est.host.kv_bytes * fill)))
    start = n - offloaded
    for i, (mem, dev) in enumerate(zip(est.gpus, gpu_devices, strict=True)):
        layers = range(start, min(n, start + mem.layers))
        start += mem.layers
        last = i == len(est.gpus) - 1
        out.append(Stage(dev, len(layers), _weights(spec, layers, last), int(mem.kv_bytes * fill)))
    return out
