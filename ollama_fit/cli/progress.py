"""What the long commands show while they work: progress on stderr (bars on a terminal, JSON events
with --json, status lines elsewhere) and the yes/no question `auto` asks."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ollama_fit.cli.app import charset, columns

PHASES = ("uploaded", "create", "smoke")  # the events after the download that say what is happening


class ProgressView:
    """Progress on stderr. --json: one JSON line per event. On a terminal: a one-line bar per transfer,
    redrawn in place (carriage return, the frame, clear to the end of the line), and a status line as each
    phase starts and ends. Elsewhere: the status lines only, no bars."""

    def __init__(self, as_json: bool) -> None:
        from ollama_fit.cli.bars import Rates

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
        from ollama_fit.cli.bars import ERASE, bar_line

        if not self.tty:
            return
        rate = None if state else self.rates.rate(key, event.done)
        label = event.file.rsplit("/", 1)[-1]
        text = bar_line(label, event.done, event.total, columns(err=True), rate, state, charset())
        click.echo("\r" + text + ERASE, err=True, nl=False)
        self.open = True

    def line(self, text: str) -> None:
        """A whole line, in place of the frame on the line if there is one."""
        from ollama_fit.cli.bars import ERASE
        from ollama_fit.cli.text import fit

        prefix = "\r" + ERASE if self.open else ""
        self.open = False
        click.echo(prefix + fit([text], columns(err=True)), err=True)


ASKS = 5  # invalid answers before the question counts as declined


def prompt_on_stderr() -> bool:
    """The question goes with the progress, to stderr, unless only stdout reaches the terminal."""
    return sys.stderr.isatty() or not sys.stdout.isatty()


def ask(question: str, err: bool = True) -> bool:
    """y/yes goes ahead; n/no, Enter alone and the end of input (Ctrl-D) do not; anything else is asked
    again, saying what is accepted. Ctrl-C: exit code 130, like everywhere else."""
    from ollama_fit.cli.text import fit

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
