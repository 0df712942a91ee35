"""System RAM and CPU: always probed; the budget of a GPU-less box and of unified-memory machines.

Available RAM is MemAvailable capped by a cgroup v2 `memory.max - memory.current` (containers),
as Ollama does.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from ollama_fit.hardware.model import Cpu


@dataclass(frozen=True)
class SystemReading:
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


def probe_system(root: Path = Path("/"), *, cpu_name: str | None = None) -> SystemReading:
    import psutil  # deferred: only commands that probe this machine pay for it

    vm = psutil.virtual_memory()
    available = int(vm.available)
    notes: list[str] = []
    cgroup = cgroup_headroom(root)
    limit = None
    if cgroup is not None:
        limit, room = cgroup
        if room < available:
            notes.append(f"a cgroup memory limit applies: {room / 1024**3:.1f} GiB of RAM left in this container")
            available = room
    cpu = Cpu(
        model=cpu_name or cpu_model(root),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
    )
    return SystemReading(int(vm.total), available, cpu, limit, tuple(notes))
