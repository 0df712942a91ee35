"""macOS advice: would a higher `iogpu.wired_limit_mb` let a model fit on the GPU?"""

from __future__ import annotations

from dataclasses import replace

from ollama_fit.estimate import Runtime, estimate
from ollama_fit.hardware.apple import suggested_wired_limit_mb
from ollama_fit.hardware.model import ProbeReport
from ollama_fit.spec import ModelSpec
from ollama_fit.units import MiB


def wired_limit_remedy(spec: ModelSpec, rt: Runtime, report: ProbeReport) -> str | None:
    apple = report.hardware.apple
    if apple is None or not report.budget.gpus:
        return None
    gpu = report.budget.gpus[0]
    limit_mb = suggested_wired_limit_mb(apple.ram_bytes)
    if limit_mb * MiB <= gpu.total_bytes:
        return None
    need = estimate(spec, replace(rt, backend="metal")).device_bytes
    if need > limit_mb * MiB - gpu.headroom_bytes:
        return None
    return f"raise the GPU limit: `sudo sysctl iogpu.wired_limit_mb={limit_mb}` (resets at reboot)"
