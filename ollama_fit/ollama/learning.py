"""Learning from real loads: what Ollama really allocated vs what was predicted, per machine.

After a smoke test, `/api/ps` says how much of the model sits in VRAM. The difference from the prediction is
stored (state folder, one JSON list per machine) and later plans on the same machine add the median
difference to the per-GPU runtime overhead, bounded so one odd reading cannot make plans reckless.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ollama_fit.files import write_atomic
from ollama_fit.hardware.model import Hardware
from ollama_fit.units import MiB, human

MIN_CORRECTION = -256 * MiB  # at most this much more optimistic than the formula
MAX_CORRECTION = 1024 * MiB
SPEED_RATIO_BOUNDS = (0.5, 1.5)  # measured / predicted decode speed: one odd run cannot promise wonders
KEEP = 20  # observations kept per machine


@dataclass(frozen=True)
class Observation:
    model: str  # the Ollama name
    quant: str
    ctx: int
    predicted_device_bytes: int
    observed_vram_bytes: int
    observed_total_bytes: int
    gpus: int
    time: float
    observed_ctx: int = 0  # the context Ollama runs the model with (/api/ps context_length)
    predicted_tps: float = 0.0  # decode speed: the plan's estimate and what the smoke test measured
    observed_tps: float = 0.0

    @property
    def difference(self) -> int:
        """Per GPU: how much more (or less) than predicted the runtime took."""
        return (self.observed_vram_bytes - self.predicted_device_bytes) // max(1, self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"difference_bytes": self.difference}


def machine_key(hw: Hardware) -> str:
    """Observations belong to a machine: its GPUs (names and sizes) and driver."""
    gpus = ",".join(f"{g.name}:{g.memory_total_bytes}" for g in hw.gpus) or "cpu"
    return f"{gpus}|{hw.driver_version or ''}"


@dataclass
class Observations:
    path: Path
    data: dict[str, list[dict[str, Any]]]

    @classmethod
    def load(cls, state_dir: Path) -> Observations:
        path = state_dir / "observations.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        return cls(path, data if isinstance(data, dict) else {})

    def record(self, hw: Hardware, obs: Observation) -> None:
        key = machine_key(hw)
        self.data[key] = [*self.data.get(key, []), obs.to_dict()][-KEEP:]
        write_atomic(self.path, json.dumps(self.data, indent=2))

    def correction(self, hw: Hardware) -> tuple[int, str]:
        """The per-GPU overhead correction for this machine and the sentence that explains it."""
        entries = self.data.get(machine_key(hw), [])
        diffs = [int(e["difference_bytes"]) for e in entries if isinstance(e.get("difference_bytes"), int)]
        if not diffs or not hw.gpus:
            return 0, ""
        raw, bounded = _bounded_median(diffs, MIN_CORRECTION, MAX_CORRECTION)
        raw, bounded = int(raw), int(bounded)
        sign = "+" if bounded >= 0 else "-"
        note = (
            f"runtime overhead corrected by {sign}{human(abs(bounded))} per GPU from {len(diffs)} real load(s) "
            f"measured on this machine"
        )
        if bounded != raw:
            note += f" (measured {human(raw)}, bounded)"
        return bounded, note

    def speed_ratio(self, hw: Hardware) -> tuple[float, str]:
        """Measured over predicted decode speed on this machine (median, bounded) and its explanation;
        (1.0, "") before any run here measured one."""
        entries = self.data.get(machine_key(hw), [])
        ratios = [
            float(e["observed_tps"]) / float(e["predicted_tps"])
            for e in entries
            if isinstance(e.get("observed_tps"), int | float)
            and isinstance(e.get("predicted_tps"), int | float)
            and e["observed_tps"] > 0
            and e["predicted_tps"] > 0
        ]
        if not ratios:
            return 1.0, ""
        low, high = SPEED_RATIO_BOUNDS
        raw, ratio = _bounded_median(ratios, low, high)
        note = (
            f"decode speeds on the GPU scaled by x{ratio:.2f}: measured / predicted over {len(ratios)} real run(s) "
            "on this machine"
        )
        if ratio != raw:
            note += f" (measured x{raw:.2f}, bounded to {low}-{high})"
        return ratio, note


def _bounded_median(values: list[float] | list[int], low: float, high: float) -> tuple[float, float]:
    """The median of what real runs measured, and the same kept within bounds: one odd machine state
    cannot make later plans reckless."""
    raw = statistics.median(values)
    return raw, max(low, min(high, raw))


def observe(
    ps_entry: Any,
    name: str,
    quant: str,
    ctx: int,
    predicted: int,
    gpus: int,
    predicted_tps: float = 0.0,
    observed_tps: float = 0.0,
) -> Observation:
    return Observation(
        name,
        quant,
        ctx,
        predicted,
        int(getattr(ps_entry, "size_vram", 0) or 0),
        int(getattr(ps_entry, "size", 0) or 0),
        gpus,
        time.time(),
        int(getattr(ps_entry, "context_length", 0) or 0),
        predicted_tps,
        observed_tps,
    )
