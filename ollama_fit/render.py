"""Human-readable text for the CLI. Pure string building: cli.py decides where the text goes."""

from __future__ import annotations

from collections.abc import Sequence

from ollama_fit.hardware.known import AppleChip, KnownGpu
from ollama_fit.hardware.model import Gpu, ProbeReport
from ollama_fit.units import GiB, human


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None, indent: int = 2) -> str:
    """Left-aligned columns; numbers are pre-formatted by the caller."""
    all_rows = [list(header)] if header else []
    all_rows += [list(r) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(max(map(len, all_rows)))]
    lines = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _gpu_details(g: Gpu) -> str:
    parts = [g.backend.upper()]
    if g.compute_capability:
        parts.append(f"CC {g.compute_capability}")
    if g.mig_parent is not None:
        parts.append(f"MIG of GPU {g.mig_parent}")
    if g.unified_memory:
        parts.append("unified memory")
    return ", ".join(parts)


def _bandwidth(value: float | None) -> str:
    return f"{value:g} GB/s" if value else "? GB/s"


def render_probe(report: ProbeReport) -> str:
    hw, bud = report.hardware, report.budget
    out = [f"Hardware ({hw.source})"]
    if hw.gpus:
        out.append(
            table(
                [
                    [
                        f"GPU {g.index}",
                        g.name,
                        f"{human(g.memory_total_bytes)} total",
                        f"{human(g.memory_free_bytes)} free",
                        _bandwidth(g.bandwidth_gbs),
                        _gpu_details(g),
                    ]
                    for g in hw.gpus
                ]
            )
        )
    else:
        out.append("  No GPU found: models will run on the CPU, from RAM.")
    cores = f", {hw.cpu.physical_cores} cores" if hw.cpu.physical_cores else ""
    out.append(
        f"  RAM    {human(hw.ram_total_bytes)} total, {human(hw.ram_available_bytes)} available"
        f"   CPU: {hw.cpu.model}{cores}"
    )
    if hw.driver_version:
        cuda = f", CUDA {hw.cuda_driver_version}" if hw.cuda_driver_version else ""
        out.append(f"  NVIDIA driver {hw.driver_version}{cuda}")
    if hw.apple:
        a = hw.apple
        out.append(f"  Apple {a.chip}: GPU may use {human(a.gpu_limit_bytes)} of {human(a.ram_bytes)}"
                   f" ({a.gpu_limit_source})")  # fmt: skip
    out.append("")
    out.append("Budget (what a model may use: free memory minus the headroom kept)")
    rows = [
        [
            d.name,
            f"{human(d.free_bytes)} free",
            f"- {human(d.headroom_bytes)} headroom",
            f"= {human(d.usable_bytes)}",
        ]
        for d in (*bud.gpus, bud.host)
    ]
    out.append(table(rows))
    notes = (*hw.notes, *bud.notes)
    if notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in notes)
    return "\n".join(out)


def render_known_gpus(gpus: Sequence[KnownGpu], chips: Sequence[AppleChip]) -> str:
    rows = [[g.name, g.vendor, g.segment, f"{g.memory_bytes / GiB:g} GiB", f"{g.bandwidth_gbs:g} GB/s"]
            for g in gpus]  # fmt: skip
    for c in chips:
        cores = f" ({c.gpu_cores}-core GPU)" if c.gpu_cores else ""
        sizes = "/".join(str(s) for s in c.memory_gb)
        rows.append(
            [f"Apple {c.chip}{cores}", "apple", "unified", f"{sizes} GB", f"{c.bandwidth_gbs:g} GB/s"]
        )
    return table(rows, header=["name", "vendor", "segment", "memory", "bandwidth"])
