"""The `ollama-fit` group and what every command shares: errors become one line, a hint and a documented
exit code here and nowhere else; color, width and JSON output.

Each command (one module beside this one) parses its options, calls one function of the package below it,
and renders the returned object as a table or as JSON. Option groups are packed into objects before a command
runs (options.py), so commands stay short.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import click

from ollama_fit import __version__
from ollama_fit.errors import Declined, OllamaFitError


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
        from ollama_fit.cli.text import wrap

        text = "\n".join(wrap(text, columns(err=True), len("Warning: ")))
    click.echo(text, err=True)


# each command's module, imported when that command runs (or help lists them all): `plan` does not pay for
# the imports of `auto` or `pull` at every start
COMMAND_MODULES = {
    "auto": "auto",
    "completion": "completion",
    "doctor": "doctor",
    "inspect": "inspect",
    "list": "listing",
    "plan": "plan",
    "probe": "probe",
    "pull": "pull",
    "serve-cmd": "serve_cmd",
}


class FitGroup(click.Group):
    """Maps our errors (and Ctrl-C) to a message, a hint and an exit code for every subcommand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | COMMAND_MODULES.keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            import importlib

            # the module adds its command to this group as it is imported
            importlib.import_module(f"ollama_fit.cli.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)

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
        import logging  # deferred: only -v logs, and the import costs every start

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s", stream=sys.stderr)


def main() -> None:
    cli(prog_name="ollama-fit")
