"""Probe this machine: every adapter injected so tests can replace each with a scenario fake."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ollama_fit.hardware.apple import AppleReader, MacReader, probe_apple
from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.hardware.system import SystemReading, probe_system

NO_GPU_NOTE = "no GPU found: models will run on the CPU, from RAM (slower; the plan uses the RAM budget)"


@dataclass(frozen=True)
class Probes:
    """What to read and how. Defaults are the real machine; tests swap in fakes."""

    nvml: Any | None = None  # None: import pynvml
    apple: AppleReader | None = None  # None: the real macOS reader on Apple Silicon, else skipped
    sysfs_root: Path = Path("/")
    system: SystemReading | None = None  # None: psutil + cgroup files
    is_apple_silicon: bool = field(default_factory=lambda: sys.platform == "darwin" and platform.machine() == "arm64")
    jetson: bool | None = None  # None: detect
    gpus: bool = True  # False: RAM and CPU only (simulated GPUs replace the real ones anyway)
    # RAM read bandwidth in GB/s for (cpu, ram bytes): None measures this machine (cached) unless `system`
    # is a fake, which then means unknown
    ram_bandwidth: Callable[[Cpu, int], float | None] | None = None
    remeasure: bool = False  # measure the RAM bandwidth again (keeping the best reading) instead of the cache


def _ram_bandwidth(p: Probes, system: SystemReading) -> float | None:
    if p.ram_bandwidth is not None:
        return p.ram_bandwidth(system.cpu, system.ram_total_bytes)
    if p.system is not None:
        return None
    from ollama_fit.config import cache_dir, ram_bandwidth_override

    override = ram_bandwidth_override()
    if override is not None:
        return override
    from ollama_fit.hardware.membw import cached_bandwidth

    cpu = system.cpu
    key = f"{cpu.model}|{cpu.physical_cores}|{system.ram_total_bytes}"
    return cached_bandwidth(cache_dir(), key, cpu.physical_cores or cpu.logical_cores or 1, remeasure=p.remeasure)


def probe(probes: Probes | None = None) -> Hardware:
    p = probes or Probes()
    system = p.system or probe_system(p.sysfs_root)
    notes = list(system.notes)

    def meminfo() -> tuple[int, int]:
        return (system.ram_total_bytes, system.ram_available_bytes)

    gpus = []
    driver = cuda = None
    apple_info = None
    apple_reader = p.apple or (MacReader() if p.is_apple_silicon else None)
    if p.gpus and apple_reader is not None:
        apple = probe_apple(apple_reader)
        notes.extend(apple.notes)
        if apple.gpu:
            gpus.append(apple.gpu)
            apple_info = apple.info
    elif p.gpus:
        # deferred: a simulated plan (--gpu) reads only RAM and cores here
        from ollama_fit.hardware.amd import probe_amd
        from ollama_fit.hardware.nvidia import probe_nvidia

        nvidia = probe_nvidia(meminfo, p.nvml, jetson=p.jetson)
        notes.extend(nvidia.notes)
        gpus.extend(nvidia.gpus)
        driver, cuda = nvidia.driver_version, nvidia.cuda_driver_version
        amd_gpus, amd_notes = probe_amd(p.sysfs_root, first_index=len(gpus))
        gpus.extend(amd_gpus)
        notes.extend(amd_notes)
    if not gpus and p.gpus:
        notes.append(NO_GPU_NOTE)
    cpu = system.cpu
    if cpu.bandwidth_gbs is None:
        measured = _ram_bandwidth(p, system)
        cpu = replace(cpu, bandwidth_gbs=measured) if measured else cpu
    return Hardware(
        gpus=tuple(gpus),
        ram_total_bytes=system.ram_total_bytes,
        ram_available_bytes=system.ram_available_bytes,
        cpu=cpu,
        unified_memory=any(g.unified_memory for g in gpus),
        driver_version=driver,
        cuda_driver_version=cuda,
        apple=apple_info,
        cgroup_limit_bytes=system.cgroup_limit_bytes,
        notes=tuple(notes),
        source="probe",
    )
