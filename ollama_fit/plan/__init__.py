"""Choosing what to run: task floors, the planner and its reasons and remedies, exact re-planning from the
pick's own header, `inspect`, `list` and the Apple wired-memory advice."""

from ollama_fit.plan.planner import Candidate, Plan, PlanRequest, plan

__all__ = ["Candidate", "Plan", "PlanRequest", "plan"]
