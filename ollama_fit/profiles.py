"""Loading the TOML data shipped inside the package (the top-level profiles/ folder in a source tree)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from ollama_fit.errors import ProfileError

PROFILE_NAMES = ("gpus", "cpus", "quants", "catalog")


def profile_names() -> tuple[str, ...]:
    """Every profile the package ships; a test loads each from the installed wheel."""
    return PROFILE_NAMES


@cache
def load_profile(name: str) -> dict[str, Any]:
    """Parse profiles/NAME.toml (cached: the data never changes at run time)."""
    if name not in PROFILE_NAMES:
        raise ProfileError(f"unknown profile {name!r}", hint=f"known profiles: {', '.join(PROFILE_NAMES)}")
    try:
        return _parsed(name, _profile_text(name))
    except FileNotFoundError as exc:
        raise ProfileError(
            f"profile {name}.toml is missing from the installed package",
            hint="reinstall ollama-fit with `pip install .` (or `pip install -e .` from a clone)",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {name}.toml is malformed: {exc}", hint="reinstall ollama-fit") from exc


def _parsed(name: str, text: str) -> dict[str, Any]:
    """The TOML parsed, through a JSON copy in the cache folder: tomllib took ~20 ms of every start for the
    ~100 kB of profiles, json reads them in ~1 ms. The copy's name carries the text's checksum and length, so
    an edited or upgraded profile is parsed afresh; an unreadable copy is replaced, an unwritable folder only
    costs the parse."""
    import json
    import zlib

    from ollama_fit.config import cache_dir
    from ollama_fit.files import write_atomic

    raw = text.encode()
    copy = cache_dir() / "profiles" / f"{name}-{zlib.crc32(raw):08x}-{len(raw)}.json"
    try:
        data = json.loads(copy.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    data = tomllib.loads(text)
    try:
        write_atomic(copy, json.dumps(data))
        for stale in copy.parent.glob(f"{name}-*.json"):  # copies of the profile as older versions shipped it
            if stale != copy:
                stale.unlink(missing_ok=True)
    except (OSError, TypeError, ValueError):  # a read-only cache, or a value JSON cannot hold (a TOML date)
        pass
    return data


def _profile_text(name: str) -> str:
    """The copy inside the package (a wheel), else the clone's top-level profiles/ folder: an editable
    install (`pip install -e .`) or `python -m` from the clone imports the package from the source tree."""
    # a wheel installs its data as files beside the code (pip never installs zipped), so a path is enough:
    # importlib.resources would cost every start ~10 ms of imports
    packaged = Path(__file__).resolve().parent / "profiles" / f"{name}.toml"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():  # a source tree, not site-packages
        return (root / "profiles" / f"{name}.toml").read_text(encoding="utf-8")
    raise FileNotFoundError(packaged)


def require(entry: dict[str, Any], key: str, kind: Any, where: str) -> Any:
    """Fetch a typed field from a profile entry, or fail naming the entry."""
    value = entry.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProfileError(f"{where}: field {key!r} is missing or not {kind}", hint="reinstall ollama-fit")
    return value
