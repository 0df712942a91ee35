"""The known-hardware tables in profiles/gpus.toml: cards for `--gpu`, Apple chips for bandwidth."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ollama_fit.errors import ProfileError
from ollama_fit.profiles import load_profile, require
from ollama_fit.units import GiB


@dataclass(frozen=True)
class KnownGpu:
    """A card of profiles/gpus.toml, as `--gpu NAME` simulates it."""

    name: str
    vendor: str
    segment: str  # desktop, laptop, workstation, datacenter, apu
    memory_bytes: int
    bandwidth_gbs: float
    aliases: tuple[str, ...] = ()
    unified_memory: bool = False
    compute_capability: str | None = None
    tflops: float | None = None  # FP32 vector throughput (the speed model's compute term)
    memory_type: str = "gddr"  # gddr, hbm or lpddr


@dataclass(frozen=True)
class AppleChip:
    """An Apple Silicon chip of profiles/gpus.toml: bandwidth, memory sizes, GPU cores."""

    chip: str  # "M3 Max"
    bandwidth_gbs: float
    memory_gb: tuple[int, ...]  # the RAM sizes it ships with
    gpu_cores: int | None = None
    tflops: float | None = None


MEMORY_TYPES = ("gddr", "hbm", "lpddr")


def normalize(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' and 'rtx4090' both become 'rtx4090'. A remark in parentheses is not part of
    the name: 'Intel(R) Arc(TM) A770 Graphics' is 'Intel Arc A770 Graphics', 'H100 80GB (SXM or PCIe not
    stated)' is 'H100 80GB'."""
    text = re.sub(r"\([^()]*\)", " ", name.lower())
    for noise in ("nvidia", "geforce", "amd", "radeon", "apple", "generation"):
        text = text.replace(noise, "")
    return re.sub(r"[^a-z0-9]", "", text)


@cache
def known_gpus() -> tuple[KnownGpu, ...]:
    data = load_profile("gpus")
    gpus = []
    for i, entry in enumerate(data.get("gpu", [])):
        where = f"gpus.toml gpu[{i}]"
        if "memory_bytes" in entry:
            memory = require(entry, "memory_bytes", int, where)
        else:
            memory = int(require(entry, "memory_gib", int | float, where) * GiB)
        gpus.append(
            KnownGpu(
                name=require(entry, "name", str, where),
                vendor=require(entry, "vendor", str, where),
                segment=require(entry, "segment", str, where),
                memory_bytes=memory,
                bandwidth_gbs=float(require(entry, "bandwidth_gbs", int | float, where)),
                aliases=tuple(entry.get("aliases", ())),
                unified_memory=bool(entry.get("unified_memory", False)),
                compute_capability=entry.get("compute_capability"),
                tflops=_tflops(entry, where),
                memory_type=_memory_type(entry, where),
            )
        )
    return tuple(gpus)


def _tflops(entry: dict[str, Any], where: str) -> float | None:
    return float(require(entry, "tflops", int | float, where)) if "tflops" in entry else None


def _memory_type(entry: dict[str, Any], where: str) -> str:
    kind = entry.get("memory_type", "gddr")
    if kind not in MEMORY_TYPES:
        raise ProfileError(f"{where}: memory_type must be one of {', '.join(MEMORY_TYPES)}, got {kind!r}")
    return str(kind)


@cache
def apple_chips() -> tuple[AppleChip, ...]:
    data = load_profile("gpus")
    chips = []
    for i, entry in enumerate(data.get("apple", [])):
        where = f"gpus.toml apple[{i}]"
        chips.append(
            AppleChip(
                chip=require(entry, "chip", str, where),
                bandwidth_gbs=float(require(entry, "bandwidth_gbs", int | float, where)),
                memory_gb=tuple(require(entry, "memory_gb", list, where)),
                gpu_cores=entry.get("gpu_cores"),
                tflops=_tflops(entry, where),
            )
        )
    return tuple(chips)


@cache
def _gpu_index() -> dict[str, KnownGpu]:
    index: dict[str, KnownGpu] = {}
    for gpu in known_gpus():
        for name in (gpu.name, *gpu.aliases):
            index.setdefault(normalize(name), gpu)  # the first entry naming it wins, as the table lists them
    return index


def find_gpu(name: str) -> KnownGpu | None:
    """Exact match on the normalized name or an alias; no fuzzy guessing (a wrong card is worse than none)."""
    return _gpu_index().get(normalize(name))


def find_chip(
    name: str, *, gpu_cores: int | None = None, ram_gb: int | None = None, bandwidth_gbs: float | None = None
) -> AppleChip | None:
    """'Apple M3 Max' -> its table entry, narrowed by what is known of the variant (GPU cores, RAM in GB,
    bandwidth); each clue is dropped when it matches nothing. The last (largest) variant otherwise."""
    found = [c for c in apple_chips() if normalize(c.chip) == normalize(name)]
    if gpu_cores is not None:
        found = [c for c in found if c.gpu_cores in (gpu_cores, None)] or found
    if ram_gb is not None:
        found = [c for c in found if any(abs(ram_gb - gb) <= 2 for gb in c.memory_gb)] or found
    if bandwidth_gbs:
        found = [c for c in found if abs(c.bandwidth_gbs - bandwidth_gbs) < 1] or found
    return found[-1] if found else None


def suggest_gpus(name: str, limit: int = 3) -> list[str]:
    """Known names sharing the most characters in order with what the user typed, for the hint."""
    import difflib

    names = [g.name for g in known_gpus()] + [c.chip for c in apple_chips()]
    return difflib.get_close_matches(name, names, n=limit, cutoff=0.4)
