"""Scenario-driven NVML fakes (gpustat style): the same call surface as `pynvml`, raising its real errors.

Readings come from real devices: the H100/H200 fixtures are NVML dumps from ../shared/calibration/, the
consumer cards use the bus widths and memory clocks in ../shared/reference/hardware.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

FIXTURES = Path(__file__).parent.parent / "fixtures"
GiB = 1024**3


@dataclass
class FakeGpu:
    name: str
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    total: int = 24 * GiB
    free: int = 23 * GiB
    reserved: int = 300 * 1024**2
    cc: tuple[int, int] = (8, 9)
    bus_width: int | None = 384
    mem_clock: int | None = 10501
    v2: bool = True  # memory info v2 supported
    memory_supported: bool = True  # False on GB10 / Jetson (unified memory)
    lost: bool = False  # fell off the bus: every call raises GPU_IS_LOST
    mig_mode: tuple[int, int] | None = None  # (current, pending); None: MIG not supported (consumer cards)
    mig: list[FakeGpu | None] = field(default_factory=list)  # MIG slots; None entries are empty slots


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


@dataclass
class FakeNvml:
    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: int | None = None  # an NVML_ERROR_* code nvmlInit raises
    init_failures: int = 1_000_000  # how many nvmlInit calls fail before one succeeds
    driver: str = "580.159.04"
    cuda: int = 13000
    calls: list[str] = field(default_factory=list)
    shutdown_called: bool = False

    # the module surface our adapter uses
    NVMLError = pynvml.NVMLError
    nvmlMemory_v2 = pynvml.nvmlMemory_v2
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error is not None and self.init_failures > 0:
            self.init_failures -= 1
            raise _error(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shutdown_called = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        gpu = self.gpus[i]
        if gpu.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    def _alive(self, h: FakeGpu) -> FakeGpu:
        if h.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return h

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        return self._alive(h).name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return self._alive(h).uuid

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:
        return self._alive(h).cc

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu, version: int | None = None) -> Any:
        g = self._alive(h)
        if not g.memory_supported:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if version is None:  # v1: used includes the reserved memory
            return SimpleNamespace(total=g.total, free=g.free, used=g.total - g.free)
        if not g.v2:
            raise _error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return SimpleNamespace(total=g.total, free=g.free, used=g.total - g.free - g.reserved, reserved=g.reserved)

    def nvmlDeviceGetMemoryBusWidth(self, h: FakeGpu) -> int:
        if self._alive(h).bus_width is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return h.bus_width  # type: ignore[return-value]

    def nvmlDeviceGetMaxClockInfo(self, h: FakeGpu, clock: int) -> int:
        assert clock == pynvml.NVML_CLOCK_MEM
        if self._alive(h).mem_clock is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return h.mem_clock  # type: ignore[return-value]

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> list[int]:
        if self._alive(h).mig_mode is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return list(h.mig_mode)  # type: ignore[arg-type]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        return len(h.mig)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, i: int) -> FakeGpu:
        slot = h.mig[i]
        if slot is None:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return slot


def from_fixture(name: str) -> FakeNvml:
    """A FakeNvml that answers exactly what a real GPU answered (calibration NVML dumps)."""
    data = json.loads((FIXTURES / name).read_text())
    gpus = []
    for g in data["gpus"]:
        v2 = g["mem_v2"]
        gpus.append(
            FakeGpu(
                name=g["name"],
                uuid=g["uuid"],
                total=v2["total"],
                free=v2["free"],
                reserved=v2["reserved"],
                cc=tuple(g["cc"]),
                bus_width=g["bus_width_bits"],
                mem_clock=g["max_mem_clock_mhz"],
                mig_mode=tuple(g["mig_mode"]),
            )
        )
    return FakeNvml(gpus=gpus, driver=data["driver"], cuda=data["cuda_driver"])


RTX_4090 = dict(
    name="NVIDIA GeForce RTX 4090",
    total=25757220864,
    free=24904990720,
    reserved=347602944,
    cc=(8, 9),
    bus_width=384,
    mem_clock=10501,
)
RTX_3060 = dict(
    name="NVIDIA GeForce RTX 3060",
    total=12884901888,
    free=12301893632,
    reserved=216006656,
    cc=(8, 6),
    bus_width=192,
    mem_clock=7501,
)
A100_80 = dict(
    name="NVIDIA A100-SXM4-80GB",
    total=85899345920,
    free=85024112640,
    reserved=601882624,
    cc=(8, 0),
    bus_width=5120,
    mem_clock=1593,
)
