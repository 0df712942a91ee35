"""Helpers for planner tests: a simulated machine, a plan of it, and the check that a pick fits."""

from __future__ import annotations

from typing import Any

from ollama_fit.hardware.model import Hardware, ProbeReport, budget
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.model.catalog import catalog
from ollama_fit.plan.planner import Plan, PlanRequest, plan


def simulated(here: Hardware, *gpus: str, vram: tuple[str, ...] = (), ram: str | None = None) -> ProbeReport:
    """`--gpu`/`--vram`/`--ram` on top of `here` (the machine the simulation starts from), with its budget."""
    hw = simulate(Simulation(gpus=gpus, vram=vram, ram=ram), lambda: here)
    return ProbeReport(hw, budget(hw))


def run(rep: ProbeReport, **kw: Any) -> Plan:
    return plan(rep, PlanRequest(**kw), catalog())


def assert_fits(p: Plan) -> None:
    """Every GPU of the pick stays inside its budget, and the host part (on unified memory: the GPU part
    too, one pool) inside the RAM budget."""
    mem = p.choice.placement.memory
    budgets = {g.index: g for g in p.report.budget.gpus}
    for dev, index in zip(mem.gpus, p.choice.placement.gpu_indices, strict=True):
        assert dev.total_bytes <= budgets[index].usable_bytes
    pool = mem.host_required_bytes + (mem.device_bytes if p.report.budget.unified_memory else 0)
    assert pool <= p.report.budget.host.usable_bytes
