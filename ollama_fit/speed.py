"""Decode speed: memory bandwidth over the bytes read per generated token.

Every token reads the active weights once and, on average, half of a full KV cache. Efficiencies are
rules of thumb for llama.cpp (0.5-0.85 of peak bandwidth), not measurements: the range is shown with the
figure. RAM bandwidth is unknown from probing; 50 GB/s (dual-channel DDR5) is assumed unless a saved
probe says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_RAM_BANDWIDTH_GBS = 50.0
EFFICIENCY = (0.5, 0.7, 0.85)  # low, central, high share of peak bandwidth


@dataclass(frozen=True)
class Speed:
    tps: float  # central estimate, tokens per second
    low: float
    high: float
    assumptions: tuple[str, ...] = ()
    upper_bound: bool = False  # a device's bandwidth was unknown: its time was left out

    def to_dict(self) -> dict[str, Any]:
        return {
            "tps": round(self.tps, 1),
            "low": round(self.low, 1),
            "high": round(self.high, 1),
            "upper_bound": self.upper_bound,
            "assumptions": list(self.assumptions),
        }


def decode_speed(parts: Sequence[tuple[int, int, float | None]], assumptions: Sequence[str] = ()) -> Speed | None:
    """parts: (active weight bytes, KV bytes, bandwidth GB/s) per device a token passes through, in order.
    Devices run one after the other (layer split), so their times add up. A device of unknown bandwidth is
    left out, which makes the figure an upper bound; None when no device's bandwidth is known."""
    known = [p for p in parts if p[2]]
    if not known:
        return None
    fast = sum(w / (bw * 1e9) for w, _, bw in known if bw)  # empty cache
    mid = sum((w + kv / 2) / (bw * 1e9) for w, kv, bw in known if bw)
    slow = sum((w + kv) / (bw * 1e9) for w, kv, bw in known if bw)  # full cache
    if mid <= 0:
        return None
    lo, central, hi = EFFICIENCY
    partial = len(known) < len(parts)
    return Speed(central / mid, lo / slow, hi / fast, tuple(assumptions), upper_bound=partial)
