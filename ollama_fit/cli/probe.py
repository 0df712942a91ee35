"""`ollama-fit probe`: the GPUs, RAM and CPU, and the memory budget a model may use on each."""

from __future__ import annotations

from typing import Any

import click

from ollama_fit.cli.app import cli, columns, emit_json
from ollama_fit.cli.options import (
    hardware_options,
    json_option,
    report_for,
)


@cli.command()
@hardware_options
@click.option("--list-gpus", is_flag=True, help="List the known cards and chips --gpu accepts, and exit.")
@json_option
def probe(hardware: Any, list_gpus: bool, as_json: bool) -> None:
    """Show the GPUs, RAM and the memory budget a model may use.

    \b
    Examples:
      ollama-fit probe
      ollama-fit probe --json > my-machine.json
      ollama-fit probe --gpu "RTX 4060 Laptop" --ram 32GiB
      ollama-fit probe --vram 2x24GiB
      ollama-fit probe --hardware my-machine.json
    """
    from ollama_fit.cli import render

    if list_gpus:
        from ollama_fit.hardware.known import apple_chips, known_gpus

        if as_json:
            emit_json({"gpus": [g.__dict__ for g in known_gpus()], "apple": [c.__dict__ for c in apple_chips()]})
        else:
            click.echo(render.render_known_gpus(known_gpus(), apple_chips(), columns()))
        return
    report = report_for(hardware, remeasure=True)  # `probe` measures the RAM bandwidth again
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(render.render_probe(report, columns()))
