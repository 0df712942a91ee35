"""The command line: the only module that imports click, prints or exits.

Each command parses options, calls one function below it, and renders the returned object as a table or
as JSON. Errors from `errors.py` become one line, a hint and a documented exit code, here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ollama_fit import __version__
from ollama_fit.errors import OllamaFitError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("ollama_fit")


class FitGroup(click.Group):
    """Maps our errors (and Ctrl-C) to a message, a hint and an exit code for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OllamaFitError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"Hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug: say so in one line, the traceback only with -v
            click.echo(f"Error: internal error: {type(exc).__name__}: {exc}", err=True)
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc(file=sys.stderr)
            else:
                click.echo("Hint: run again with -v for the traceback, and report it", err=True)
            ctx.exit(1)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@click.group(cls=FitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ollama-fit")
@click.option("-v", "--verbose", is_flag=True, help="Log what is probed and decided, to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Find the best local LLM this machine can really run, fetch it and register it with Ollama.

    \b
    Examples:
      ollama-fit probe                      what this machine may use
      ollama-fit probe --gpu "RTX 4090"     plan for another machine
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s", stream=sys.stderr)


def hardware_options(fn: F) -> F:
    """The probe/simulation options every planning command takes."""
    options = [
        click.option("--gpu", "gpus", multiple=True, metavar="NAME",
                     help='Plan for a known card, not this one: "RTX 4090", "2x RTX 3090", "M3 Max 128GB".'),
        click.option("--vram", multiple=True, metavar="SIZE",
                     help="Plan for a GPU with this much memory: 24GiB; repeat, or 2x24GiB, for several."),
        click.option("--ram", metavar="SIZE", help="Plan with this much RAM instead of this machine's."),
        click.option("--hardware", "hardware_file", type=click.Path(path_type=Path), metavar="FILE.json",
                     help="Plan for the machine a saved `probe --json` describes."),
        click.option("--headroom", default="1GiB", show_default=True, metavar="SIZE",
                     help="Memory left free on each GPU (llama.cpp's own fitting keeps 1 GiB)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def resolve_hardware(gpus: tuple[str, ...], vram: tuple[str, ...], ram: str | None,
                     hardware_file: Path | None, headroom: str) -> Any:  # fmt: skip
    from ollama_fit.hardware.model import ProbeReport, budget
    from ollama_fit.hardware.probe import probe
    from ollama_fit.hardware.simulate import Simulation, simulate
    from ollama_fit.units import parse_size

    gpu_headroom = parse_size(headroom, what="--headroom") if headroom not in ("0", "0GiB") else 0
    hw = simulate(Simulation(gpus, vram, ram, hardware_file), probe)
    log.debug("hardware: %s", hw)
    return ProbeReport(hw, budget(hw, gpu_headroom=gpu_headroom))


@cli.command()
@hardware_options
@click.option("--list-gpus", is_flag=True, help="List the known cards and chips --gpu accepts, and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (sizes in bytes) instead of a table.")
def probe(gpus: tuple[str, ...], vram: tuple[str, ...], ram: str | None, hardware_file: Path | None,
          headroom: str, list_gpus: bool, as_json: bool) -> None:  # fmt: skip
    """Show the GPUs, RAM and the memory budget a model may use.

    \b
    Examples:
      ollama-fit probe
      ollama-fit probe --json > my-machine.json
      ollama-fit probe --gpu "RTX 4060 Laptop" --ram 32GiB
      ollama-fit probe --vram 2x24GiB
      ollama-fit probe --hardware my-machine.json
    """
    from ollama_fit import render

    if list_gpus:
        from ollama_fit.hardware.known import apple_chips, known_gpus

        if as_json:
            emit_json(
                {"gpus": [g.__dict__ for g in known_gpus()], "apple": [c.__dict__ for c in apple_chips()]}
            )
        else:
            click.echo(render.render_known_gpus(known_gpus(), apple_chips()))
        return
    report = resolve_hardware(gpus, vram, ram, hardware_file, headroom)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(render.render_probe(report))


def main() -> None:
    cli(prog_name="ollama-fit")
