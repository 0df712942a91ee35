"""`ollama-fit plan`: the largest model and quant that fit, with the memory, the speed and the reasons."""

from __future__ import annotations

from typing import Any

import click

from ollama_fit.cli.app import charset, cli, columns, emit_json, paint_out, warn
from ollama_fit.cli.options import (
    hardware_options,
    hub_for_plans,
    json_option,
    learned,
    plan_options,
    report_for,
)


@cli.command(short_help="Pick the largest model and quant that fit, and why.")
@hardware_options
@plan_options
@click.option("--offline", is_flag=True, help="Do not read GGUF headers from the Hub: catalog figures only.")
@click.option("--quant", metavar="QUANT", help="Plan this quant only (Q8_0, ...): its fit, memory and speed.")
@json_option
def plan(hardware: Any, request: Any, offline: bool, quant: str | None, as_json: bool) -> None:
    """Pick the largest model and the best quantization that fit, and show why.

    \b
    Examples:
      ollama-fit plan
      ollama-fit plan --task coding --gpu "RTX 4090"
      ollama-fit plan --vram 2x24GiB --ctx 32k --kv-type q8_0
      ollama-fit plan --gpu "M3 Max 128GB" --ctx max --json
      ollama-fit plan --model qwen3:14b --quant Q8_0
    """
    from dataclasses import replace

    from ollama_fit.cli import render
    from ollama_fit.model.catalog import catalog
    from ollama_fit.model.quants import normalize_quant
    from ollama_fit.plan.exact import exact_plan

    if quant:
        request = replace(request, quant=normalize_quant(quant))
    report = report_for(hardware)
    result = exact_plan(report, learned(request, report, hardware), catalog(), hub_for_plans(offline))
    for warning in result.warnings:
        warn(warning)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_plan(result, charset(), columns(), paint_out))
