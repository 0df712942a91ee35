"""The `llama-server` command that runs a plan exactly: context, layers on the GPU, flash attention, KV type.

The layer flags follow llama.cpp's own placement (src/llama-model.cpp, load_tensors): -ngl N offloads the
last N of the n_layer + 1 layers, the output layer counting as the last one, and --tensor-split gives each
GPU its share of those N in order. A plan's split (repeating layers per GPU, the last ones on the GPUs, the
output layer with the last GPU) is therefore -ngl sum(split) + 1, with split points placed half a layer
inside each boundary so that llama.cpp's rounding gives every GPU exactly its planned layers.

A placement llama.cpp's --fit decided (placement/fit.py) gets no -ngl: llama-server makes the same decision
itself, with the margin given as --fit-target where it is not llama.cpp's default. The same placement pinned
(-ngl and -ot overrides, for a build without --fit or to freeze it) is `pinned_args`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_fit.memory.estimate import Runtime
from ollama_fit.placement.offload import Placement

DEFAULT_UBATCH = 512  # llama-server's -ub default
DEFAULT_FIT_TARGET = 1024 * 1024 * 1024  # llama-server's --fit-target default (common/common.h)
# ggml's device names, for an override that sends a split layer's part to the next GPU
DEVICE_PREFIX = {"cuda": "CUDA", "rocm": "ROCm"}


@dataclass(frozen=True)
class ServeCommand:
    """The llama-server command line for a plan, and the flags it pins."""

    argv: tuple[str, ...] | None  # with the local model file (first shard); None when it is not downloaded
    hf_argv: tuple[str, ...] | None  # the same with -hf ORG/REPO:QUANT (llama-server downloads it itself)
    pinned: tuple[str, ...] = ()  # where --fit placed it: the -ngl / -ot flags that pin that placement

    def to_dict(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv) if self.argv else None,
            "hf_argv": list(self.hf_argv) if self.hf_argv else None,
            "pinned_flags": list(self.pinned) or None,
        }

    @staticmethod
    def shell(argv: tuple[str, ...]) -> str:
        return shlex.join(argv)


def tensor_split(layers: Sequence[int]) -> list[int]:
    """--tensor-split weights that make llama.cpp put exactly `layers[d]` repeating layers on GPU d (every
    entry at least 1) and the output layer on the last. With N = sum + 1 offloaded layers, llama.cpp sends
    offloaded layer k to the first GPU whose cumulative share exceeds k / N; boundaries at (a - 1/2) / N,
    a = the layers before the next GPU, are half a layer from every k / N, so float rounding cannot move one."""
    if len(layers) == 1:
        return [1]
    weights = [2 * n for n in layers]
    weights[0] -= 1
    weights[-1] += 3
    return weights


def gpu_args(placement: Placement, gpu_count: int = 1, fit_target: int = DEFAULT_FIT_TARGET) -> list[str]:
    """-ngl and, where needed, how the layers spread over the machine's `gpu_count` GPUs; for a placement of
    llama.cpp's fit, only the margin (and the GPU, when one of several)."""
    mem = placement.memory
    if placement.fit is not None:
        args = [] if fit_target == DEFAULT_FIT_TARGET else ["--fit-target", str(fit_target // (1024 * 1024))]
        if len(mem.gpus) == 1 and gpu_count > 1:  # one GPU of several: keep llama.cpp off the others
            args += ["-sm", "none", "-mg", str(placement.gpu_indices[0])]
        return args
    if not mem.gpus:
        return ["-ngl", "0"]
    layers = [g.layers for g in mem.gpus]
    args = ["-ngl", str(min(sum(layers) + 1, mem.n_layer + 1))]  # +1: the output layer
    indices = placement.gpu_indices
    if len(mem.gpus) == 1:
        if gpu_count > 1 or indices[0] != 0:  # one GPU of several: keep llama.cpp off the others
            args += ["-sm", "none", "-mg", str(indices[0])]
        return args
    weights = [0] * (max(indices) + 1)
    for index, weight in zip(indices, tensor_split(layers), strict=True):
        weights[index] = weight
    return [*args, "--tensor-split", ",".join(str(w) for w in weights)]


def pinned_args(placement: Placement, backend: str = "cuda") -> list[str]:
    """The fit's placement as explicit flags: -ngl N, and an -ot override per group of moved tensors (the
    routed experts of several layers in one pattern; a split layer's feed-forward part on its own)."""
    fitted = placement.fit
    if fitted is None:
        return []
    args = ["-ngl", str(placement.ngl)]
    experts = placement.memory.cpu_expert_layers
    if experts:
        layers = "|".join(str(i) for i in experts)
        args += ["-ot", f"blk\\.({layers})\\.ffn_(up|down|gate_up|gate)_(ch|)exps=CPU"]
    for m in placement.memory.moves:
        if m.fraction == "moe":
            continue
        groups = {"attn": "gate|up|gate_up|down", "up": "gate|gate_up|down", "gate": "down"}[m.fraction]
        where = "CPU" if m.to is None else f"{DEVICE_PREFIX.get(backend, 'CUDA')}{placement.gpu_indices[m.to]}"
        args += ["-ot", f"blk\\.{m.layer}\\.ffn_({groups}).*={where}"]
    return args


def serve_args(
    rt: Runtime,
    placement: Placement,
    host: str = "127.0.0.1",
    port: int = 8080,
    gpu_count: int = 1,
    fit_target: int = DEFAULT_FIT_TARGET,
) -> list[str]:
    """Everything after the model: llama-server's -c is shared by its -np slots, so it gets ctx x parallel."""
    args = ["-c", str(rt.ctx * rt.parallel), "-np", str(rt.parallel), *gpu_args(placement, gpu_count, fit_target)]
    args += ["-fa", "on" if rt.flash_attn else "off"]
    if rt.ubatch != DEFAULT_UBATCH:
        args += ["-ub", str(rt.ubatch)]
    if rt.kv_type != "f16":
        args += ["--cache-type-k", rt.kv_type, "--cache-type-v", rt.kv_type]
    args += ["--host", host, "--port", str(port)]
    return args


def serve_command(
    repo: str | None,
    quant: str,
    model_file: Path | None,
    rt: Runtime,
    placement: Placement,
    host: str = "127.0.0.1",
    port: int = 8080,
    gpu_count: int = 1,
    fit_target: int = DEFAULT_FIT_TARGET,
) -> ServeCommand:
    """`repo` None: a local file that came from no Hub repository (no -hf form). `fit_target`: the margin
    kept per GPU (the plan's --headroom)."""
    rest = serve_args(rt, placement, host, port, gpu_count, fit_target)
    local = ("llama-server", "-m", str(model_file), *rest) if model_file else None
    remote = ("llama-server", "-hf", f"{repo}:{quant}", *rest) if repo else None
    return ServeCommand(local, remote, tuple(pinned_args(placement, rt.backend)))
