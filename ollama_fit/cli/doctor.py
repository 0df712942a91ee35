"""`ollama-fit doctor`: what works and what does not on this machine, with the fix for each problem."""

from __future__ import annotations

from typing import Any

import click

from ollama_fit import config
from ollama_fit.cli.app import cli, emit_json, paint
from ollama_fit.cli.options import (
    hardware_options,
    json_option,
    report_for,
)


@cli.command(short_help="What works and what does not, with fixes.")
@hardware_options
@json_option
def doctor(hardware: Any, as_json: bool) -> None:
    """One screen of what works and what does not, with the fix for each problem.

    Checks GPU probing (NVML, Apple, AMD), RAM and CPU, Ollama (reachable, version, what it can import),
    free disk where downloads and Ollama's models land, and the Hugging Face Hub (reachable, token set;
    the token itself is never shown).

    \b
    Examples:
      ollama-fit doctor
      ollama-fit doctor --json
    """
    from ollama_fit.cli import render
    from ollama_fit.errors import ProblemsFound
    from ollama_fit.hub.repos import Hub
    from ollama_fit.ollama.client import Ollama
    from ollama_fit.ollama.doctor import disk_checks, hardware_checks, hub_checks, ollama_checks, reach_hub

    checks = hardware_checks(report_for(hardware))
    checks += ollama_checks(Ollama.from_env())
    checks += disk_checks({"Hugging Face cache": config.hf_cache_dir(), "Ollama models": config.ollama_models_dir()})
    checks += hub_checks(Hub.from_env(), config.hf_token() is not None, reach_hub)
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        emit_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        click.echo(render.render_doctor(checks, paint))
    if failed:
        raise ProblemsFound(f"{len(failed)} problem(s) found", hint="; ".join(c.fix for c in failed if c.fix))
