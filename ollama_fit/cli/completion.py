"""`ollama-fit completion SHELL`: the shell completion script."""

from __future__ import annotations

import click

from ollama_fit.cli.app import cli


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
