"""Tasks and their quality floors (profiles/quants.toml [task.*], from the seed measurements)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ollama_fit.errors import InvalidInput, TaskRefused
from ollama_fit.model.quants import normalize_quant, quant_table
from ollama_fit.profiles import load_profile, require

EMERGENCY_QUANT = "Q2_K"


@dataclass(frozen=True)
class Task:
    """A task's quality floor and speed target (profiles/quants.toml)."""

    name: str
    capability: str
    floor: str  # default lowest quant
    lowest: str  # how far --min-quant may lower the floor
    sensitivity: str
    note: str
    min_speed: float = 0.0  # tokens/s a pick must reach (0: no target)
    refuse: str | None = None


@cache
def tasks() -> dict[str, Task]:
    table = load_profile("quants").get("task", {})
    out = {}
    for name, entry in table.items():
        where = f"quants.toml task.{name}"
        out[name] = Task(
            name=name,
            capability=require(entry, "capability", str, where),
            floor=require(entry, "floor", str, where),
            lowest=require(entry, "lowest", str, where),
            sensitivity=require(entry, "sensitivity", str, where),
            note=require(entry, "note", str, where),
            min_speed=float(require(entry, "min_speed", int | float, where)),
            refuse=entry.get("refuse"),
        )
    return out


def loss(quant: str) -> float:
    """Upper end of the quality-loss range: the yardstick for 'at least as good as'."""
    return quant_table()[quant].quality_loss_max_pct


def meets(quant: str, floor: str) -> bool:
    return loss(quant) <= loss(floor)


def get_task(name: str) -> Task:
    task = tasks().get(name.lower())
    if task is None:
        raise InvalidInput(f"unknown task {name!r}", hint=f"tasks: {', '.join(tasks())}")
    if task.refuse:
        raise TaskRefused(task.refuse, hint=task.note)
    return task


def floor_for(task: Task, min_quant: str | None) -> tuple[str, list[str]]:
    """The floor quant for this request and any warnings. --min-quant may raise the floor freely, and
    lower it only as far as the task allows (Q2_K being an emergency that always warns)."""
    if min_quant is None:
        return task.floor, []
    wanted = normalize_quant(min_quant)
    if loss(wanted) > loss(task.lowest):
        raise InvalidInput(
            f"--min-quant {wanted} is too aggressive for the {task.name} task",
            hint=f"{task.note}; the lowest allowed is {task.lowest}",
        )
    warnings = []
    if wanted == EMERGENCY_QUANT:
        warnings.append("Q2_K allowed by --min-quant: expect 15-25% quality loss (for emergencies only)")
    return wanted, warnings
