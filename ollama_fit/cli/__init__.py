"""The command line: one module per command, the option groups they share, the text they render; the only
package that imports click, prints or exits."""

from ollama_fit.cli.app import cli, main, paint

# each command module adds its command to `cli` when imported
from ollama_fit.cli import (  # noqa: F401  isort: skip
    auto,
    completion,
    doctor,
    inspect,
    listing,
    plan,
    probe,
    pull,
    serve_cmd,
)

__all__ = ["cli", "main", "paint"]
