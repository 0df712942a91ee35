"""Byte sizes: parsing what users type ("24GiB", "2x24GiB", "16GB") and printing human sizes."""

from __future__ import annotations

import re

from ollama_fit.errors import InvalidInput

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
PiB = 1024**5
MAX_SIZE = PiB  # no GPU or RAM comes near: a bigger size is a typo (99999999TiB), not a machine

_UNITS = {
    "": GiB,  # a bare number is GiB: "--vram 24" means 24 GiB
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": TiB,
    "tib": TiB,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*(?P<num>[+-]?\d+(?:\.\d+)?)\s*(?P<unit>[a-z]*)\s*$", re.IGNORECASE)
_MULTI = re.compile(r"^\s*(?P<count>\d+)\s*[x×*]\s*(?P<rest>.+)$", re.IGNORECASE)
_HINT = "write a size such as 24GiB, 16GB, 512MiB or 2x24GiB (a bare number means GiB)"


def parse_size(text: str, *, what: str = "size", allow_zero: bool = False) -> int:
    """'24GiB' -> 25769803776. Binary units for K/M/G/T and *iB, decimal for *B; at most 1 PiB."""
    m = _SIZE.match(str(text))
    if not m or m["unit"].lower() not in _UNITS:
        raise InvalidInput(f"invalid {what} {text!r}", hint=_HINT)
    value = int(float(m["num"]) * _UNITS[m["unit"].lower()])
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"invalid {what} {text!r}: it must be positive", hint=_HINT)
    if value > MAX_SIZE:
        raise InvalidInput(f"invalid {what} {text!r}: larger than 1 PiB", hint=_HINT)
    return value


def parse_sizes(text: str, *, what: str = "size") -> list[int]:
    """'2x24GiB' -> [24 GiB, 24 GiB]; '24GiB' -> [24 GiB]."""
    m = _MULTI.match(str(text))
    if not m:
        return [parse_size(text, what=what)]
    count = int(m["count"])
    if not 1 <= count <= 64:
        raise InvalidInput(f"invalid {what} {text!r}: count must be 1 to 64", hint=_HINT)
    return [parse_size(m["rest"], what=what)] * count


def human(n: int | float, *, precision: int = 1) -> str:
    """Binary human size: 25769803776 -> '24.0 GiB'."""
    sign = "-" if n < 0 else ""
    value = abs(n)
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if value >= size:
            return f"{sign}{value / size:.{precision}f} {unit}"
    return f"{sign}{int(value)} B"
