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

from ollama_fit import __version__, config
from ollama_fit.errors import Declined, OllamaFitError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("ollama_fit")


def paint(text: str, color: str, err: bool = True) -> str:
    """Color only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    import os

    stream = sys.stderr if err else sys.stdout
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    return click.style(text, fg=color, bold=True)


def paint_out(text: str, color: str) -> str:
    return paint(text, color, err=False)


def columns(err: bool = False) -> int:
    """The width to fit text to: $COLUMNS, else the terminal's (asked again each time: it may be resized),
    else 80."""
    import os

    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    stream = sys.stderr if err else sys.stdout
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        pass
    return 80


def warn(message: str) -> None:
    """On a terminal, wrapped to its width under the text; elsewhere one line per warning (easy to grep)."""
    text = f"{paint('Warning:', 'yellow')} {message}"
    if sys.stderr.isatty():
        from ollama_fit.render import wrap

        text = "\n".join(wrap(text, columns(err=True), len("Warning: ")))
    click.echo(text, err=True)


class FitGroup(click.Group):
    """Maps our errors (and Ctrl-C) to a message, a hint and an exit code for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Declined as exc:  # the user's choice, not an error
            click.echo(exc.message, err=True)
            ctx.exit(exc.exit_code)
        except OllamaFitError as exc:
            click.echo(f"{paint('Error:', 'red')} {exc.message}", err=True)
            click.echo(f"Hint: {exc.hint or _fallback_hint(ctx)}", err=True)
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


def _fallback_hint(ctx: click.Context) -> str:
    """Every error gets a hint line: where no better one was given, where to look."""
    command = ctx.invoked_subcommand
    return f"`ollama-fit {command} --help` shows what each option accepts" if command else "see `ollama-fit --help`"


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
      ollama-fit auto                       set this machine up with the best model that fits
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
        ram_headroom: str | None,
        **kwargs: Any,
    ) -> Any:
        from ollama_fit.hardware.simulate import Simulation

        return fn(*args, hardware=Simulation(gpus, vram, ram, hardware_file, headroom, ram_headroom), **kwargs)

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
            click.option(
                "--ram-headroom",
                metavar="SIZE",
                help="RAM kept for the system and the desktop when a model runs from RAM or unified memory "
                "(default: an eighth of the RAM, at least 2 GiB).",
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
        min_speed: float | None,
        parallel: int,
        **kwargs: Any,
    ) -> Any:
        from ollama_fit.plan import PlanRequest
        from ollama_fit.validate import at_least_one, parse_ctx
        from ollama_fit.validate import min_speed as check_speed

        request = PlanRequest(
            task=task,
            ctx=parse_ctx(ctx),
            kv_type=kv_type,
            flash_attn=None if flash_attn == "auto" else flash_attn == "on",
            min_quant=min_quant,
            family=family,
            min_speed=None if min_speed is None else check_speed(min_speed),
            parallel=at_least_one(parallel, "--parallel"),
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
                type=float,
                metavar="TOK/S",
                help="The decode speed a pick must reach (default: the task's target, 10 for chat, 20 for "
                "coding and reasoning); 0 turns it off.",
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


def report_for(hardware: Any, *, remeasure: bool = False) -> Any:
    from ollama_fit.hardware.probe import Probes, probe
    from ollama_fit.hardware.simulate import hardware_report

    simulated = bool(hardware.gpus or hardware.vram)  # then only RAM is read here: the card's CPU is assumed
    probes = Probes(gpus=False, ram_bandwidth=lambda *_: None) if simulated else Probes(remeasure=remeasure)
    report = hardware_report(hardware, lambda: probe(probes))
    log.debug("hardware: %s", report.hardware)
    return report


def learned(request: Any, report: Any, hardware: Any) -> Any:
    """Plans on this machine (not simulated ones) add what real loads here taught (calibrate.py)."""
    from dataclasses import replace

    from ollama_fit.calibrate import Observations

    if report.hardware.simulated:
        return request
    observations = Observations.load(config.state_dir())
    correction, note = observations.correction(report.hardware)
    ratio, speed_note = observations.speed_ratio(report.hardware)
    return replace(
        request, overhead_correction=correction, correction_note=note, speed_ratio=ratio, speed_note=speed_note
    )


def hub_for_plans(offline: bool) -> Any:
    """The Hub for exact figures, unless offline (flag or HF_HUB_OFFLINE): then the catalog alone, no import."""

    if offline or config.hf_offline():
        return None
    from ollama_fit.hub import Hub

    # two attempts: a plan falls back to the catalog's shapes rather than wait out a struggling Hub
    return Hub(config.hf_endpoint(), config.hf_token(), timeout=config.hub_timeout(5.0), retries=2)


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
            click.echo(render.render_known_gpus(known_gpus(), apple_chips(), columns()))
        return
    report = report_for(hardware, remeasure=True)  # `probe` measures the RAM bandwidth again
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(render.render_probe(report, columns()))


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

    from ollama_fit import render
    from ollama_fit.catalog import catalog
    from ollama_fit.exact import exact_plan
    from ollama_fit.quants import normalize_quant

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


@cli.command("inspect", short_help="Read a GGUF header; what each quant needs here.")
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
@click.option(
    "--gpu-layers",
    type=int,
    metavar="N",
    help="Show the footprint of llama.cpp's -ngl N (the last N-1 layers and the output layer on the GPU) "
    "instead of the planned placement.",
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
    gpu_layers: int | None,
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
      ollama-fit inspect ./Llama-3.1-8B-Q4_K_M.gguf --gpu "RTX 4060" --gpu-layers 24
    """
    from ollama_fit import render
    from ollama_fit.inspect_model import inspect_ref, inspect_runtime

    report = report_for(hardware)
    rt = inspect_runtime(report, ctx, kv_type, flash_attn, ubatch, parallel, backend)
    result = inspect_ref(ref, rt, report, gpu_layers)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(render.render_inspection(result, columns(), paint_out))


PHASES = ("uploaded", "create", "smoke")  # the events after the download that say what is happening


class ProgressView:
    """Progress on stderr. --json: one JSON line per event. On a terminal: a one-line bar per transfer,
    redrawn in place (carriage return, the frame, clear to the end of the line), and a status line as each
    phase starts and ends. Elsewhere: the status lines only, no bars."""

    def __init__(self, as_json: bool) -> None:
        from ollama_fit.bars import Rates

        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.rates = Rates()
        self.open = False  # a frame is on the current line

    def __call__(self, event: Any) -> None:
        if self.as_json:
            fields = {"event": event.kind, "file": event.file, "done": event.done, "total": event.total}
            click.echo(json.dumps(fields | {"message": event.message}), err=True)
            return
        from ollama_fit.units import human

        name = event.file.rsplit("/", 1)[-1]
        kind = event.kind
        if kind == "start":
            self.rates.start(event.file, event.done)
            if event.done:
                self.line(f"resuming {name} at {human(event.done)} of {human(event.total)}")
            else:
                self.line(f"downloading {name} ({human(event.total)})")
            self.frame(event.file, event)
        elif kind in ("progress", "verify"):
            self.frame(event.file, event, "verifying" if kind == "verify" else "")
        elif kind == "upload":
            if event.message:  # the first event of the upload
                self.rates.start("upload", event.done)
                self.line(f"{event.message}: {human(event.total)} for its own copy of {event.file}")
            self.frame("upload", event)
        elif kind == "done":
            self.line(f"{name}: {human(event.total)}, sha256 verified")
        elif kind in PHASES:  # a phase after the download starts or ends: its message says which
            self.line(event.message)
        elif event.message:  # retry, reused, ...: about one file
            self.line(f"{name}: {event.message}")

    def frame(self, key: str, event: Any, state: str = "") -> None:
        from ollama_fit.bars import ERASE, bar_line

        if not self.tty:
            return
        rate = None if state else self.rates.rate(key, event.done)
        label = event.file.rsplit("/", 1)[-1]
        text = bar_line(label, event.done, event.total, columns(err=True), rate, state, charset())
        click.echo("\r" + text + ERASE, err=True, nl=False)
        self.open = True

    def line(self, text: str) -> None:
        """A whole line, in place of the frame on the line if there is one."""
        from ollama_fit.bars import ERASE
        from ollama_fit.render import fit

        prefix = "\r" + ERASE if self.open else ""
        self.open = False
        click.echo(prefix + fit([text], columns(err=True)), err=True)


def connections_option(fn: F) -> F:
    return click.option(
        "--connections",
        default=config.DOWNLOAD_CONNECTIONS,
        show_default=True,
        type=click.IntRange(1, 64),
        metavar="N",
        help="Download each large file over N ranged connections at once (1: one stream).",
    )(fn)


def register_options(fn: F) -> F:
    """How the model is registered (or run with llama.cpp instead)."""
    return _apply(
        fn,
        [
            click.option(
                "--name",
                metavar="NAME",
                help="The Ollama model name (default: family:size-quant, e.g. qwen3:8b-q4_k_m).",
            ),
            click.option("--force", is_flag=True, help="Replace an existing Ollama model of that name."),
            click.option("--keep-gguf", is_flag=True, help="Keep the downloaded file after Ollama has its own copy."),
            click.option(
                "--target",
                "runner",
                default="ollama",
                show_default=True,
                type=click.Choice(["ollama", "llama.cpp"]),
                help="Register with Ollama, or keep the file and print the llama-server command.",
            ),
        ],
    )


def target_options(fn: F) -> F:
    return _apply(
        fn,
        [
            click.argument("ref", required=False),
            click.option(
                "--quant", metavar="QUANT", help="The quant (default: the plan's pick; Q4_K_M for hf.co refs)."
            ),
        ],
    )


@cli.command(short_help="Download (verified, resumable) and register with Ollama.")
@target_options
@hardware_options
@plan_options
@register_options
@click.option("--no-register", is_flag=True, help="Only download (into the Hugging Face cache).")
@connections_option
@click.option("--offline", is_flag=True, help="Plan from the catalog only (downloads still need the Hub).")
@click.option("--json", "as_json", is_flag=True, help="JSON result on stdout, JSON progress events on stderr.")
def pull(
    ref: str | None,
    quant: str | None,
    hardware: Any,
    request: Any,
    name: str | None,
    force: bool,
    keep_gguf: bool,
    runner: str,
    no_register: bool,
    connections: int,
    offline: bool,
    as_json: bool,
) -> None:
    """Download a model's GGUF file(s), verified and resumable, and register it with Ollama.

    REF is a catalog id (qwen3:8b), hf.co/ORG/REPO[:QUANT], or nothing for the plan's pick. Files land in
    the Hugging Face cache (HF_HOME) and resume where they stopped. Ollama is checked before the first byte;
    once it has its own copy, the download is removed (--keep-gguf keeps it).

    \b
    Examples:
      ollama-fit pull
      ollama-fit pull qwen3:8b --name my-qwen
      ollama-fit pull hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF:Q6_K
      ollama-fit pull --target llama.cpp
    """
    from ollama_fit import render
    from ollama_fit.auto import for_ollama
    from ollama_fit.fetch import Fetcher
    from ollama_fit.hub import Hub
    from ollama_fit.ollama_adapter import Ollama
    from ollama_fit.pull import RegisterOptions, lister, picker, resolve
    from ollama_fit.pull import pull as run_pull

    needs_ctx(request, ref, quant, "pull")
    hub = Hub.from_env()
    register = runner == "ollama" and not no_register
    if register:
        request, server_warnings = for_ollama(request, Ollama.from_env())
        for warning in server_warnings:
            warn(warning)
    pick = picker(
        lambda: report_for(hardware), request, hub_for_plans(offline), lambda req, rep: learned(req, rep, hardware)
    )
    files = lister(hub, config.hf_cache_dir()) if runner == "llama.cpp" else None  # offline: the cache
    target = resolve(ref or request.model, quant, hub, pick, files)
    view = ProgressView(as_json)
    fetcher = Fetcher(hub, config.hf_cache_dir(), config.state_dir(), on_progress=view, connections=connections)
    options = RegisterOptions(name, force, keep_gguf, target.ctx or request.ctx or 8192)
    result = run_pull(target, fetcher, Ollama.from_env() if register else None, options)
    serve = None
    if runner == "llama.cpp" and result.fetched:
        serve = _serve_from_files(result, request, report_for(hardware))
    if as_json:
        emit_json(result.to_dict() | ({"llama_server": serve.to_dict()} if serve else {}))
        return
    for warning in result.registration.warnings if result.registration else ():
        warn(warning)
    click.echo(render.render_pull(result, columns()))
    if serve and serve.argv:
        click.echo("Run it with llama.cpp:\n  " + serve.shell(serve.argv))


def needs_ctx(request: Any, ref: str | None, quant: str | None, command: str) -> None:
    """--ctx max asks the planner for the largest context that fits: without a plan (an hf.co reference, or a
    catalog model at a named --quant) there is nothing to size it, so ask for tokens instead of guessing."""
    from ollama_fit.errors import InvalidInput

    planned = ref is None or ("/" not in ref and quant is None)
    if request.ctx is None and not planned:
        raise InvalidInput(
            f"--ctx max is not available for {command} {ref}{f' --quant {quant}' if quant else ''}: no plan sizes it",
            hint=f"give the context in tokens (8192, 32k); `ollama-fit inspect {ref}` shows what fits",
        )


def _serve_from_files(result: Any, request: Any, report: Any) -> Any:
    from ollama_fit.inspect_model import local_spec

    paths = [f.path for f in result.fetched]
    target = result.target
    return _serve_plan(target.repo, target.quant.label, local_spec(paths), paths[0], target.ctx, request, report)


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
    from ollama_fit.inspect_model import is_local_ref, local_shards, local_spec

    needs_ctx(request, ref, quant, "serve-cmd")
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


def _serve_hub(
    ref: str | None, quant: str | None, request: Any, report: Any, offline: bool, bind: str, port: int
) -> Any:
    """serve-cmd for a catalog or Hub model: the cached files when there are (offline too), else the headers."""
    from ollama_fit.fetch import Fetcher
    from ollama_fit.hub import Hub
    from ollama_fit.inspect_model import hub_spec, local_spec
    from ollama_fit.pull import lister, picker, resolve

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
    from ollama_fit.llamacpp import serve_command
    from ollama_fit.placement import Placement, max_context, place
    from ollama_fit.plan import runtime

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
    return serve_command(repo, label, first, rt, placement, bind, port, gpu_count=gpus)


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
    from ollama_fit import render
    from ollama_fit.auto import AutoResult, execute, for_ollama, prepare
    from ollama_fit.calibrate import Observations
    from ollama_fit.catalog import catalog
    from ollama_fit.exact import exact_plan
    from ollama_fit.fetch import Fetcher
    from ollama_fit.hub import Hub
    from ollama_fit.ollama_adapter import Ollama
    from ollama_fit.pull import RegisterOptions

    report = report_for(hardware)
    ollama = Ollama.from_env() if runner == "ollama" else None
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
    options = RegisterOptions(name, force, keep_gguf, plan_result.choice.ctx)
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


ASKS = 5  # invalid answers before the question counts as declined


def prompt_on_stderr() -> bool:
    """The question goes with the progress, to stderr, unless only stdout reaches the terminal."""
    return sys.stderr.isatty() or not sys.stdout.isatty()


def ask(question: str, err: bool = True) -> bool:
    """y/yes goes ahead; n/no, Enter alone and the end of input (Ctrl-D) do not; anything else is asked
    again, saying what is accepted. Ctrl-C: exit code 130, like everywhere else."""
    from ollama_fit.render import fit

    for _ in range(ASKS):
        click.echo(fit([f"{question} [y/N]"], columns(err=err)) + " ", nl=False, err=err)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            click.echo("\nInterrupted at the question: nothing downloaded.", err=True)
            click.get_current_context().exit(130)
        if not line:
            click.echo("(end of input: taken as no)", err=err)
            return False
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        click.echo(f"{answer!r} is not an answer: type y to go ahead, or n (or just Enter) to stop.", err=err)
    return False


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
    from ollama_fit import render
    from ollama_fit.doctor import disk_checks, hardware_checks, hub_checks, ollama_checks, reach_hub
    from ollama_fit.errors import ProblemsFound
    from ollama_fit.hub import Hub
    from ollama_fit.ollama_adapter import Ollama

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
    from ollama_fit import render
    from ollama_fit.catalog import catalog
    from ollama_fit.listing import catalog_rows, installed_rows

    report = report_for(hardware)
    if installed:
        from ollama_fit.ollama_adapter import Ollama

        rows: Any = installed_rows(Ollama.from_env(), report, request.ctx)
        text = render.render_installed
    else:
        rows = catalog_rows(report, learned(request, report, hardware), catalog(), show_all=show_all)
        text = render.render_catalog
    if as_json:
        emit_json({"models": [r.to_dict() for r in rows]})
    else:
        click.echo(text(rows, columns(), paint_out))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script.

    \b
    Examples:
      ollama-fit completion bash >> ~/.bashrc
      ollama-fit completion zsh > ~/.zfunc/_ollama-fit
      ollama-fit completion fish > ~/.config/fish/completions/ollama-fit.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "ollama-fit", "_OLLAMA_FIT_COMPLETE").source())


def main() -> None:
    cli(prog_name="ollama-fit")
