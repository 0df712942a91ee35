"""`ollama-fit list`: the catalog on this machine, or the models Ollama already has."""

from __future__ import annotations

from typing import Any

import click

from ollama_fit.cli.app import cli, columns, emit_json, paint_out
from ollama_fit.cli.options import (
    hardware_options,
    json_option,
    learned,
    plan_options,
    report_for,
)


@cli.command("list", short_help="The catalog on this machine, or the installed models.")
@hardware_options
@plan_options
@click.option("--installed", is_flag=True, help="The models Ollama already has, and whether each fits here.")
@click.option("--all", "show_all", is_flag=True, help="Also the older generations the ranking passes over.")
@click.option("--offline", is_flag=True, help="Accepted as in `plan`: `list` always uses the catalog's shapes.")
@json_option
def list_cmd(hardware: Any, request: Any, installed: bool, show_all: bool, offline: bool, as_json: bool) -> None:
    """The catalog with the best quant of each model that fits here (or on --gpu/--vram), or --installed.

    \b
    Examples:
      ollama-fit list
      ollama-fit list --task coding --gpu "RTX 4070"
      ollama-fit list --family qwen3 --json
      ollama-fit list --installed
      ollama-fit list --all --offline
    """
    from ollama_fit.cli import render
    from ollama_fit.model.catalog import catalog
    from ollama_fit.plan.listing import catalog_rows, installed_rows

    report = report_for(hardware)
    if installed:
        from ollama_fit.ollama.client import Ollama

        rows: Any = installed_rows(Ollama.from_env(), report)  # each at its own context
        text = render.render_installed
    else:
        rows = catalog_rows(report, learned(request, report, hardware), catalog(), show_all=show_all)
        text = render.render_catalog
    if as_json:
        emit_json({"models": [r.to_dict() for r in rows]})
    else:
        click.echo(text(rows, columns(), paint_out))
