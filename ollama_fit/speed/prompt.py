"""Prompt processing: how fast a placement reads a prompt, so how long the first token takes.

A prompt is processed in micro-batches of hundreds of tokens, so, unlike decoding, it is bound by arithmetic:
each weight is used by every token of the batch. Per token of the prompt, on each device:

    2 x weights' elements there + attention over the prompt so far    floating-point operations
    / (FP32 TFLOPS x the backend's prompt efficiency)                 fitted per backend (tensor cores and int8
                                                                      kernels put CUDA above its FP32 rate)

and weights held in RAM beside a GPU (layers on the CPU, experts kept in RAM by --fit) are copied to the GPU
for every micro-batch (llama.cpp's op offload for batches of 32 and more), at the PCIe rate. The constants are
fitted in scripts/calibrate_speed.py on the published pp512 / 1024-token prompt rows (docs/speed.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from ollama_fit.hardware.model import Hardware
from ollama_fit.memory.estimate import OP_OFFLOAD_BACKENDS, MemoryEstimate
from ollama_fit.model.spec import ModelSpec
from ollama_fit.speed.devices import cpu_device, gpu_device
from ollama_fit.speed.params import PARAMS, Params

PROMPT_TOKENS = 4096  # the prompt a first-token time is quoted for


def _attention_flops(spec: ModelSpec, prompt: int) -> float:
    """Per prompt token: Q.K and P.V over the tokens before it (on average half the prompt), every layer."""
    s = spec.shape
    layers_with_kv = sum(1 for i in range(s.n_layer) if s.has_kv(i)) if s.modelled else s.n_layer
    return 4.0 * layers_with_kv * (prompt / 2) * s.n_head * s.key_length


def prompt_seconds_per_token(
    spec: ModelSpec,
    est: MemoryEstimate,
    hw: Hardware,
    gpu_indices: Sequence[int],
    prompt: int = PROMPT_TOKENS,
    p: Params = PARAMS,
) -> float | None:
    """Seconds per prompt token for this placement; None when a device's throughput is unknown."""
    flops = 2.0 * spec.active_params + _attention_flops(spec, prompt)  # a MoE token runs its routed experts
    cpu = cpu_device(hw, p)
    if not est.gpus:
        if cpu.compute_tops <= 0:
            return None
        return flops / (cpu.compute_tops * 1e12 * p.prompt_efficiency["cpu"])
    by_index = {g.index: g for g in hw.gpus}
    devices = [gpu_device(by_index[i], hw, p) for i in gpu_indices]
    rate = sum(d.compute_tops for d in devices) / len(devices)  # a layer split runs one device after another
    if rate <= 0:
        return None
    kind = devices[0].kind
    eff = p.prompt_efficiency.get(kind, p.prompt_efficiency["cuda"])
    host = max(0, est.host.weights_bytes - spec.input_bytes)  # weights in RAM beside the GPU
    if kind in OP_OFFLOAD_BACKENDS:  # the GPU runs every batch, copying RAM's weights over PCIe for each
        return flops / (rate * 1e12 * eff) + host / (p.pcie_gbs * 1e9) / p.prompt_batch
    on_gpu = sum(g.weights_bytes for g in est.gpus) / max(1, est.weights_bytes)
    return flops * on_gpu / (rate * 1e12 * eff) + flops * (1 - on_gpu) / (
        cpu.compute_tops * 1e12 * p.prompt_efficiency["cpu"]
    )
