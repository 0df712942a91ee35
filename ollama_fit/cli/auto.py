"""`ollama-fit auto`: plan, ask, download, register and smoke-test in one go."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import click

from ollama_fit import config
from ollama_fit.cli.app import charset, cli, columns, emit_json, paint_out, warn
from ollama_fit.cli.options import (
    connections_option,
    hardware_options,
    hub_for_plans,
    learned,
    plan_options,
    register_options,
    report_for,
)
from ollama_fit.cli.progress import ProgressView, ask, prompt_on_stderr
from ollama_fit.errors import Declined


@cli.command(short_help="Plan, download, register and test the best model that fits.")
@hardware_options
@plan_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask: download and register (for scripts and provisioning).")
@click.option("--dry-run", is_flag=True, help="Stop after showing the plan.")
@register_options
@connections_option
@click.option("--offline", is_flag=True, help="Plan from the catalog only (downloads still need the Hub).")
@click.option("--json", "as_json", is_flag=True, help="One JSON result on stdout; JSON progress events on stderr.")
def auto(
    hardware: Any,
    request: Any,
    yes: bool,
    dry_run: bool,
    name: str | None,
    force: bool,
    keep_gguf: bool,
    runner: str,
    connections: int,
    offline: bool,
    as_json: bool,
) -> None:
    """Set this machine up in one go: the best model that fits, downloaded, registered and tested.

    Probes the hardware, plans, shows the plan, asks, checks Ollama and the disk, downloads (verified,
    resumable), registers with Ollama, runs a short generation and compares what Ollama loaded with the
    prediction (later plans here learn from it). Running it again changes nothing; after Ctrl-C it resumes.

    \b
    Examples:
      ollama-fit auto
      ollama-fit auto --task coding --yes
      ollama-fit auto --dry-run --ctx 32k
      ollama-fit auto --target llama.cpp
    """
    from ollama_fit.cli import render
    from ollama_fit.hub.fetch import Fetcher
    from ollama_fit.hub.repos import Hub
    from ollama_fit.model.catalog import catalog
    from ollama_fit.ollama.client import Ollama
    from ollama_fit.ollama.learning import Observations
    from ollama_fit.plan.exact import exact_plan
    from ollama_fit.provision.auto import AutoResult, execute, for_ollama, prepare
    from ollama_fit.provision.pull import RegisterOptions

    report = report_for(hardware)
    ollama = Ollama.from_env() if runner == "ollama" else None
    if ollama is None:  # llama-server itself runs it, not Ollama
        request = replace(request, ollama=None)
    server_warnings: list[str] = []
    if ollama is not None:
        request, server_warnings = for_ollama(request, ollama)
    plan_result = exact_plan(report, learned(request, report, hardware), catalog(), hub_for_plans(offline))
    for warning in (*plan_result.warnings, *server_warnings):
        warn(warning)
    if not as_json:
        click.echo(render.render_plan(plan_result, charset(), columns(), paint_out))
        click.echo()

    def finish(result: AutoResult) -> None:
        if as_json:
            emit_json(result.to_dict())
        elif text := render.render_auto(result, columns(), paint_out):
            click.echo(text)

    if dry_run:
        return finish(AutoResult("dry-run", plan_result))
    if not yes and not sys.stdin.isatty():
        click.echo(
            "No terminal to ask on: nothing downloaded. Run `ollama-fit auto --yes` to go ahead "
            "(or --dry-run to only plan).",
            err=True,
        )
        return finish(AutoResult("needs-confirmation", plan_result))
    hub = Hub.from_env()
    progress = ProgressView(as_json)
    fetcher = Fetcher(hub, config.hf_cache_dir(), config.state_dir(), on_progress=progress, connections=connections)
    drafting = plan_result.load.draft if plan_result.load else 0  # only where the file carries a prediction block
    options = RegisterOptions(name, force, keep_gguf, plan_result.choice.ctx, drafting)
    ready = prepare(plan_result, hub, fetcher, ollama, options)
    if not yes and not ready.changes_nothing:
        err = prompt_on_stderr()
        block, question = render.render_confirmation(ready, columns(err=err))
        click.echo(block, err=err)
        if not ask(question, err):
            finish(AutoResult("declined", plan_result))
            raise Declined("Nothing downloaded, nothing changed.")
    observations = Observations.load(config.state_dir())
    result = execute(plan_result, request, hub, fetcher, ollama, options, observations, target=ready.target)
    for warning in result.pull.registration.warnings if result.pull and result.pull.registration else ():
        warn(warning)
    return finish(result)
