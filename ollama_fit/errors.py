"""The one error hierarchy. The CLI (cli/app.py) turns these into a message, a hint and an exit code.

Exit codes are part of the interface (documented in the README); never renumber one.
"""

from __future__ import annotations


class OllamaFitError(Exception):
    """Base of every error the user should see as a message rather than a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(OllamaFitError):
    """A value the user gave (option, size, file) cannot be used."""

    exit_code = 3


class ProfileError(OllamaFitError):
    """The data shipped in profiles/ is missing or malformed (a packaging bug)."""

    exit_code = 4


class NothingFits(OllamaFitError):
    """No model of the catalog fits the memory budget under the given constraints."""

    exit_code = 5


class TaskRefused(OllamaFitError):
    """The task is one ollama-fit will not plan for (e.g. fine-tuning on GGUF)."""

    exit_code = 6


class HubError(OllamaFitError):
    """Hugging Face answered with an error, or could not be reached."""

    exit_code = 7


class BadModelFile(OllamaFitError):
    """A file that should be a GGUF model is not one (truncated, malformed, an LFS pointer, wrong bytes)."""

    exit_code = 8


class DiskSpaceError(OllamaFitError):
    """Not enough free disk space where a download (or Ollama's copy) would land."""

    exit_code = 9


class OllamaError(OllamaFitError):
    """Ollama is not running, too old, refused a request, or a model name is taken."""

    exit_code = 11


class ProblemsFound(OllamaFitError):
    """`doctor` found something that stops ollama-fit from working."""

    exit_code = 12


class Declined(OllamaFitError):
    """The user answered no at `auto`'s question (or gave no answer): nothing was downloaded or changed."""

    exit_code = 13


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (run with -v for the traceback)",
    2: "command-line usage error (unknown option, missing argument)",
    InvalidInput.exit_code: "invalid input: a bad value, name or file",
    ProfileError.exit_code: "the shipped data in profiles/ is broken",
    NothingFits.exit_code: "no model fits the memory budget",
    TaskRefused.exit_code: "the task cannot be served by a quantized local model",
    HubError.exit_code: "Hugging Face: repository or file not found, gated, rate-limited or unreachable",
    BadModelFile.exit_code: "a model file is malformed, truncated or not a GGUF, or failed its sha256 check",
    DiskSpaceError.exit_code: "not enough free disk space",
    OllamaError.exit_code: "Ollama: not running, too old, a request refused, or the model name taken",
    ProblemsFound.exit_code: "`doctor` found a problem (each is listed with its fix)",
    Declined.exit_code: "declined: `auto`'s question was answered no (or not at all): nothing downloaded",
    130: "interrupted (Ctrl-C)",
}
