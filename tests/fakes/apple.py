"""A macOS reader fake built from real readings (hardware.md section 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

GB = 1000**3
GiB = 1024**3


@dataclass
class FakeMac:
    brand: str = "Apple M3 Max"
    memsize: int = 128 * GiB
    wired_limit_mb: int = 0
    metal: int | None = None  # recommendedMaxWorkingSetSize; None: pyobjc not installed
    cores: int | None = 40

    def sysctl(self, name: str) -> str | None:
        return {
            "machdep.cpu.brand_string": self.brand,
            "hw.memsize": str(self.memsize),
            "iogpu.wired_limit_mb": str(self.wired_limit_mb),
        }.get(name)

    def metal_working_set(self) -> int | None:
        return self.metal

    def gpu_cores(self) -> int | None:
        return self.cores
