"""System RAM and CPU: always probed; the budget of a GPU-less box and of unified-memory machines.

Available RAM is MemAvailable capped by a cgroup v2 `memory.max - memory.current` (containers),
as Ollama does.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from ollama_fit.hardware.model import Cpu


@dataclass(frozen=True)
class SystemReading:
    """RAM and CPU of this machine, with a container's memory limit."""

    ram_total_bytes: int
    ram_available_bytes: int
    cpu: Cpu
    cgroup_limit_bytes: int | None
    notes: tuple[str, ...]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_headroom(root: Path = Path("/")) -> tuple[int, int] | None:
    """(limit, limit - current) of the tightest cgroup v2 memory.max on this process's path, or None."""
    own = _read(root / "proc/self/cgroup") or ""
    rel = next((line[3:] for line in own.splitlines() if line.startswith("0::")), "/")
    base = root / "sys/fs/cgroup"
    best: tuple[int, int] | None = None
    folder = base / rel.lstrip("/")
    while True:
        limit_text = _read(folder / "memory.max")
        if limit_text and limit_text != "max" and limit_text.isdigit():
            limit = int(limit_text)
            current = int(_read(folder / "memory.current") or 0)
            room = max(0, limit - current)
            if best is None or room < best[1]:
                best = (limit, room)
        if folder == base or base not in folder.parents:
            break
        folder = folder.parent
    return best


def cpu_model(root: Path = Path("/")) -> str:
    for line in (_read(root / "proc/cpuinfo") or "").splitlines():
        if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _proc_memory(root: Path) -> tuple[int, int] | None:
    """(MemTotal, MemAvailable) from /proc/meminfo, as psutil reads them on Linux, or None without the file."""
    fields = {}
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        number, _, unit = value.strip().partition(" ")
        if number.isdigit() and unit == "kB":
            fields[key] = int(number) * 1024
    if "MemTotal" in fields and "MemAvailable" in fields:
        return fields["MemTotal"], fields["MemAvailable"]
    return None


def _sysfs_cores(root: Path) -> int | None:
    """Physical cores: the distinct core sibling lists under /sys (what psutil counts on Linux)."""
    cpus = root / "sys/devices/system/cpu"
    for name in ("core_cpus_list", "thread_siblings_list"):
        lists = {_read(p) for p in cpus.glob(f"cpu[0-9]*/topology/{name}")} - {None}
        if lists:
            return len(lists)
    return None


def _memory_and_cores(root: Path) -> tuple[int, int, int | None, int | None]:
    """Total and available RAM, physical and logical cores. On Linux, read from /proc and /sys directly:
    importing psutil costs ~15 ms, a twentieth of `plan`'s start-up; elsewhere (and for a root without
    /proc/meminfo) psutil."""
    memory = _proc_memory(root) if sys.platform.startswith("linux") else None
    if memory is not None:
        return memory[0], memory[1], _sysfs_cores(root), os.cpu_count()
    import psutil  # deferred: only commands that probe this machine pay for it

    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available), psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)


def probe_system(root: Path = Path("/"), *, cpu_name: str | None = None) -> SystemReading:
    total, available, physical, logical = _memory_and_cores(root)
    notes: list[str] = []
    cgroup = cgroup_headroom(root)
    limit = None
    if cgroup is not None:
        limit, room = cgroup
        if room < available:
            notes.append(f"a cgroup memory limit applies: {room / 1024**3:.1f} GiB of RAM left in this container")
            available = room
    cpu = Cpu(model=cpu_name or cpu_model(root), physical_cores=physical, logical_cores=logical)
    return SystemReading(total, available, cpu, limit, tuple(notes))
