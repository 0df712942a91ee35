"""`ollama-fit inspect REF`: a GGUF header (local or on the Hub) and what each quant needs here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ollama_fit.cli.app import cli, columns, emit_json, paint_out
from ollama_fit.cli.options import (
    draft_option,
    hardware_options,
    json_option,
    report_for,
)


@cli.command("inspect", short_help="Read a GGUF header; what each quant needs here.")
@click.argument("ref")
@hardware_options
@click.option("--ctx", default="8192", show_default=True, metavar="TOKENS", help="Context length per request.")
@click.option("--kv-type", default="f16", show_default=True, type=click.Choice(["f16", "q8_0", "q4_0"]))
@click.option("--flash-attn", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]))
@click.option(
    "--ubatch", type=int, help="Micro-batch (llama.cpp -ub; Ollama's num_batch). Default: the runner's own choice."
)
@click.option("--parallel", default=1, show_default=True, type=int, help="Requests served at once.")
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cuda", "rocm", "metal", "rpc", "cpu"]),
    help="Where offloaded layers run. rpc: a llama.cpp rpc-server of --vram SIZE (a remote CPU as the device: "
    "no CUDA context, CPU compute buffers).",
)
@click.option("--ollama-version", metavar="VERSION", help="Plan for this Ollama (default: the newest modelled).")
@draft_option
@click.option(
    "--draft-file",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="DRAFT.gguf",
    help="Plan the model as created with this draft file (Modelfile DRAFT): Ollama passes it to llama-server "
    "(--spec-draft-model) and drafts --draft tokens a step (4, Ollama's default with a draft file).",
)
@click.option(
    "--gpu-layers",
    type=int,
    metavar="N",
    help="Show the footprint of llama.cpp's -ngl N (the last N-1 layers and the output layer on the GPU) "
    "instead of the planned placement.",
)
@json_option
def inspect_cmd(
    ref: str,
    hardware: Any,
    ctx: str,
    kv_type: str,
    flash_attn: str,
    ubatch: int | None,
    parallel: int,
    backend: str,
    ollama_version: str | None,
    draft: int,
    draft_file: Path | None,
    gpu_layers: int | None,
    as_json: bool,
) -> None:
    """Read a GGUF header (local file or Hugging Face) and show what each quant needs here.

    REF is a local .gguf file, hf.co/ORG/REPO (every quant) or hf.co/ORG/REPO:QUANT. Only the header bytes
    are read, never the weights.

    \b
    Examples:
      ollama-fit inspect ./Qwen3-8B-Q4_K_M.gguf
      ollama-fit inspect hf.co/unsloth/Qwen3-8B-GGUF --gpu "RTX 4060 Laptop"
      ollama-fit inspect hf.co/bartowski/google_gemma-3-12b-it-GGUF:Q4_K_M --ctx 32768 --json
      ollama-fit inspect ./Llama-3.1-8B-Q4_K_M.gguf --gpu "RTX 4060" --gpu-layers 24
      ollama-fit inspect ./gemma-3-270m-it-Q4_K_M.gguf --backend cpu --ollama-version 0.24.0
      ollama-fit inspect ./Qwen3-30B-A3B-Q4_K_M.gguf --backend rpc --vram 6GiB --ram 32GiB
    """
    from ollama_fit.cli import render
    from ollama_fit.plan.inspect import inspect_ref, inspect_runtime
    from ollama_fit.runtime.ollama import DEFAULT_DRAFT_TOKENS, parse_version

    report = report_for(hardware)
    ollama = parse_version(ollama_version) if ollama_version else None
    given = click.get_current_context().get_parameter_source("draft") == click.core.ParameterSource.COMMANDLINE
    if draft_file is not None and not given:
        draft = DEFAULT_DRAFT_TOKENS  # what Ollama drafts for a model with a draft file
    rt = inspect_runtime(report, ctx, kv_type, flash_attn, ubatch, parallel, backend, ollama, draft, draft_file)
    result = inspect_ref(ref, rt, report, gpu_layers)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_inspection(result, columns(), paint_out))
