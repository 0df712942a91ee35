"""`ollama-fit pull [REF]`: download the GGUF file(s), verified and resumable, and register them with Ollama."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from ollama_fit import config
from ollama_fit.cli.app import cli, columns, emit_json, warn
from ollama_fit.cli.options import (
    connections_option,
    hardware_options,
    hub_for_plans,
    learned,
    needs_ctx,
    plan_options,
    register_options,
    report_for,
    target_options,
)
from ollama_fit.cli.progress import ProgressView
from ollama_fit.cli.serve_cmd import serve_from_files


@cli.command(short_help="Download (verified, resumable) and register with Ollama.")
@target_options
@hardware_options
@plan_options
@register_options
@click.option("--no-register", is_flag=True, help="Only download (into the Hugging Face cache).")
@connections_option
@click.option("--offline", is_flag=True, help="Plan from the catalog only (downloads still need the Hub).")
@click.option("--json", "as_json", is_flag=True, help="JSON result on stdout, JSON progress events on stderr.")
def pull(
    ref: str | None,
    quant: str | None,
    hardware: Any,
    request: Any,
    name: str | None,
    force: bool,
    keep_gguf: bool,
    runner: str,
    no_register: bool,
    connections: int,
    offline: bool,
    as_json: bool,
) -> None:
    """Download a model's GGUF file(s), verified and resumable, and register it with Ollama.

    REF is a catalog id (qwen3:8b), hf.co/ORG/REPO[:QUANT], or nothing for the plan's pick. Files land in
    the Hugging Face cache (HF_HOME) and resume where they stopped. Ollama is checked before the first byte;
    once it has its own copy, the download is removed (--keep-gguf keeps it).

    \b
    Examples:
      ollama-fit pull
      ollama-fit pull qwen3:8b --name my-qwen
      ollama-fit pull hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q6_K
      ollama-fit pull --target llama.cpp
    """
    from ollama_fit.cli import render
    from ollama_fit.hub.fetch import Fetcher
    from ollama_fit.hub.repos import Hub
    from ollama_fit.ollama.client import Ollama
    from ollama_fit.provision.auto import for_ollama
    from ollama_fit.provision.pull import RegisterOptions, lister, picker, resolve
    from ollama_fit.provision.pull import pull as run_pull
    from ollama_fit.runtime.ollama import LLAMA_SERVER_SINCE, separate_projector

    needs_ctx(request, ref, quant, "pull")
    if runner == "llama.cpp":  # llama-server itself runs it, not Ollama
        request = replace(request, ollama=None)
    hub = Hub.from_env()
    register = runner == "ollama" and not no_register
    if register:
        request, server_warnings = for_ollama(request, Ollama.from_env())
        for warning in server_warnings:
            warn(warning)
    pick = picker(
        lambda: report_for(hardware), request, hub_for_plans(offline), lambda req, rep: learned(req, rep, hardware)
    )
    files = lister(hub, config.hf_cache_dir()) if runner == "llama.cpp" else None  # offline: the cache
    vision = register and request.vision and request.ollama is not None and separate_projector(request.ollama)
    target = resolve(ref or request.model, quant, hub, pick, files, vision)
    view = ProgressView(as_json)
    fetcher = Fetcher(hub, config.hf_cache_dir(), config.state_dir(), on_progress=view, connections=connections)
    # drafting (draft_num_predict) is llama-server's, so Ollama 0.30 and newer; a file without a prediction
    # block is created with it too and Ollama drafts nothing (llm/llama_server.go `hasMTPDraft`)
    drafting = request.draft if request.ollama and request.ollama >= LLAMA_SERVER_SINCE else 0
    if request.draft and not drafting and register:
        warn(f"--draft {request.draft}: Ollama before 0.30 does not draft; registered without it")
    options = RegisterOptions(name, force, keep_gguf, target.ctx or request.ctx or 8192, drafting)
    result = run_pull(target, fetcher, Ollama.from_env() if register else None, options)
    serve = None
    if runner == "llama.cpp" and result.fetched:
        serve = serve_from_files(result, request, report_for(hardware))
    if as_json:
        emit_json(result.to_dict() | ({"llama_server": serve.to_dict()} if serve else {}))
        return
    for warning in result.registration.warnings if result.registration else ():
        warn(warning)
    click.echo(render.render_pull(result, columns()))
    if serve and serve.argv:
        click.echo("Run it with llama.cpp:\n  " + serve.shell(serve.argv))
