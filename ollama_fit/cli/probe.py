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
@click.option(
    "--list-cpus",
    is_flag=True,
    help="List the known CPUs --cpu accepts and common memory configurations with their peak bandwidth, and exit.",
)
@json_option
def probe(hardware: Any, list_gpus: bool, list_cpus: bool, as_json: bool) -> None:
    """Show the GPUs, RAM and the memory budget a model may use.

    \b
    Examples:
      ollama-fit probe
      ollama-fit probe --json > my-machine.json
      ollama-fit probe --gpu "RTX 4060 Laptop" --ram 32GiB
      ollama-fit probe --vram 2x24GiB
      ollama-fit probe --hardware my-machine.json
      ollama-fit probe --cpu "Ryzen 9 7950X" --ram 64GiB
      ollama-fit probe --list-cpus
    """
    from ollama_fit.cli import render

    if list_gpus or list_cpus:
        _list_known(list_gpus, list_cpus, as_json)
        return
    report = report_for(hardware, remeasure=True)  # `probe` measures the RAM bandwidth again
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(render.render_probe(report, columns()))


def _list_known(gpus: bool, cpus: bool, as_json: bool) -> None:
    """--list-gpus and/or --list-cpus: the tables --gpu and --cpu read (one JSON document for both)."""
    from ollama_fit.cli import render

    data: dict[str, Any] = {}
    texts: list[str] = []
    if gpus:
        from ollama_fit.hardware.known import apple_chips, known_gpus

        data |= {"gpus": [g.__dict__ for g in known_gpus()], "apple": [c.__dict__ for c in apple_chips()]}
        texts.append(render.render_known_gpus(known_gpus(), apple_chips(), columns()))
    if cpus:
        from ollama_fit.hardware.cpus import known_cpus, memory_configs, memory_to_dict

        data |= {"cpus": [c.to_dict() for c in known_cpus()], "memory": [memory_to_dict(m) for m in memory_configs()]}
        texts.append(render.render_known_cpus(known_cpus(), memory_configs(), columns()))
    if as_json:
        emit_json(data)
    else:
        click.echo("\n\n".join(texts))
