"""`ollama-fit serve-cmd [REF]`: the llama-server command that runs the plan exactly as planned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ollama_fit import config
from ollama_fit.cli.app import cli, emit_json
from ollama_fit.cli.options import (
    hardware_options,
    hub_for_plans,
    json_option,
    needs_ctx,
    plan_options,
    report_for,
    target_options,
)


@cli.command("serve-cmd", short_help="The llama-server command for the plan.")
@target_options
@hardware_options
@plan_options
@click.option("--host", "bind", default="127.0.0.1", show_default=True, help="llama-server --host.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="llama-server --port.")
@click.option("--offline", is_flag=True, help="Plan from the catalog only.")
@json_option
def serve_cmd(
    ref: str | None, quant: str | None, hardware: Any, request: Any, bind: str, port: int, offline: bool, as_json: bool
) -> None:
    """Print the llama-server command that runs the plan (or REF) exactly as planned.

    REF is a catalog id, hf.co/ORG/REPO[:QUANT] or a local .gguf file (the first shard of a split file).
    With HF_HUB_OFFLINE=1 a Hub model is taken from the Hugging Face cache.

    \b
    Examples:
      ollama-fit serve-cmd
      ollama-fit serve-cmd qwen3:8b --ctx 32k --kv-type q8_0
      ollama-fit serve-cmd hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M --json
      ollama-fit serve-cmd ./Qwen3-8B-Q4_K_M.gguf
    """
    from ollama_fit.plan.inspect import is_local_ref, local_shards, local_spec

    needs_ctx(request, ref, quant, "serve-cmd")
    request = replace(request, ollama=None)  # llama-server itself runs it, not Ollama
    report = report_for(hardware)
    if ref is not None and is_local_ref(ref):
        paths = local_shards(Path(ref))
        spec = local_spec(paths)
        command = _serve_plan(None, spec.quant, spec, paths[0], None, request, report, bind, port)
    else:
        command = _serve_hub(ref, quant, request, report, offline, bind, port)
    if as_json:
        emit_json(command.to_dict())
        return
    if command.argv:
        click.echo(command.shell(command.argv))
    elif command.hf_argv:
        click.echo(
            "# not downloaded yet: `ollama-fit pull REF --target llama.cpp`, or let llama-server fetch it:", err=True
        )
    if command.hf_argv:
        click.echo(command.shell(command.hf_argv))
    if command.pinned:
        pinned = command.shell(command.pinned)
        click.echo(f"# llama.cpp's --fit places it; to pin that placement add: {pinned}", err=True)


def _serve_hub(
    ref: str | None, quant: str | None, request: Any, report: Any, offline: bool, bind: str, port: int
) -> Any:
    """serve-cmd for a catalog or Hub model: the cached files when there are (offline too), else the headers."""
    from ollama_fit.hub.fetch import Fetcher
    from ollama_fit.hub.repos import Hub
    from ollama_fit.plan.inspect import hub_spec, local_spec
    from ollama_fit.provision.pull import lister, picker, resolve

    hub = Hub.from_env()
    pick = picker(lambda: report, request, hub_for_plans(offline))
    target = resolve(ref or request.model, quant, hub, pick, lister(hub, config.hf_cache_dir()))
    cache = Fetcher(hub, config.hf_cache_dir())
    local = [cache.cached_path(target.repo, f) for f in target.quant.files]
    paths = [p for p in local if p is not None]
    spec = local_spec(paths) if len(paths) == len(local) else hub_spec(hub, target.repo, target.quant)[0]
    first = paths[0] if len(paths) == len(local) else None
    return _serve_plan(target.repo, target.quant.label, spec, first, target.ctx, request, report, bind, port)


def _serve_plan(
    repo: str | None,
    label: str,
    spec: Any,
    first: Path | None,
    ctx: int | None,
    request: Any,
    report: Any,
    bind: str = "127.0.0.1",
    port: int = 8080,
) -> Any:
    """Place the model for llama-server (its buffers: one output row per slot) and print that placement's flags.
    No context asked for (--ctx max): the largest that fits, up to the model's own."""
    from dataclasses import replace

    from ollama_fit.errors import NothingFits
    from ollama_fit.placement.offload import Placement, max_context, place
    from ollama_fit.plan.planner import runtime
    from ollama_fit.runtime.llama_server import DEFAULT_FIT_TARGET, serve_command

    wanted = ctx or request.ctx
    rt = replace(runtime(request, report, wanted or 8192), runner="llama-server")
    placement: Placement | Any
    if wanted:
        placement = place(spec, rt, report.budget, report.hardware)
    else:
        placement = max_context(spec, rt, report.budget, report.hardware, "cpu", spec.shape.context_length)
        if placement is not None:
            rt = replace(rt, ctx=placement.memory.kv_cells)
    if not isinstance(placement, Placement):
        raise NothingFits(
            f"{repo or first} {label} does not fit here", hint="choose a smaller --quant or a shorter --ctx"
        )
    gpus = len(report.hardware.gpus)
    margin = report.budget.gpus[0].headroom_bytes if report.budget.gpus else DEFAULT_FIT_TARGET
    return serve_command(repo, label, first, rt, placement, bind, port, gpu_count=gpus, fit_target=margin)


def serve_from_files(result: Any, request: Any, report: Any) -> Any:
    from ollama_fit.plan.inspect import local_spec

    paths = [f.path for f in result.fetched]
    target = result.target
    return _serve_plan(target.repo, target.quant.label, local_spec(paths), paths[0], target.ctx, request, report)
