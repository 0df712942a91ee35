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
        click.option(
            "--gpu",
            "gpus",
            multiple=True,
            metavar="NAME",
            help='Plan for a known card, not this one: "RTX 4090", "2x RTX 3090", "M3 Max 128GB".',
        ),
        click.option(
            "--vram",
            multiple=True,
            metavar="SIZE",
            help="Plan for a GPU with this much memory: 24GiB; repeat, or 2x24GiB, for several.",
        ),
        click.option("--ram", metavar="SIZE", help="Plan with this much RAM instead of this machine's."),
        click.option(
            "--hardware",
            "hardware_file",
            type=click.Path(path_type=Path),
            metavar="FILE.json",
            help="Plan for the machine a saved `probe --json` describes.",
        ),
        click.option(
            "--headroom",
            default="1GiB",
            show_default=True,
            metavar="SIZE",
            help="Memory left free on each GPU (llama.cpp's own fitting keeps 1 GiB).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def resolve_hardware(
    gpus: tuple[str, ...], vram: tuple[str, ...], ram: str | None, hardware_file: Path | None, headroom: str
) -> Any:
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
def probe(
    gpus: tuple[str, ...],
    vram: tuple[str, ...],
    ram: str | None,
    hardware_file: Path | None,
    headroom: str,
    list_gpus: bool,
    as_json: bool,
) -> None:
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
            emit_json({"gpus": [g.__dict__ for g in known_gpus()], "apple": [c.__dict__ for c in apple_chips()]})
        else:
            click.echo(render.render_known_gpus(known_gpus(), apple_chips()))
        return
    report = resolve_hardware(gpus, vram, ram, hardware_file, headroom)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(render.render_probe(report))


def parse_ctx(text: str) -> int | None:
    """'8192', '32k' or 'max' (None: the largest context that fits)."""
    from ollama_fit.errors import InvalidInput

    value = text.strip().lower()
    if value == "max":
        return None
    try:
        return int(float(value[:-1]) * 1024) if value.endswith("k") else int(value)
    except ValueError:
        raise InvalidInput(f"invalid --ctx {text!r}", hint="give tokens (8192, 32k) or 'max'") from None


def plan_options(fn: F) -> F:
    """What to plan for: the options of `plan`, shared by the commands that plan."""
    options = [
        click.option(
            "--task",
            default="chat",
            show_default=True,
            metavar="TASK",
            help="chat, summarization, translation, instructions, coding, reasoning, math, creative, "
            "planning, numerical, recall, evaluation, embedding.",
        ),
        click.option(
            "--ctx",
            default="8192",
            show_default=True,
            metavar="TOKENS|max",
            help="Context length per request (8192, 32k) or 'max' for the largest that fits.",
        ),
        click.option(
            "--kv-type",
            default="f16",
            show_default=True,
            type=click.Choice(["f16", "q8_0", "q4_0"]),
            help="KV cache type (quantized needs flash attention).",
        ),
        click.option(
            "--flash-attn",
            default="auto",
            show_default=True,
            type=click.Choice(["auto", "on", "off"]),
            help="Flash attention; auto = on where the GPUs support it.",
        ),
        click.option(
            "--min-quant",
            metavar="QUANT",
            help="Lowest quant allowed: raises the task's floor, or lowers it as far as the task allows.",
        ),
        click.option("--family", metavar="FAMILY", help="Only this model family (qwen3, llama3, gemma3, ...)."),
        click.option("--model", "model_id", metavar="ID", help="Only this catalog model (e.g. qwen3:8b)."),
        click.option(
            "--min-speed",
            default=5.0,
            show_default=True,
            type=float,
            metavar="TOK/S",
            help="Skip picks estimated to decode slower than this; 0 turns the floor off.",
        ),
        click.option(
            "--parallel",
            default=1,
            show_default=True,
            type=int,
            help="Requests served at once (OLLAMA_NUM_PARALLEL): each gets its own context.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@hardware_options
@plan_options
@click.option("--offline", is_flag=True, help="Do not read GGUF headers from the Hub: catalog figures only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (sizes in bytes) instead of a table.")
def plan(
    gpus: tuple[str, ...],
    vram: tuple[str, ...],
    ram: str | None,
    hardware_file: Path | None,
    headroom: str,
    task: str,
    ctx: str,
    kv_type: str,
    flash_attn: str,
    min_quant: str | None,
    family: str | None,
    model_id: str | None,
    min_speed: float,
    parallel: int,
    offline: bool,
    as_json: bool,
) -> None:
    """Pick the largest model and the best quantization that fit, and show why.

    \b
    Examples:
      ollama-fit plan
      ollama-fit plan --task coding --gpu "RTX 4090"
      ollama-fit plan --vram 2x24GiB --ctx 32k --kv-type q8_0
      ollama-fit plan --gpu "M3 Max 128GB" --ctx max --json
    """
    from ollama_fit import render
    from ollama_fit.catalog import catalog
    from ollama_fit.exact import exact_plan
    from ollama_fit.plan import PlanRequest

    report = resolve_hardware(gpus, vram, ram, hardware_file, headroom)
    request = PlanRequest(
        task=task,
        ctx=parse_ctx(ctx),
        kv_type=kv_type,
        flash_attn=None if flash_attn == "auto" else flash_attn == "on",
        min_quant=min_quant,
        family=family,
        min_speed=min_speed,
        parallel=parallel,
        model=model_id,
    )
    result = exact_plan(report, request, catalog(), _hub_for_plans(offline))
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_plan(result, charset=_charset()))


@cli.command("inspect")
@click.argument("ref")
@hardware_options
@click.option("--ctx", default="8192", show_default=True, metavar="TOKENS", help="Context length per request.")
@click.option("--kv-type", default="f16", show_default=True, type=click.Choice(["f16", "q8_0", "q4_0"]))
@click.option("--flash-attn", default="auto", show_default=True, type=click.Choice(["auto", "on", "off"]))
@click.option("--ubatch", default=512, show_default=True, type=int, help="Micro-batch (llama.cpp -ub).")
@click.option("--parallel", default=1, show_default=True, type=int, help="Requests served at once.")
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cuda", "rocm", "metal", "cpu"]),
    help="Where offloaded layers run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (sizes in bytes) instead of a table.")
def inspect_cmd(
    ref: str,
    gpus: tuple[str, ...],
    vram: tuple[str, ...],
    ram: str | None,
    hardware_file: Path | None,
    headroom: str,
    ctx: str,
    kv_type: str,
    flash_attn: str,
    ubatch: int,
    parallel: int,
    backend: str,
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
    """
    from ollama_fit import render
    from ollama_fit.errors import InvalidInput
    from ollama_fit.estimate import Runtime
    from ollama_fit.inspect_model import inspect_file, inspect_hub

    report = resolve_hardware(gpus, vram, ram, hardware_file, headroom)
    tokens = parse_ctx(ctx)
    if tokens is None or ubatch < 1 or parallel < 1:
        raise InvalidInput("--ctx must be a number of tokens; --ubatch and --parallel at least 1")
    hw_gpus = report.hardware.gpus
    fa = all(g.flash_attention for g in hw_gpus) if flash_attn == "auto" else flash_attn == "on"
    if kv_type != "f16" and not fa:
        raise InvalidInput(f"a {kv_type} KV cache needs flash attention", hint="drop --flash-attn off")
    chosen = backend if backend != "auto" else (report.budget.gpus[0].backend if report.budget.gpus else "cpu")
    rt = Runtime(ctx=tokens, kv_type=kv_type, flash_attn=fa, ubatch=ubatch, parallel=parallel, backend=chosen)
    path = Path(ref)
    if path.suffix.lower() == ".gguf" or path.exists():
        result = inspect_file(path, rt, report)
    else:
        from ollama_fit.hub import Hub, HubRef

        result = inspect_hub(HubRef.parse(ref), Hub.from_env(), rt, report)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_inspection(result))


def _hub_for_plans(offline: bool) -> Any:
    """The Hub for exact figures, unless offline (flag or HF_HUB_OFFLINE): then the catalog alone, no import."""
    from ollama_fit import config

    if offline or config.hf_offline():
        return None
    from ollama_fit.hub import Hub

    return Hub(config.hf_endpoint(), config.hf_token(), timeout=5.0)


def _charset() -> str:
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower().replace("-", "")
    return "utf-8" if encoding == "utf8" else "ascii"


def main() -> None:
    cli(prog_name="ollama-fit")
