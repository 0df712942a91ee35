"""What users type for the planning options, checked once and the same way for every command.

`plan`, `inspect`, `pull`, `auto`, `serve-cmd` and `list` all read --ctx, --parallel, --ubatch and --min-speed
through these functions, so a value refused by one is refused by all, with the same message and hint.
"""

from __future__ import annotations

import math

from ollama_fit.errors import InvalidInput

MIN_CTX = 256  # llama.cpp's smallest useful context; Ollama rounds smaller ones up
MAX_CTX = 2**24  # 16M tokens: beyond any trained context (Llama 4 Scout: 10M), far below llama.cpp's uint32
CTX_HINT = "give tokens from 256 to 16M (8192, 32k), or 'max' for the largest that fits"


def parse_ctx(text: str, *, allow_max: bool = True, command: str = "plan") -> int | None:
    """'8192', '32k' or 'max' (None: the largest context that fits) -> tokens, within MIN_CTX..MAX_CTX."""
    value = str(text).strip().lower()
    if value == "max":
        if allow_max:
            return None
        raise InvalidInput(
            f"--ctx max is not available for {command}: it sizes a context the planner chooses",
            hint="give the context in tokens (8192, 32k); `ollama-fit plan --ctx max` shows the largest that fits",
        )
    try:
        number = float(value[:-1]) * 1024 if value.endswith("k") else float(value)
    except ValueError:
        raise InvalidInput(f"invalid --ctx {text!r}", hint=CTX_HINT) from None
    if not math.isfinite(number) or number != int(number):
        raise InvalidInput(f"invalid --ctx {text!r}: not a whole number of tokens", hint=CTX_HINT)
    tokens = int(number)
    if not MIN_CTX <= tokens <= MAX_CTX:
        raise InvalidInput(f"--ctx {text} is out of range: {MIN_CTX} to {MAX_CTX} tokens", hint=CTX_HINT)
    return tokens


def at_least_one(value: int, option: str) -> int:
    if value < 1:
        raise InvalidInput(f"{option} must be at least 1, not {value}", hint=f"drop {option} to use the default")
    return value


def min_speed(value: float) -> float:
    """Tokens per second, 0 to turn the speed target off."""
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(
            f"invalid --min-speed {value:g}", hint="give tokens per second (e.g. 10), or 0 to turn the speed target off"
        )
    return value
