"""What one token reads and computes on each device, from the tensor table and the layer split.

llama.cpp offloads the last layers and the output layer (its -ngl); the input embedding is one row per
token and costs nothing. A MoE layer reads only the experts a token is routed to.
"""

from __future__ import annotations

from collections.abc import Sequence

from ollama_fit.estimate import MemoryEstimate
from ollama_fit.spec import ModelSpec, Tensor
from ollama_fit.speed.model import SpeedDevice, Stage


def _routed_share(spec: ModelSpec, t: Tensor) -> float:
    s = spec.shape
    if s.n_expert and "_exps" in t.name:
        return s.n_expert_used / s.n_expert
    return 1.0


def _weights(spec: ModelSpec, layers: range, with_output: bool) -> tuple[tuple[str, int, int], ...]:
    by_type: dict[str, list[float]] = {}
    for t in spec.tensors:
        on = (t.layer is not None and t.layer in layers) or (with_output and t.layer is None and _is_output(t))
        if not on:
            continue
        share = _routed_share(spec, t)
        entry = by_type.setdefault(t.type, [0.0, 0.0])
        entry[0] += t.nbytes * share
        entry[1] += t.n_elements * share
    if with_output and not any(t.name == "output.weight" for t in spec.tensors):
        emb = next((t for t in spec.tensors if t.name == "token_embd.weight"), None)
        if emb is not None:  # tied embeddings: the output layer reads the whole embedding matrix
            entry = by_type.setdefault(emb.type, [0.0, 0.0])
            entry[0] += emb.nbytes
            entry[1] += emb.n_elements
    return tuple((k, int(v[0]), int(v[1])) for k, v in sorted(by_type.items()))


def _is_output(t: Tensor) -> bool:
    return t.name.startswith("output")


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
