"""Planning for another machine: `--gpu NAME`, `--vram SIZE`, `--ram SIZE`, `--hardware FILE.json`, and its CPU:
`--cpu NAME`, `--ram-bandwidth GBS`.

Simulated devices replace the probed GPUs entirely; RAM comes from `--ram`, else from this machine. `--cpu` or
`--ram-bandwidth` without simulated devices (or a saved probe) plans a CPU-only machine: this one's GPUs are
left out, its CPU replaced by the named one (or the default simulated desktop CPU at the stated bandwidth).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ollama_fit.config import MAX_RAM_BANDWIDTH_GBS
from ollama_fit.errors import InvalidInput
from ollama_fit.hardware.apple import default_gpu_limit
from ollama_fit.hardware.cpus import find_cpu, suggest_cpus
from ollama_fit.hardware.known import AppleChip, KnownGpu, apple_chips, find_gpu, normalize, suggest_gpus
from ollama_fit.hardware.model import AppleInfo, Cpu, Gpu, Hardware, ProbeReport, budget, hardware_from_dict
from ollama_fit.units import GiB, parse_size, parse_sizes


@dataclass(frozen=True)
class Simulation:
    """The machine `--gpu`, `--vram`, `--ram` and `--hardware` describe instead of this one."""

    gpus: tuple[str, ...] = ()  # names, each optionally "2x NAME"
    vram: tuple[str, ...] = ()  # sizes, each optionally "2x24GiB"
    ram: str | None = None
    hardware_file: Path | None = None
    headroom: str = "1GiB"  # kept free on each GPU
    ram_headroom: str | None = None  # kept free of RAM for the system and the desktop; None: the default rule
    cpu: str | None = None  # a known CPU's name (profiles/cpus.toml)
    ram_bandwidth: float | None = None  # peak RAM bandwidth in GB/s, over the CPU's own

    @property
    def active(self) -> bool:
        return bool(self.gpus or self.vram or self.ram or self.hardware_file or self.cpu_given)

    @property
    def cpu_given(self) -> bool:
        return self.cpu is not None or self.ram_bandwidth is not None

    @property
    def replaces_devices(self) -> bool:
        """This machine's GPUs and CPU are not planned for (only its RAM may be): nothing to probe but RAM."""
        return bool(self.gpus or self.vram or self.cpu_given)


# A desktop that carries the simulated card: 8 cores, RAM bandwidth unknown (the speed model assumes
# dual-channel DDR5 and says so).
SIMULATED_CPU = Cpu(model="a desktop CPU (simulated)", physical_cores=8, logical_cores=16)

_COUNT = re.compile(r"^\s*(\d+)\s*[x×]\s*(.+)$", re.IGNORECASE)
_APPLE = re.compile(
    r"^\s*(?:apple\s+)?(m\d(?:\s+(?:pro|max|ultra))?)(?:\s+(\d+)\s*-?core)?(?:\s+(\d+)\s*gb)?\s*$", re.I
)


def _count(text: str) -> tuple[int, str]:
    m = _COUNT.match(text)
    if not m:
        return 1, text.strip()
    count = int(m.group(1))
    if not 1 <= count <= 64:
        raise InvalidInput(f"invalid --gpu {text!r}: count must be 1 to 64", hint='e.g. --gpu "2x RTX 4090"')
    return count, m.group(2).strip()


def _apple_chip(text: str, ram: int | None) -> tuple[AppleChip, int | None] | None:
    """'M3 Max 128GB' (or 'M3 Max' with --ram 128GiB) -> the chip variant and its RAM in GB."""
    m = _APPLE.match(text)
    if not m:
        return None
    chip_name, cores, ram_gb = m.group(1), m.group(2), m.group(3)
    if ram_gb is not None and ram is not None and abs(int(ram_gb) * GiB - ram) > GiB:
        raise InvalidInput(f"{text!r} and --ram disagree about the memory", hint="give the RAM size once")
    if ram_gb is None and ram is not None:
        ram_gb = str(round(ram / GiB))
    matches = [c for c in apple_chips() if normalize(c.chip) == normalize(chip_name)]
    if cores:
        matches = [c for c in matches if c.gpu_cores == int(cores)] or matches
    if ram_gb:
        sized = [c for c in matches if int(ram_gb) in c.memory_gb]
        if matches and not sized:
            sizes = sorted({gb for c in matches for gb in c.memory_gb})
            raise InvalidInput(
                f"the {matches[0].chip} does not come with {ram_gb} GB",
                hint=f"it ships with {', '.join(map(str, sizes))} GB",
            )
        matches = sized
    if not matches:
        return None
    return matches[-1], int(ram_gb) if ram_gb else None


def _unknown(name: str) -> InvalidInput:
    close = suggest_gpus(name)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return InvalidInput(
        f"unknown GPU {name!r}",
        hint=hint + "`ollama-fit probe --list-gpus` shows the known cards; or give the memory with --vram 24GiB",
    )


def ram_bandwidth(value: float) -> float:
    """--ram-bandwidth: a peak in GB/s, above 0 (a typo in MB/s is caught by the upper bound)."""
    if not math.isfinite(value) or not 0 < value < MAX_RAM_BANDWIDTH_GBS:
        raise InvalidInput(
            f"invalid --ram-bandwidth {value:g}: must be above 0 and below {MAX_RAM_BANDWIDTH_GBS} GB/s",
            hint="the peak RAM bandwidth in GB/s: channels x 8 bytes x MT/s, e.g. 89.6 for dual-channel DDR5-5600 "
            "(`ollama-fit probe --list-cpus` lists common configurations)",
        )
    return value


def _unknown_cpu(name: str) -> InvalidInput:
    apple = _APPLE.match(name)
    if apple:
        chip = name.strip() if apple.group(3) else f"{name.strip()} 64GB"
        return InvalidInput(
            f"unknown CPU {name!r}: Apple chips are planned as GPUs with unified memory",
            hint=f'give it with --gpu and the memory it has, e.g. --gpu "{chip}"',
        )
    close = suggest_cpus(name)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return InvalidInput(
        f"unknown CPU {name!r}",
        hint=hint + "`ollama-fit probe --list-cpus` shows the known CPUs; or give --ram-bandwidth GBS alone",
    )


def simulated_cpu(name: str | None, bandwidth: float | None) -> tuple[Cpu, str]:
    """The CPU `--cpu`/`--ram-bandwidth` describe (the default simulated desktop CPU without --cpu), and a note."""
    gbs = None if bandwidth is None else ram_bandwidth(bandwidth)
    if name is None:
        cpu = replace(SIMULATED_CPU, bandwidth_gbs=gbs)
        return cpu, f"CPU assumed {cpu.physical_cores} cores, RAM bandwidth {gbs:g} GB/s (--ram-bandwidth)"
    known = find_cpu(name)
    if known is None:
        raise _unknown_cpu(name)
    memory = known.default_memory
    cpu = Cpu(
        model=known.model,
        physical_cores=known.physical_cores,
        logical_cores=known.logical_cores,
        bandwidth_gbs=gbs if gbs is not None else memory.bandwidth_gbs,
    )
    source = "--ram-bandwidth" if gbs is not None else f"{memory.name}, peak"
    return cpu, (
        f"CPU {known.model}: {known.physical_cores} cores, {known.logical_cores} threads, "
        f"RAM bandwidth {cpu.bandwidth_gbs:g} GB/s ({source})"
    )


def _known_to_gpu(known: KnownGpu, index: int) -> Gpu:
    return Gpu(
        index=index,
        vendor=known.vendor,
        name=known.name,
        memory_total_bytes=known.memory_bytes,
        memory_free_bytes=known.memory_bytes,
        bandwidth_gbs=known.bandwidth_gbs,
        compute_capability=known.compute_capability,
        unified_memory=known.unified_memory,
        source="simulated (known GPU table)",
    )


def _apple_hardware(chip: AppleChip, ram_gb: int | None, ram: int | None, base: Hardware) -> Hardware:
    if ram is None and ram_gb is None:
        raise InvalidInput(
            f"say how much memory the {chip.chip} has",
            hint=f'e.g. --gpu "{chip.chip} {chip.memory_gb[-1]}GB" or --ram {chip.memory_gb[-1]}GB',
        )
    ram_bytes = ram if ram is not None else (ram_gb or 0) * GiB
    limit = default_gpu_limit(ram_bytes)
    gpu = Gpu(
        index=0,
        vendor="apple",
        name=f"Apple {chip.chip}",
        memory_total_bytes=limit,
        memory_free_bytes=limit,
        bandwidth_gbs=chip.bandwidth_gbs,
        unified_memory=True,
        source="simulated (default macOS GPU limit)",
    )
    info = AppleInfo(
        chip.chip,
        ram_bytes,
        limit,
        "default rule, 2/3 of RAM up to 36 GB, else 3/4 (a guess)",
        gpu_cores=chip.gpu_cores,
    )
    return replace(
        base,
        gpus=(gpu,),
        ram_total_bytes=ram_bytes,
        ram_available_bytes=ram_bytes,
        unified_memory=True,
        apple=info,
        cpu=Cpu(model=f"Apple {chip.chip}", physical_cores=None, logical_cores=None),
        driver_version=None,
        cuda_driver_version=None,
        notes=(f"simulated Apple {chip.chip} with {ram_bytes / GiB:.0f} GiB unified memory",),
        source="simulated",
    )


def load_hardware_file(path: Path) -> Hardware:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"hardware file {str(path)!r} not found", hint="check the path") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            f"hardware file {str(path)!r} is not valid JSON ({exc})",
            hint="create it with `ollama-fit probe --json > FILE.json` on the target machine",
        ) from exc
    return hardware_from_dict(data, source=str(path))


def simulate(sim: Simulation, probe_here: Callable[[], Hardware]) -> Hardware:
    """The hardware to plan for: a saved probe, simulated devices, or this machine with overrides."""
    if sim.hardware_file and (sim.gpus or sim.vram):
        raise InvalidInput("--hardware cannot be combined with --gpu or --vram", hint="use one or the other")
    ram = parse_size(sim.ram, what="--ram") if sim.ram else None
    cpu = simulated_cpu(sim.cpu, sim.ram_bandwidth) if sim.cpu_given else None  # checked before any probe
    base = load_hardware_file(sim.hardware_file) if sim.hardware_file else probe_here()
    if sim.gpus or sim.vram:
        return _simulated_devices(sim.gpus, sim.vram, ram, base, cpu)
    if cpu is not None:
        base = _saved_with_cpu(base, sim, cpu) if sim.hardware_file else _cpu_only(base, ram, cpu)
    if ram is None:
        return base
    return replace(
        base,
        ram_total_bytes=ram,
        ram_available_bytes=ram,
        notes=(*base.notes, f"RAM simulated: {ram / GiB:.1f} GiB"),
    )


def _cpu_only(base: Hardware, ram: int | None, cpu: tuple[Cpu, str]) -> Hardware:
    """`--cpu`/`--ram-bandwidth` alone: a machine without a GPU, the given CPU and this machine's RAM."""
    notes = [f"simulated: CPU only (no GPU); {cpu[1]}"]
    if ram is None:
        notes.append(f"RAM is this machine's ({base.ram_total_bytes / GiB:.1f} GiB); pass --ram to simulate it too")
    return replace(
        base,
        gpus=(),
        unified_memory=False,
        cpu=cpu[0],
        apple=None,
        driver_version=None,
        cuda_driver_version=None,
        notes=tuple(notes),
        source="simulated",
    )


def _saved_with_cpu(base: Hardware, sim: Simulation, cpu: tuple[Cpu, str]) -> Hardware:
    """A saved probe with its CPU replaced (--cpu) or its RAM bandwidth stated (--ram-bandwidth alone)."""
    if base.apple is not None:
        raise _shared_memory(f"the Apple {base.apple.chip}")
    if sim.cpu is None:  # the saved CPU stays, at the stated bandwidth
        stated = replace(base.cpu, bandwidth_gbs=cpu[0].bandwidth_gbs)
        return replace(
            base, cpu=stated, notes=(*base.notes, f"RAM bandwidth {stated.bandwidth_gbs:g} GB/s (--ram-bandwidth)")
        )
    return replace(base, cpu=cpu[0], notes=(*base.notes, f"simulated {cpu[1]}"))


def _shared_memory(what: str) -> InvalidInput:
    return InvalidInput(
        f"--cpu and --ram-bandwidth do not apply to {what}: its CPU and GPU share one memory",
        hint="its memory bandwidth comes from the chip's table; leave out --cpu and --ram-bandwidth",
    )


def _simulated_devices(
    names: Sequence[str], vram: Sequence[str], ram: int | None, base: Hardware, cpu: tuple[Cpu, str] | None = None
) -> Hardware:
    gpus: list[Gpu] = []
    for text in names:
        count, name = _count(text)
        known = find_gpu(name)
        if known is None:
            apple = _apple_chip(name, ram)
            if apple is None:
                raise _unknown(name)
            if count != 1 or len(names) != 1 or vram:
                raise InvalidInput("an Apple chip cannot be combined with other GPUs", hint="give one --gpu")
            if cpu is not None:
                raise _shared_memory(f"the Apple {apple[0].chip}")
            return _apple_hardware(apple[0], apple[1], ram, base)
        gpus.extend(_known_to_gpu(known, len(gpus)) for _ in range(count))
    for text in vram:
        for size in parse_sizes(text, what="--vram"):
            gpus.append(
                Gpu(
                    index=len(gpus),
                    vendor="nvidia",
                    name=f"GPU with {size / GiB:g} GiB",
                    memory_total_bytes=size,
                    memory_free_bytes=size,
                    source="simulated (--vram)",
                )
            )
    unified = any(g.unified_memory for g in gpus)
    ram_total = ram if ram is not None else base.ram_total_bytes
    ram_available = ram if ram is not None else base.ram_available_bytes
    if unified and ram is None:  # GB10-like boards: the GPU's memory is the system RAM
        ram_total = ram_available = max(g.memory_total_bytes for g in gpus)
    beside = cpu[1] if cpu else f"CPU assumed {SIMULATED_CPU.physical_cores} cores"
    notes = [f"simulated: {', '.join(g.name for g in gpus)}; {beside}"]
    if ram is None and not unified:
        notes.append(f"RAM is this machine's ({ram_total / GiB:.1f} GiB); pass --ram to simulate it too")
    return replace(
        base,
        gpus=tuple(gpus),
        ram_total_bytes=ram_total,
        ram_available_bytes=ram_available,
        unified_memory=unified,
        cpu=cpu[0] if cpu else SIMULATED_CPU,  # the card's machine, not this one: what layers left on its CPU run on
        apple=None,
        driver_version=None,
        cuda_driver_version=None,
        notes=tuple(notes),
        source="simulated",
    )


def hardware_report(sim: Simulation, probe_here: Callable[[], Hardware]) -> ProbeReport:
    """The hardware to plan for (simulated or probed) with its per-device budget."""
    headroom = parse_size(sim.headroom, what="--headroom", allow_zero=True)
    hw = simulate(sim, probe_here)
    _check_headroom(headroom, sim.headroom, hw)
    keep = None if sim.ram_headroom is None else parse_size(sim.ram_headroom, what="--ram-headroom", allow_zero=True)
    return ProbeReport(hw, budget(hw, gpu_headroom=headroom, host_headroom=keep))


def _check_headroom(headroom: int, text: str, hw: Hardware) -> None:
    """A headroom larger than a GPU is a typo, not a plan: say so rather than plan on the CPU alone."""
    for gpu in hw.gpus:
        if headroom > gpu.memory_total_bytes:
            raise InvalidInput(
                f"--headroom {text} is larger than GPU {gpu.index} "
                f"({gpu.name}, {gpu.memory_total_bytes / GiB:.1f} GiB)",
                hint="the headroom is what stays free on each GPU: a few hundred MiB to a few GiB (default 1GiB)",
            )
