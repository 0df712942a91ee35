"""The command line: one module per command, the option groups they share, the text they render; the only
package that imports click, prints or exits."""

# the command modules are imported when their command is asked for (app.COMMAND_MODULES)
from ollama_fit.cli.app import cli, main, paint

__all__ = ["cli", "main", "paint"]
