"""The hardware description every later step consumes, and the memory budget derived from it.

Sizes are int bytes. `Hardware.to_dict()` is the `probe --json` document; `hardware_from_dict` reads it
back (`--hardware FILE.json`), so a probe saved on one machine plans on another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ollama_fit.errors import InvalidInput
from ollama_fit.units import GiB

# llama.cpp's own fitting (`--fit`) leaves 1 GiB free on every device; we keep the same by default.
DEFAULT_GPU_HEADROOM = 1 * GiB
# What the OS and the user's desktop keep of RAM when a model is planned into it (CPU layers, unified memory):
# an eighth of the RAM, at least 2 GiB (`--ram-headroom` changes it).
MIN_HOST_HEADROOM = 2 * GiB
HOST_HEADROOM_SHARE = 1 / 8


def default_host_headroom(ram_total_bytes: int) -> int:
    return max(MIN_HOST_HEADROOM, int(ram_total_bytes * HOST_HEADROOM_SHARE))


VENDORS = ("nvidia", "apple", "amd", "intel")
# llama.cpp's backend for each vendor's GPUs (Intel Arc: Vulkan, what Ollama ships for it)
BACKENDS = {"nvidia": "cuda", "apple": "metal", "amd": "rocm", "intel": "vulkan"}


@dataclass(frozen=True)
class Gpu:
    """One GPU as probed or simulated (sizes in bytes)."""

    index: int
    vendor: str
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    memory_reserved_bytes: int = 0
    bandwidth_gbs: float | None = None
    uuid: str | None = None
    compute_capability: str | None = None  # "8.9"
    unified_memory: bool = False  # shares system RAM (Apple, GB10, Jetson, AMD APU)
    mig_parent: int | None = None  # index of the physical GPU for a MIG instance
    source: str = ""  # how the numbers were read: "nvml v2", "sysfs", "simulated", ...

    @property
    def backend(self) -> str:
        return BACKENDS[self.vendor]

    @property
    def flash_attention(self) -> bool:
        """Whether llama.cpp can run flash attention here (CUDA needs CC >= 6.0, except 7.2)."""
        if self.vendor != "nvidia" or not self.compute_capability:
            return True
        major, _, minor = self.compute_capability.partition(".")
        return int(major) >= 6 and (major, minor) != ("7", "2")


@dataclass(frozen=True)
class AppleInfo:
    """Apple unified memory: the chip, its RAM and how much of it the GPU may wire."""

    chip: str
    ram_bytes: int
    gpu_limit_bytes: int  # what Metal lets the GPU wire: recommendedMaxWorkingSetSize
    gpu_limit_source: str  # "metal", "iogpu.wired_limit_mb", "default rule (guess)"
    wired_limit_mb: int = 0  # sysctl iogpu.wired_limit_mb; 0 is the system default
    gpu_cores: int | None = None


@dataclass(frozen=True)
class Cpu:
    """The CPU: model, cores, and the RAM bandwidth CPU decoding is bound by."""

    model: str
    physical_cores: int | None
    logical_cores: int | None
    bandwidth_gbs: float | None = None  # RAM bandwidth, for CPU decode speed; None when unknown


@dataclass(frozen=True)
class Hardware:
    """This machine (or a simulated one): its GPUs, RAM and CPU."""

    gpus: tuple[Gpu, ...]
    ram_total_bytes: int
    ram_available_bytes: int
    cpu: Cpu
    unified_memory: bool = False
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    apple: AppleInfo | None = None
    cgroup_limit_bytes: int | None = None
    notes: tuple[str, ...] = ()
    source: str = "probe"  # "probe", "simulated", or the path of a saved probe

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [asdict(g) | {"backend": g.backend} for g in self.gpus]
        data["notes"] = list(self.notes)
        return data

    @property
    def simulated(self) -> bool:
        """Not this machine's own GPUs (--gpu, --vram or a saved probe): it teaches nothing about this one."""
        return self.source != "probe"


@dataclass(frozen=True)
class DeviceBudget:
    """What the planner may allocate on one device: free memory minus the headroom kept."""

    name: str
    kind: str  # "gpu" or "host"
    total_bytes: int
    free_bytes: int
    headroom_bytes: int
    index: int | None = None
    backend: str = "cpu"

    @property
    def usable_bytes(self) -> int:
        return max(0, self.free_bytes - self.headroom_bytes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"usable_bytes": self.usable_bytes}


@dataclass(frozen=True)
class Budget:
    """What a plan may use: each GPU's budget and the host's, after headroom."""

    gpus: tuple[DeviceBudget, ...]
    host: DeviceBudget
    unified_memory: bool
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "host": self.host.to_dict(),
            "unified_memory": self.unified_memory,
            "gpu_usable_bytes": sum(g.usable_bytes for g in self.gpus),
            "notes": list(self.notes),
        }


def budget(hw: Hardware, *, gpu_headroom: int = DEFAULT_GPU_HEADROOM, host_headroom: int | None = None) -> Budget:
    """Per-device budgets. GPUs are never summed here: the planner decides how layers split.

    On unified memory (Apple, GB10, Strix Halo) the RAM is one pool: `host` is that pool (what the GPU part
    and the host part of a model take together), and each GPU's budget is the share the GPU may hold
    (Metal's working set on a Mac). The desktop's room is kept from the RAM either way."""
    keep = default_host_headroom(hw.ram_total_bytes) if host_headroom is None else host_headroom
    gpus = tuple(
        DeviceBudget(
            name=f"GPU {g.index}: {g.name}",
            kind="gpu",
            total_bytes=g.memory_total_bytes,
            free_bytes=_gpu_free(g, hw, keep),
            headroom_bytes=gpu_headroom,
            index=g.index,
            backend=g.backend,
        )
        for g in hw.gpus
    )
    notes: list[str] = []
    unified = hw.unified_memory and bool(gpus)
    if unified:
        notes.append("unified memory: one pool; the GPU's share and the rest of the model come out of the same RAM")
    host = DeviceBudget(
        name="unified memory" if unified else "RAM",
        kind="host",
        total_bytes=hw.ram_total_bytes,
        free_bytes=hw.ram_available_bytes,
        headroom_bytes=keep,
        backend="cpu",
    )
    return Budget(gpus=gpus, host=host, unified_memory=unified, notes=tuple(notes))


def _gpu_free(g: Gpu, hw: Hardware, keep: int) -> int:
    """A unified-memory GPU can take no more than the pool leaves after the desktop's room."""
    if not g.unified_memory:
        return g.memory_free_bytes
    return max(0, min(g.memory_free_bytes, hw.ram_available_bytes - keep))


# ----- reading a saved probe (`--hardware FILE.json`) -----


def _int(data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(
            f"{where}: {key!r} must be a non-negative integer of bytes, got {value!r}",
            hint="pass a file written by `ollama-fit probe --json > FILE.json`",
        )
    return value


def _str(data: dict[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{where}: {key!r} must be a string", hint="pass a file written by `probe --json`")
    return value


def _gpu_from_dict(data: Any, i: int) -> Gpu:
    where = f"gpus[{i}]"
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be an object", hint="pass a file written by `probe --json`")
    vendor = _str(data, "vendor", where)
    if vendor not in VENDORS:
        raise InvalidInput(f"{where}: vendor must be one of {', '.join(VENDORS)}, got {vendor!r}")
    total = _int(data, "memory_total_bytes", where) or 0
    free = _int(data, "memory_free_bytes", where) or 0
    if free > total:
        raise InvalidInput(f"{where}: memory_free_bytes exceeds memory_total_bytes")
    bandwidth = data.get("bandwidth_gbs")
    if bandwidth is not None and not isinstance(bandwidth, int | float):
        raise InvalidInput(f"{where}: bandwidth_gbs must be a number")
    return Gpu(
        index=_int(data, "index", where) or 0,
        vendor=vendor,
        name=_str(data, "name", where, "GPU") or "GPU",
        memory_total_bytes=total,
        memory_free_bytes=free,
        memory_reserved_bytes=_int(data, "memory_reserved_bytes", where, optional=True) or 0,
        bandwidth_gbs=float(bandwidth) if bandwidth is not None else None,
        uuid=_str(data, "uuid", where),
        compute_capability=_str(data, "compute_capability", where),
        unified_memory=bool(data.get("unified_memory", False)),
        mig_parent=_int(data, "mig_parent", where, optional=True),
        source=_str(data, "source", where, "") or "",
    )


def hardware_from_dict(data: Any, source: str) -> Hardware:
    """Rebuild a Hardware from `probe --json` output; every field is checked, nothing trusted."""
    if not isinstance(data, dict) or "gpus" not in data or not isinstance(data["gpus"], list):
        raise InvalidInput(
            f"{source}: not a probe document (no 'gpus' list)",
            hint="create one with `ollama-fit probe --json > FILE.json` on the target machine",
        )
    gpus = tuple(_gpu_from_dict(g, i) for i, g in enumerate(data["gpus"]))
    total = _int(data, "ram_total_bytes", "hardware") or 0
    available = _int(data, "ram_available_bytes", "hardware") or 0
    cpu_data: dict[str, Any] = data["cpu"] if isinstance(data.get("cpu"), dict) else {}
    cpu = Cpu(
        model=str(cpu_data.get("model") or "unknown CPU"),
        physical_cores=cpu_data.get("physical_cores") if isinstance(cpu_data.get("physical_cores"), int) else None,
        logical_cores=cpu_data.get("logical_cores") if isinstance(cpu_data.get("logical_cores"), int) else None,
        bandwidth_gbs=cpu_data.get("bandwidth_gbs") if isinstance(cpu_data.get("bandwidth_gbs"), int | float) else None,
    )
    apple = None
    if isinstance(data.get("apple"), dict):
        a = data["apple"]
        apple = AppleInfo(
            chip=_str(a, "chip", "apple", "Apple Silicon") or "Apple Silicon",
            ram_bytes=_int(a, "ram_bytes", "apple") or 0,
            gpu_limit_bytes=_int(a, "gpu_limit_bytes", "apple") or 0,
            gpu_limit_source=_str(a, "gpu_limit_source", "apple", "saved probe") or "saved probe",
            wired_limit_mb=_int(a, "wired_limit_mb", "apple", optional=True) or 0,
            gpu_cores=_int(a, "gpu_cores", "apple", optional=True),
        )
    notes = data.get("notes", [])
    return Hardware(
        gpus=gpus,
        ram_total_bytes=total,
        ram_available_bytes=available,
        cpu=cpu,
        unified_memory=bool(data.get("unified_memory", False)),
        driver_version=_str(data, "driver_version", "hardware"),
        cuda_driver_version=_str(data, "cuda_driver_version", "hardware"),
        apple=apple,
        cgroup_limit_bytes=_int(data, "cgroup_limit_bytes", "hardware", optional=True),
        notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
        source=source,
    )


@dataclass(frozen=True)
class ProbeReport:
    """What `probe` shows: the table and `--json` are both rendered from this one object."""

    hardware: Hardware
    budget: Budget

    def to_dict(self) -> dict[str, Any]:
        return self.hardware.to_dict() | {"budget": self.budget.to_dict()}
