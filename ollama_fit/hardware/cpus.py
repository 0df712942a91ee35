"""The known-CPU table in profiles/cpus.toml: CPUs for `--cpu`, and the memory configurations whose peak
bandwidth (channels x bus width x MT/s) a CPU-only plan decodes at."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ollama_fit.errors import ProfileError
from ollama_fit.profiles import load_profile, require

VENDOR_NAMES = {"amd": "AMD", "intel": "Intel"}
SEGMENTS = ("desktop", "laptop", "workstation", "server")


@dataclass(frozen=True)
class MemoryConfig:
    """A memory configuration and its peak bandwidth (channels x bus width x transfers per second)."""

    name: str  # "DDR5-5600 dual channel"
    kind: str  # DDR4, DDR5, LPDDR5, LPDDR5X
    mts: int  # transfers per second, millions
    channels: int  # 64-bit channels, as the vendors count them
    bus_bits: int = 64  # width of one channel

    @property
    def bandwidth_gbs(self) -> float:
        """Peak: channels x bus width in bytes x MT/s (2 x 8 B x 5600 MT/s = 89.6 GB/s)."""
        return round(self.channels * self.bus_bits / 8 * self.mts / 1000, 1)


@dataclass(frozen=True)
class KnownCpu:
    """A CPU of profiles/cpus.toml: cores, threads and the memory a plan assumes for it."""

    name: str  # "Ryzen 9 7950X"
    vendor: str  # amd, intel
    segment: str  # desktop, laptop, workstation, server
    physical_cores: int
    logical_cores: int
    channels: int
    memory: tuple[MemoryConfig, ...]  # what the vendor supports, fastest first: the first is the default
    aliases: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        return f"{VENDOR_NAMES[self.vendor]} {self.name}"

    @property
    def default_memory(self) -> MemoryConfig:
        return self.memory[0]

    @property
    def bandwidth_gbs(self) -> float:
        return self.default_memory.bandwidth_gbs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "vendor": self.vendor,
            "segment": self.segment,
            "physical_cores": self.physical_cores,
            "logical_cores": self.logical_cores,
            "channels": self.channels,
            "memory": [m.name for m in self.memory],
            "bandwidth_gbs": self.bandwidth_gbs,
            "aliases": list(self.aliases),
        }


def memory_to_dict(m: MemoryConfig) -> dict[str, Any]:
    return {
        "name": m.name,
        "type": m.kind,
        "mts": m.mts,
        "channels": m.channels,
        "bus_bits": m.bus_bits,
        "bandwidth_gbs": m.bandwidth_gbs,
    }


def _positive(entry: dict[str, Any], key: str, where: str) -> int:
    value: int = require(entry, key, int, where)
    if value <= 0:
        raise ProfileError(f"{where}: {key} must be positive, got {value}", hint="reinstall ollama-fit")
    return value


@cache
def memory_configs() -> tuple[MemoryConfig, ...]:
    configs = []
    for i, entry in enumerate(load_profile("cpus").get("memory", [])):
        where = f"cpus.toml memory[{i}]"
        configs.append(
            MemoryConfig(
                name=require(entry, "name", str, where),
                kind=require(entry, "type", str, where),
                mts=_positive(entry, "mts", where),
                channels=_positive(entry, "channels", where),
                bus_bits=_positive(entry, "bus_bits", where) if "bus_bits" in entry else 64,
            )
        )
    return tuple(configs)


@cache
def known_cpus() -> tuple[KnownCpu, ...]:
    by_name = {m.name: m for m in memory_configs()}
    cpus = []
    for i, entry in enumerate(load_profile("cpus").get("cpu", [])):
        where = f"cpus.toml cpu[{i}]"
        name = require(entry, "name", str, where)
        vendor, segment = require(entry, "vendor", str, where), require(entry, "segment", str, where)
        if vendor not in VENDOR_NAMES or segment not in SEGMENTS:
            raise ProfileError(f"{where} ({name}): unknown vendor {vendor!r} or segment {segment!r}")
        cores, threads = _positive(entry, "cores", where), _positive(entry, "threads", where)
        channels = _positive(entry, "channels", where)
        names = require(entry, "memory", list, where)
        missing = [m for m in names if m not in by_name]
        if not names or missing:
            raise ProfileError(f"{where} ({name}): unknown memory configuration {missing or names!r}")
        memory = tuple(by_name[m] for m in names)
        if threads < cores or any(m.channels != channels for m in memory):
            raise ProfileError(f"{where} ({name}): fewer threads than cores, or a memory of another channel count")
        cpus.append(
            KnownCpu(
                name=name,
                vendor=vendor,
                segment=segment,
                physical_cores=cores,
                logical_cores=threads,
                channels=channels,
                memory=memory,
                aliases=tuple(entry.get("aliases", ())),
            )
        )
    return tuple(cpus)


_NOISE = re.compile(r"\(r\)|\(tm\)|\b\d+-core\b|\bprocessor\b|\bcpu\b|\bamd\b|\bintel\b|@.*$|(?:with|w/) radeon.*$")


def normalize_cpu(name: str) -> str:
    """'AMD Ryzen 9 7950X 16-Core Processor', 'Ryzen 9 7950X' and 'ryzen9-7950x' all become 'ryzen97950x'."""
    return re.sub(r"[^a-z0-9+]", "", _NOISE.sub("", name.lower()))


@cache
def _cpu_index() -> dict[str, KnownCpu]:
    index: dict[str, KnownCpu] = {}
    for cpu in known_cpus():
        for name in (cpu.name, *cpu.aliases):
            index.setdefault(normalize_cpu(name), cpu)
    return index


def find_cpu(name: str) -> KnownCpu | None:
    """Exact match on the normalized name or an alias: a wrong CPU is worse than none."""
    return _cpu_index().get(normalize_cpu(name))


def suggest_cpus(name: str, limit: int = 3) -> list[str]:
    """Known names closest to what the user typed, for the hint."""
    import difflib

    return difflib.get_close_matches(name, [c.name for c in known_cpus()], n=limit, cutoff=0.4)
