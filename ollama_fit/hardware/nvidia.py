"""NVIDIA GPUs through NVML (`nvidia-ml-py`, module `pynvml`), with every failure turned into a note.

The NVML module is injected (`nvml=`): tests pass scenario fakes that raise pynvml's real error classes.
Nothing here prints; problems come back as notes next to whatever could be read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ollama_fit.hardware.model import Gpu

WSL_NVML = Path("/usr/lib/wsl/lib/libnvidia-ml.so.1")
MemInfo = Callable[[], tuple[int, int]]  # (total, available) of system RAM


@dataclass(frozen=True)
class NvidiaReading:
    """What NVML reported: the GPUs, the driver versions and notes."""

    gpus: tuple[Gpu, ...]
    notes: tuple[str, ...]
    driver_version: str | None = None
    cuda_driver_version: str | None = None


def _load_pynvml() -> Any | None:
    try:
        import pynvml  # deferred: only `probe` and the planner's real-hardware path need it
    except ImportError:
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _preload(path: Path) -> None:
    # loading by full path lets pynvml's later dlopen("libnvidia-ml.so.1") find the same library
    import ctypes  # deferred: only a WSL2 retry needs it

    ctypes.CDLL(str(path), mode=getattr(ctypes, "RTLD_GLOBAL", 0))


def _init(nvml: Any, wsl_lib: Path, preload: Callable[[Path], None]) -> str | None:
    """nvmlInit, retrying with WSL2's library path. Returns a note when NVML cannot be used."""
    try:
        nvml.nvmlInit()
        return None
    except nvml.NVMLError as exc:
        code = getattr(exc, "value", None)
        if code == nvml.NVML_ERROR_LIBRARY_NOT_FOUND and wsl_lib.exists():
            try:
                preload(wsl_lib)
                nvml.nvmlInit()
                return None
            except (OSError, nvml.NVMLError):
                pass
        if code == nvml.NVML_ERROR_LIBRARY_NOT_FOUND:
            return "no NVIDIA driver library (libnvidia-ml) found: no NVIDIA GPU will be used"
        if code == nvml.NVML_ERROR_DRIVER_NOT_LOADED:
            return "the NVIDIA driver library is installed but the driver is not loaded: no NVIDIA GPU used"
        return f"NVML could not start ({_text(exc)}): no NVIDIA GPU will be used"


def _optional(fn: Callable[[], Any], nvml: Any) -> Any:
    """A query some devices do not support: None instead of an error."""
    try:
        return fn()
    except nvml.NVMLError:
        return None


def _memory(nvml: Any, handle: Any) -> tuple[int, int, int, str] | None:
    """(total, free, reserved, source) from memory info v2, else v1; None when NVML has no figures."""
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        total, free, reserved, source = int(info.total), int(info.free), int(info.reserved), "nvml v2"
    except nvml.NVMLError:  # older drivers lack v2; v1 counts reserved memory as used
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
                return None
            raise
        total, free, reserved, source = int(info.total), int(info.free), 0, "nvml v1"
    if total == 0:  # unified-memory boards report 0 on some drivers
        return None
    return total, free, reserved, source


def _bandwidth(nvml: Any, handle: Any) -> float | None:
    bus_bits = _optional(lambda: nvml.nvmlDeviceGetMemoryBusWidth(handle), nvml)
    clock_mhz = _optional(lambda: nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM), nvml)
    if not bus_bits or not clock_mhz:
        return None
    return round(bus_bits / 8 * clock_mhz * 2 / 1000, 1)  # double data rate


def _device(nvml: Any, handle: Any, index: int, meminfo: MemInfo, unified_hint: bool, notes: list[str]) -> Gpu:
    name = _text(_optional(lambda: nvml.nvmlDeviceGetName(handle), nvml) or f"NVIDIA GPU {index}")
    cc = _optional(lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle), nvml)
    memory = None if unified_hint else _memory(nvml, handle)
    if memory is None:
        # GB10 / DGX Spark / Jetson: NVML has no memory figures; the GPU shares system RAM.
        total, free = meminfo()
        reserved, source, unified = 0, "system RAM (NVML memory not supported: unified memory)", True
        notes.append(f"GPU {index} ({name}) shares system RAM: its budget is the RAM available")
    else:
        total, free, reserved, source = memory
        unified = False
    return Gpu(
        index=index,
        vendor="nvidia",
        name=name,
        memory_total_bytes=total,
        memory_free_bytes=free,
        memory_reserved_bytes=reserved,
        bandwidth_gbs=_bandwidth(nvml, handle),
        uuid=_optional(lambda: _text(nvml.nvmlDeviceGetUUID(handle)), nvml),
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        unified_memory=unified,
        source=source,
    )


def _mig_devices(nvml: Any, handle: Any, parent: Gpu, first_index: int, notes: list[str]) -> list[Gpu]:
    mode = _optional(lambda: nvml.nvmlDeviceGetMigMode(handle), nvml)
    if not mode or not mode[0]:
        return []
    slots = _optional(lambda: nvml.nvmlDeviceGetMaxMigDeviceCount(handle), nvml) or 0
    found: list[Gpu] = []
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError:
            continue  # empty slot (NVML_ERROR_NOT_FOUND)
        memory = _memory(nvml, mig)
        if memory is None:
            continue
        total, free, reserved, source = memory
        share = total / parent.memory_total_bytes if parent.memory_total_bytes else 0
        found.append(
            Gpu(
                index=first_index + len(found),
                vendor="nvidia",
                name=_text(_optional(partial(nvml.nvmlDeviceGetName, mig), nvml) or f"{parent.name} MIG"),
                memory_total_bytes=total,
                memory_free_bytes=free,
                memory_reserved_bytes=reserved,
                # a MIG slice gets memory bandwidth in proportion to its memory slices
                bandwidth_gbs=round(parent.bandwidth_gbs * share, 1) if parent.bandwidth_gbs else None,
                uuid=_text(_optional(partial(nvml.nvmlDeviceGetUUID, mig), nvml) or "") or None,
                compute_capability=parent.compute_capability,
                mig_parent=parent.index,
                source=f"{source} (MIG)",
            )
        )
    notes.append(f"GPU {parent.index} ({parent.name}) is in MIG mode: {len(found)} instance(s) listed")
    return found


def _is_jetson() -> bool:
    return bool(os.environ.get("JETSON_JETPACK")) or Path("/etc/nv_tegra_release").exists()


def probe_nvidia(
    meminfo: MemInfo,
    nvml: Any | None = None,
    *,
    wsl_lib: Path = WSL_NVML,
    preload: Callable[[Path], None] = _preload,
    jetson: bool | None = None,
) -> NvidiaReading:
    """Every NVIDIA GPU NVML can see. MIG instances replace their parent GPU as separate devices."""
    nvml = nvml if nvml is not None else _load_pynvml()
    if nvml is None:
        return NvidiaReading((), ("nvidia-ml-py is not installed: NVIDIA GPUs are not probed",))
    note = _init(nvml, wsl_lib, preload)
    if note:
        return NvidiaReading((), (note,))
    notes: list[str] = []
    gpus: list[Gpu] = []
    try:
        driver = _optional(lambda: _text(nvml.nvmlSystemGetDriverVersion()), nvml)
        cuda = _optional(nvml.nvmlSystemGetCudaDriverVersion, nvml)
        count = nvml.nvmlDeviceGetCount()
        unified_hint = _is_jetson() if jetson is None else jetson
        for physical in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(physical)
                gpu = _device(nvml, handle, len(gpus), meminfo, unified_hint, notes)
            except nvml.NVMLError as exc:
                notes.append(f"GPU {physical} could not be read ({_text(exc)}); it is left out")
                continue
            migs = _mig_devices(nvml, handle, gpu, len(gpus), notes)
            gpus.extend(migs or [gpu])
    except nvml.NVMLError as exc:
        notes.append(f"NVML failed while listing GPUs ({_text(exc)})")
        driver = cuda = None
    finally:
        _optional(nvml.nvmlShutdown, nvml)
    cuda_text = f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else None
    return NvidiaReading(tuple(gpus), tuple(notes), driver, cuda_text)
