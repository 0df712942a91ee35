"""Loading the TOML data shipped inside the package (profiles/ in the source tree)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

from ollama_fit.errors import ProfileError

PROFILE_NAMES = ("gpus", "quants", "catalog")


def profile_names() -> tuple[str, ...]:
    """Every profile the package ships; a test loads each from the installed wheel."""
    return PROFILE_NAMES


@cache
def load_profile(name: str) -> dict[str, Any]:
    """Parse profiles/NAME.toml from the installed package (cached: the data never changes at run time)."""
    if name not in PROFILE_NAMES:
        raise ProfileError(f"unknown profile {name!r}", hint=f"known profiles: {', '.join(PROFILE_NAMES)}")
    resource = resources.files("ollama_fit").joinpath("profiles", f"{name}.toml")
    try:
        return tomllib.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProfileError(
            f"profile {name}.toml is missing from the installed package",
            hint="reinstall ollama-fit from a wheel or with `pip install .` (not a bare source copy)",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {name}.toml is malformed: {exc}", hint="reinstall ollama-fit") from exc


def require(entry: dict[str, Any], key: str, kind: Any, where: str) -> Any:
    """Fetch a typed field from a profile entry, or fail naming the entry."""
    value = entry.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProfileError(f"{where}: field {key!r} is missing or not {kind}", hint="reinstall ollama-fit")
    return value
