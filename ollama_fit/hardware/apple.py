"""Apple Silicon: chip, unified memory, and the share of it Metal lets the GPU use.

The budget is Metal's `recommendedMaxWorkingSetSize` (it follows `iogpu.wired_limit_mb`); without pyobjc we
read the sysctl, and only as a last resort apply the usual default rule, labelled as a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from ollama_fit.hardware.known import AppleChip, find_chip
from ollama_fit.hardware.model import AppleInfo, Gpu
from ollama_fit.units import GiB, MiB


class AppleReader(Protocol):
    """The few things read from macOS; tests pass a fake built from real readings."""

    def sysctl(self, name: str) -> str | None: ...
    def metal_working_set(self) -> int | None: ...
    def gpu_cores(self) -> int | None: ...


class MacReader:
    """The real reader: `sysctl`, Metal through pyobjc when installed, `system_profiler` for core counts."""

    def sysctl(self, name: str) -> str | None:
        return _run(["sysctl", "-n", name])

    def metal_working_set(self) -> int | None:
        try:
            import Metal  # type: ignore[import-not-found]  # optional: pyobjc-framework-Metal
        except ImportError:
            return None
        device: Any = Metal.MTLCreateSystemDefaultDevice()
        return int(device.recommendedMaxWorkingSetSize()) if device is not None else None

    def gpu_cores(self) -> int | None:
        out = _run(["system_profiler", "SPDisplaysDataType"], timeout=10)
        m = re.search(r"Total Number of Cores:\s*(\d+)", out or "")
        return int(m.group(1)) if m else None


def _run(cmd: list[str], timeout: float = 3) -> str | None:
    import subprocess  # deferred: only a real Mac runs these

    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def default_gpu_limit(ram_bytes: int) -> int:
    """macOS's default GPU share before macOS 26: about 2/3 of RAM up to 36 GB, 3/4 above (a guess)."""
    return ram_bytes * 2 // 3 if ram_bytes <= 36 * GiB else ram_bytes * 3 // 4


def suggested_wired_limit_mb(ram_bytes: int) -> int:
    """A wired limit that leaves macOS max(4 GiB, 1/8 of RAM): safe for a machine used for LLMs."""
    keep = max(4 * GiB, ram_bytes // 8)
    return max(0, (ram_bytes - keep) // MiB)


@dataclass(frozen=True)
class AppleReading:
    """What the Apple probe found: the GPU it reports, the chip's details and notes."""

    gpu: Gpu | None
    info: AppleInfo | None
    notes: tuple[str, ...]


def match_chip(brand: str, gpu_cores: int | None, ram_bytes: int) -> AppleChip | None:
    """'Apple M3 Max' + core count (or RAM size) -> the chip entry with its bandwidth."""
    return find_chip(brand, gpu_cores=gpu_cores, ram_gb=round(ram_bytes / 1000**3))


def wired_limit_note(info: AppleInfo) -> str | None:
    suggested = suggested_wired_limit_mb(info.ram_bytes)
    if suggested * MiB <= info.gpu_limit_bytes:
        return None
    return (
        f"macOS lets the GPU use {info.gpu_limit_bytes / GiB:.1f} of {info.ram_bytes / GiB:.0f} GiB; "
        f"`sudo sysctl iogpu.wired_limit_mb={suggested}` raises that to {suggested / 1024:.1f} GiB "
        "until the next reboot"
    )


def probe_apple(reader: AppleReader) -> AppleReading:
    brand = reader.sysctl("machdep.cpu.brand_string") or ""
    memsize = reader.sysctl("hw.memsize")
    if not brand.startswith("Apple") or not memsize or not memsize.isdigit():
        return AppleReading(None, None, ("not an Apple Silicon Mac: no Metal GPU",))
    ram = int(memsize)
    wired = reader.sysctl("iogpu.wired_limit_mb")
    wired_mb = int(wired) if wired and wired.isdigit() else 0
    metal = reader.metal_working_set()
    if metal:
        limit, source = metal, "Metal recommendedMaxWorkingSetSize"
    elif wired_mb:
        limit, source = wired_mb * MiB, "iogpu.wired_limit_mb"
    else:
        limit, source = default_gpu_limit(ram), "default rule, 2/3 of RAM up to 36 GB, else 3/4 (a guess)"
    cores = reader.gpu_cores()
    chip = match_chip(brand, cores, ram)
    info = AppleInfo(
        chip=brand.removeprefix("Apple").strip(),
        ram_bytes=ram,
        gpu_limit_bytes=limit,
        gpu_limit_source=source,
        wired_limit_mb=wired_mb,
        gpu_cores=cores,
    )
    notes = [f"GPU memory limit from {source}"]
    if not metal:
        notes.append("install pyobjc-framework-Metal for Metal's exact GPU memory limit")
    if chip is None:
        notes.append(f"{brand} is not in the chip table: memory bandwidth (speed estimates) unknown")
    gpu = Gpu(
        index=0,
        vendor="apple",
        name=brand,
        memory_total_bytes=limit,
        memory_free_bytes=limit,
        bandwidth_gbs=chip.bandwidth_gbs if chip else None,
        unified_memory=True,
        source=source,
    )
    note = wired_limit_note(info)
    return AppleReading(gpu, info, (*notes, *([note] if note else [])))
