"""AMD GPUs on Linux, read-only from sysfs (amdgpu's mem_info_* files), so ROCm users of Ollama can plan.

APUs (small VRAM carve-out, large GTT) count VRAM + GTT and share system RAM, as Ollama does.
"""

from __future__ import annotations

import re
from pathlib import Path

from ollama_fit.hardware.model import Gpu
from ollama_fit.units import GiB

AMD_VENDOR_ID = "0x1002"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_apu(vram: int, gtt: int) -> bool:
    # Ollama's rule (discover/amd.go): VRAM <= 4 GiB, GTT >= 8 GiB and GTT >= 4 x VRAM
    return vram <= 4 * GiB and gtt >= 8 * GiB and gtt >= 4 * vram


def _name(device: Path) -> str:
    for candidate in ("product_name", "product_number"):
        try:
            text = (device / candidate).read_text().strip()
        except OSError:
            continue
        if text:
            return text if text.upper().startswith("AMD") else f"AMD {text}"
    try:
        pci_id = (device / "device").read_text().strip()
    except OSError:
        pci_id = "?"
    return f"AMD GPU (PCI device {pci_id})"


def probe_amd(root: Path = Path("/"), first_index: int = 0) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    drm = root / "sys/class/drm"
    if not drm.is_dir():
        return (), ()
    cards = sorted((p for p in drm.iterdir() if re.fullmatch(r"card\d+", p.name)), key=lambda p: int(p.name[4:]))
    gpus: list[Gpu] = []
    notes: list[str] = []
    for card in cards:
        device = card / "device"
        try:
            vendor = (device / "vendor").read_text().strip()
        except OSError:
            continue
        vram_total = _read_int(device / "mem_info_vram_total")
        if vendor != AMD_VENDOR_ID or vram_total is None:
            continue
        vram_used = _read_int(device / "mem_info_vram_used") or 0
        gtt_total = _read_int(device / "mem_info_gtt_total") or 0
        gtt_used = _read_int(device / "mem_info_gtt_used") or 0
        apu = _is_apu(vram_total, gtt_total)
        total = vram_total + (gtt_total if apu else 0)
        used = vram_used + (gtt_used if apu else 0)
        name = _name(device)
        if apu:
            notes.append(f"{name} is an APU: its budget is VRAM + GTT, shared with system RAM")
        gpus.append(
            Gpu(
                index=first_index + len(gpus),
                vendor="amd",
                name=name,
                memory_total_bytes=total,
                memory_free_bytes=max(0, total - used),
                unified_memory=apu,
                source="sysfs mem_info_vram" + ("+gtt" if apu else ""),
            )
        )
    if gpus:
        notes.append("AMD memory bandwidth is not read from sysfs: pass --gpu for speed estimates")
    return tuple(gpus), tuple(notes)
