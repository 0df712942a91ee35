"""The command line: the only module that imports click, prints or exits.

Each command parses options, calls one function below it, and renders the returned object as a table or
as JSON. Errors from `errors.py` become one line, a hint and a documented exit code, here and nowhere else.
Option groups are packed into objects before a command runs: `hardware` (a Simulation) and `request`
(a PlanRequest), so commands stay short.
"""

from __future__ import annotations

import functools
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
            click.echo("\nInterrupted: run the same command again to resume.", err=True)
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
    click.echo(json.dumps(data, indent=2))


def charset() -> str:
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower().replace("-", "")
    return "utf-8" if encoding == "utf8" else "ascii"


@click.group(cls=FitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ollama-fit")
@click.option("-v", "--verbose", is_flag=True, help="Log what is probed and decided, to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Find the best local LLM this machine can really run, fetch it and register it with Ollama.

    \b
    Examples:
      ollama-fit probe                      what this machine may use
      ollama-fit plan --task coding         the best model for coding here
      ollama-fit plan --gpu "RTX 4090"      plan for another machine
      ollama-fit inspect hf.co/ORG/REPO     what each quant of a GGUF repository needs
      ollama-fit pull                       download the plan's pick, verified
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s", stream=sys.stderr)


# ----- option groups -----


def _apply(fn: Callable[..., Any], options: list[Callable[[Any], Any]]) -> Any:
    for option in reversed(options):
        fn = option(fn)
    return fn


def hardware_options(fn: F) -> F:
    """--gpu/--vram/--ram/--hardware/--headroom, packed into `hardware` (a Simulation)."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        gpus: tuple[str, ...],
        vram: tuple[str, ...],
        ram: str | None,
        hardware_file: Path | None,
        headroom: str,
        **kwargs: Any,
    ) -> Any:
        from ollama_fit.hardware.simulate import Simulation

        return fn(*args, hardware=Simulation(gpus, vram, ram, hardware_file, headroom), **kwargs)

    return _apply(
        wrapper,
        [
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
        ],
    )


def plan_options(fn: F) -> F:
    """What to plan for, packed into `request` (a PlanRequest)."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        task: str,
        ctx: str,
        kv_type: str,
        flash_attn: str,
        min_quant: str | None,
        family: str | None,
        model_id: str | None,
        min_speed: float,
        parallel: int,
        **kwargs: Any,
    ) -> Any:
        from ollama_fit.plan import PlanRequest, parse_ctx

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
        return fn(*args, request=request, **kwargs)

    return _apply(
        wrapper,
        [
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
                help="Context length per request (8192, 32k), or 'max' for the largest that fits.",
            ),
            click.option(
                "--kv-type",
                default="f16",
                show_default=True,
                type=click.Choice(["f16", "q8_0", "q4_0"]),
                help="KV cache type (a quantized cache needs flash attention).",
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
        ],
    )


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (sizes in bytes) instead of a table.")(fn)


def report_for(hardware: Any) -> Any:
    from ollama_fit.hardware.probe import probe
    from ollama_fit.hardware.simulate import hardware_report

    report = hardware_report(hardware, probe)
    log.debug("hardware: %s", report.hardware)
    return report


def hub_for_plans(offline: bool) -> Any:
    """The Hub for exact figures, unless offline (flag or HF_HUB_OFFLINE): then the catalog alone, no import."""
    from ollama_fit import config

    if offline or config.hf_offline():
        return None
    from ollama_fit.hub import Hub

    return Hub(config.hf_endpoint(), config.hf_token(), timeout=5.0)


# ----- commands -----


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
    from ollama_fit import render

    if list_gpus:
        from ollama_fit.hardware.known import apple_chips, known_gpus

        if as_json:
            emit_json({"gpus": [g.__dict__ for g in known_gpus()], "apple": [c.__dict__ for c in apple_chips()]})
        else:
            click.echo(render.render_known_gpus(known_gpus(), apple_chips()))
        return
    report = report_for(hardware)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(render.render_probe(report))


@cli.command()
@hardware_options
@plan_options
@click.option("--offline", is_flag=True, help="Do not read GGUF headers from the Hub: catalog figures only.")
@json_option
def plan(hardware: Any, request: Any, offline: bool, as_json: bool) -> None:
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

    result = exact_plan(report_for(hardware), request, catalog(), hub_for_plans(offline))
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_plan(result, charset=charset()))


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
@json_option
def inspect_cmd(
    ref: str,
    hardware: Any,
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
    from ollama_fit.inspect_model import inspect_ref, inspect_runtime

    report = report_for(hardware)
    rt = inspect_runtime(report, ctx, kv_type, flash_attn, ubatch, parallel, backend)
    result = inspect_ref(ref, rt, report)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_inspection(result))


class ProgressView:
    """Fetch progress on stderr: one bar per file on a TTY, JSON lines with --json, nothing otherwise."""

    def __init__(self, as_json: bool) -> None:
        from ollama_fit.render import ProgressLine

        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.line = ProgressLine()

    def __call__(self, event: Any) -> None:
        if self.as_json:
            click.echo(
                json.dumps(
                    {
                        "event": event.kind,
                        "file": event.file,
                        "done": event.done,
                        "total": event.total,
                        "message": event.message,
                    }
                ),
                err=True,
            )
        elif event.kind in ("retry", "reused"):
            click.echo(f"{event.file}: {event.message}", err=True)
        elif self.tty:
            click.echo("\r" + self.line.render(event), err=True, nl=event.kind == "done")


@cli.command()
@click.argument("ref", required=False)
@click.option("--quant", metavar="QUANT", help="The quant to fetch (default: the plan's pick, or Q4_K_M for hf.co).")
@hardware_options
@plan_options
@click.option("--offline", is_flag=True, help="Plan from the catalog only (downloads still need the Hub).")
@click.option("--json", "as_json", is_flag=True, help="JSON result on stdout, JSON progress events on stderr.")
def pull(ref: str | None, quant: str | None, hardware: Any, request: Any, offline: bool, as_json: bool) -> None:
    """Download a model's GGUF file(s) from Hugging Face, verified and resumable.

    REF is a catalog id (qwen3:8b), hf.co/ORG/REPO[:QUANT], or nothing for the plan's pick. Files land in
    the Hugging Face cache (HF_HOME); an interrupted download resumes where it stopped.

    \b
    Examples:
      ollama-fit pull
      ollama-fit pull qwen3:8b
      ollama-fit pull hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q6_K
    """
    from ollama_fit import config, render
    from ollama_fit.fetch import Fetcher
    from ollama_fit.hub import Hub
    from ollama_fit.pull import picker, resolve
    from ollama_fit.pull import pull as run_pull

    hub = Hub.from_env()
    pick = picker(lambda: report_for(hardware), request, hub_for_plans(offline))
    target = resolve(ref or request.model, quant, hub, pick)
    fetcher = Fetcher(hub, config.hf_cache_dir(), config.state_dir(), on_progress=ProgressView(as_json))
    result = run_pull(target, fetcher)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_pull(result))


def main() -> None:
    cli(prog_name="ollama-fit")
