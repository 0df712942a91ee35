"""Where a model runs: which layers go to which GPU and what stays on the CPU, whether that fits the budget,
and the largest context that does."""

from ollama_fit.placement.offload import KIND_TEXT, Placement, Shortfall, max_context, place, place_ngl, shortfall

__all__ = ["KIND_TEXT", "Placement", "Shortfall", "max_context", "place", "place_ngl", "shortfall"]
