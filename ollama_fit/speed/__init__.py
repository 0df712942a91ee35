"""Decode speed: how many tokens per second a placement generates (model.py has the physics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollama_fit.hardware.model import Hardware
from ollama_fit.memory.estimate import MemoryEstimate
from ollama_fit.model.spec import ModelSpec
from ollama_fit.speed.devices import cpu_device, gpu_device
from ollama_fit.speed.model import token_seconds
from ollama_fit.speed.params import PARAMS, Params
from ollama_fit.speed.prompt import PROMPT_TOKENS, prompt_seconds_per_token
from ollama_fit.speed.work import stages

__all__ = ["FILL_TOKENS", "Speed", "decode_speed", "prompt_speed"]

FILL_TOKENS = 1024  # the speed quoted is the early part of a conversation: this many tokens in the cache


@dataclass(frozen=True)
class Speed:
    """A predicted decode speed: the point estimate, its range and how it was arrived at."""

    tps: float  # the point estimate, tokens per second
    low: float
    high: float
    assumptions: tuple[str, ...] = ()
    upper_bound: bool = False  # a device's bandwidth was unknown: its time was left out
    ratio: float = 1.0  # the factor learned from real runs here already applied (scaled)

    @property
    def modelled_tps(self) -> float:
        """The speed model's own estimate, before the learned ratio: what a new run is compared with."""
        return self.tps / self.ratio

    def to_dict(self) -> dict[str, Any]:
        return {
            "tps": round(self.tps, 1),
            "low": round(self.low, 1),
            "high": round(self.high, 1),
            "upper_bound": self.upper_bound,
            "assumptions": list(self.assumptions),
        }

    def scaled(self, ratio: float, note: str) -> Speed:
        """The same estimate times a ratio learned from real runs on this machine."""
        return Speed(
            self.tps * ratio,
            self.low * ratio,
            self.high * ratio,
            (*self.assumptions, note),
            self.upper_bound,
            self.ratio * ratio,
        )


def decode_speed(
    spec: ModelSpec,
    est: MemoryEstimate,
    hw: Hardware,
    gpu_indices: Sequence[int],
    fill_tokens: int = FILL_TOKENS,
    p: Params = PARAMS,
) -> Speed | None:
    """Tokens per second for this placement, with the range most measurements fall in; None when no device
    of the placement has a known bandwidth."""
    by_index = {g.index: g for g in hw.gpus}
    gpus = [gpu_device(by_index[i], hw, p) for i in gpu_indices]
    cpu = cpu_device(hw, p)
    parts = stages(spec, est, gpus, cpu, fill_tokens)
    timed = token_seconds(parts, p)
    if timed is None:
        return None
    seconds, partial = timed
    tps = 1 / seconds
    notes = sorted({a for s in parts for a in s.device.assumptions})
    if est.kv_cells > 2 * fill_tokens:
        full = token_seconds(stages(spec, est, gpus, cpu, est.kv_cells), p)
        if full is not None and seconds / full[0] < 0.9:
            notes.append(f"~{1 / full[0]:.0f} tok/s once the {est.kv_cells}-token context is full")
    low, high = p.range_low, p.range_high
    return Speed(tps, tps * low, tps * high, tuple(notes), upper_bound=partial)


def prompt_speed(
    spec: ModelSpec,
    est: MemoryEstimate,
    hw: Hardware,
    gpu_indices: Sequence[int],
    prompt: int = PROMPT_TOKENS,
    p: Params = PARAMS,
) -> Speed | None:
    """Prompt tokens per second for a `prompt`-token prompt, with the range of the held-out prompt rows;
    None when a device's throughput is unknown."""
    seconds = prompt_seconds_per_token(spec, est, hw, gpu_indices, prompt, p)
    if not seconds:
        return None
    tps = 1 / seconds
    return Speed(tps, tps * p.prompt_range_low, tps * p.prompt_range_high)
