"""The `llama-server` command that runs a plan exactly: context, layers on the GPU, flash attention, KV type."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_fit.estimate import Runtime
from ollama_fit.placement import Placement


@dataclass(frozen=True)
class ServeCommand:
    argv: tuple[str, ...] | None  # with the local model file (first shard); None when it is not downloaded
    hf_argv: tuple[str, ...]  # the same with -hf ORG/REPO:QUANT (llama-server downloads it itself)

    def to_dict(self) -> dict[str, Any]:
        return {"argv": list(self.argv) if self.argv else None, "hf_argv": list(self.hf_argv)}

    @staticmethod
    def shell(argv: tuple[str, ...]) -> str:
        return shlex.join(argv)


def serve_args(rt: Runtime, placement: Placement, host: str = "127.0.0.1", port: int = 8080) -> list[str]:
    """Everything after the model: llama-server's -c is shared by its -np slots, so it gets ctx x parallel."""
    mem = placement.memory
    args = ["-c", str(rt.ctx * rt.parallel), "-np", str(rt.parallel)]
    if mem.gpus:
        layers = mem.n_layer + 1 if mem.full_offload else mem.gpu_layers  # +1: the output layer
        args += ["-ngl", str(layers)]
        if len(mem.gpus) > 1:
            args += ["--tensor-split", ",".join(str(g.layers) for g in mem.gpus)]
    else:
        args += ["-ngl", "0"]
    args += ["-fa", "on" if rt.flash_attn else "off"]
    if rt.kv_type != "f16":
        args += ["--cache-type-k", rt.kv_type, "--cache-type-v", rt.kv_type]
    args += ["--host", host, "--port", str(port)]
    return args


def serve_command(
    repo: str,
    quant: str,
    model_file: Path | None,
    rt: Runtime,
    placement: Placement,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> ServeCommand:
    rest = serve_args(rt, placement, host, port)
    local = ("llama-server", "-m", str(model_file), *rest) if model_file else None
    return ServeCommand(local, ("llama-server", "-hf", f"{repo}:{quant}", *rest))
