"""macOS advice: would a higher `iogpu.wired_limit_mb` let a model fit wholly on the GPU?"""

from __future__ import annotations

from dataclasses import replace

from ollama_fit.hardware.apple import suggested_wired_limit_mb
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.memory.estimate import Runtime
from ollama_fit.model.spec import ModelSpec
from ollama_fit.placement.offload import Placement, place
from ollama_fit.units import MiB, human


def wired_limit_remedy(spec: ModelSpec, rt: Runtime, report: ProbeReport) -> str | None:
    """The exact sysctl, what it leaves macOS, and the speed the model would then run at; None when a
    higher limit would not make it fit (or this is no Mac)."""
    apple = report.hardware.apple
    if apple is None or not report.budget.gpus:
        return None
    gpu = report.budget.gpus[0]
    limit_mb = suggested_wired_limit_mb(apple.ram_bytes)
    limit = limit_mb * MiB
    if limit <= gpu.free_bytes:
        return None
    raised = replace(report.budget, gpus=(replace(gpu, total_bytes=limit, free_bytes=limit),))
    found = place(spec, replace(rt, backend="metal"), raised, report.hardware)
    if not isinstance(found, Placement) or not found.on_gpu:
        return None
    speed = f" at ~{found.speed.tps:.0f} tok/s" if found.speed else ""
    return (
        f"with `sudo sysctl iogpu.wired_limit_mb={limit_mb}` it would fit wholly on the GPU{speed}: the GPU may "
        f"then hold {human(limit)}, leaving {human(apple.ram_bytes - limit)} for macOS and the apps "
        "(the setting resets at reboot)"
    )
