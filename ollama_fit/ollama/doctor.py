"""`doctor`: one screen of what works and what does not, each problem with its fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ollama_fit.errors import OllamaFitError
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.hub.fetch import existing_parent
from ollama_fit.hub.repos import Hub
from ollama_fit.ollama.client import Ollama
from ollama_fit.units import GiB, human

LOW_DISK = 20 * GiB  # less than this free where models land is worth a warning


@dataclass(frozen=True)
class Check:
    area: str
    status: str  # ok, warn, fail, info
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hardware_checks(report: ProbeReport) -> list[Check]:
    hw = report.hardware
    out = []
    for g in hw.gpus:
        out.append(
            Check(
                "GPU",
                "ok",
                f"{g.name}: {human(g.memory_free_bytes)} free of {human(g.memory_total_bytes)} ({g.source})",
            )
        )
    nvml_note = next((n for n in hw.notes if "NVIDIA" in n or "NVML" in n or "nvidia-ml-py" in n), None)
    if nvml_note and not any(g.vendor == "nvidia" for g in hw.gpus):
        out.append(Check("NVIDIA", "info", nvml_note, "if this machine has an NVIDIA GPU, install its driver"))
    if hw.apple is not None and "guess" in hw.apple.gpu_limit_source:
        out.append(
            Check(
                "Apple",
                "warn",
                "the GPU memory limit is a guess (Metal not readable)",
                "pip install pyobjc-framework-Metal",
            )
        )
    if not hw.gpus:
        out.append(Check("GPU", "info", "no GPU found: models run on the CPU, from RAM"))
    cores = f", {hw.cpu.physical_cores} cores" if hw.cpu.physical_cores else ""
    out.append(
        Check(
            "CPU/RAM",
            "ok",
            f"{hw.cpu.model}{cores}; {human(hw.ram_available_bytes)} of {human(hw.ram_total_bytes)} RAM available",
        )
    )
    return out


def ollama_checks(ollama: Ollama) -> list[Check]:
    try:
        info = ollama.check()
    except OllamaFitError as exc:
        return [Check("Ollama", "fail", exc.message, exc.hint or "")]
    out = [Check("Ollama", "ok", f"Ollama {info.version} at {info.host}")]
    if not info.shards:
        out.append(
            Check(
                "Ollama",
                "warn",
                f"Ollama {info.version} cannot import split GGUF files (0.30+ can)",
                "update Ollama to use models published in shards",
            )
        )
    return out


def disk_checks(folders: dict[str, Path]) -> list[Check]:
    out = []
    for what, folder in folders.items():
        free = shutil.disk_usage(existing_parent(folder)).free
        status = "ok" if free >= LOW_DISK else "warn"
        fix = "" if status == "ok" else f"free some space or move {what} to a bigger disk"
        out.append(Check("disk", status, f"{what}: {folder} ({human(free)} free)", fix))
    return out


def hub_checks(hub: Hub, token_set: bool, reach: Callable[[Hub], None]) -> list[Check]:
    out = []
    if hub.offline:
        out.append(
            Check(
                "Hugging Face",
                "warn",
                "HF_HUB_OFFLINE is set: only cached files can be used",
                "unset HF_HUB_OFFLINE to download",
            )
        )
    else:
        try:
            reach(hub)
            out.append(Check("Hugging Face", "ok", f"{hub.endpoint} reachable"))
        except OllamaFitError as exc:
            out.append(Check("Hugging Face", "fail", exc.message, exc.hint or ""))
    token = "set (not shown)" if token_set else "not set (needed for gated models such as Llama)"
    out.append(
        Check(
            "Hugging Face",
            "ok" if token_set else "info",
            f"HF token: {token}",
            "" if token_set else "accept the license on the model page, then set HF_TOKEN",
        )
    )
    return out


def reach_hub(hub: Hub) -> None:
    """One small real request; any answer from the Hub (a 404 included) means it is reachable."""
    from ollama_fit.errors import HubError

    try:
        Hub(hub.endpoint, hub.token, hub.offline, timeout=5.0).list_files(PROBE_REPO)
    except HubError as exc:
        if "not found" not in exc.message:
            raise


PROBE_REPO = "ggml-org/gpt-oss-20b-GGUF"  # a small listing
