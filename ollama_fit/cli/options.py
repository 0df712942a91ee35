"""The option groups every command shares, and what they become before a command runs: `hardware` (a
Simulation), `request` (a PlanRequest), the probe report, the lessons of earlier loads and the Hub for exact
plans. Values are checked the same way for every command (validate.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ollama_fit import config

F = TypeVar("F", bound=Callable[..., Any])


def _apply(fn: Callable[..., Any], options: list[Callable[[Any], Any]]) -> Any:
    for option in reversed(options):
        fn = option(fn)
    return fn


def hardware_options(fn: F) -> F:
    """--gpu/--vram/--ram/--cpu/--ram-bandwidth/--hardware/--headroom, packed into `hardware` (a Simulation)."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        gpus: tuple[str, ...],
        vram: tuple[str, ...],
        ram: str | None,
        cpu: str | None,
        ram_bandwidth: float | None,
        hardware_file: Path | None,
        headroom: str,
        ram_headroom: str | None,
        **kwargs: Any,
    ) -> Any:
        from ollama_fit.hardware.simulate import Simulation

        hardware = Simulation(gpus, vram, ram, hardware_file, headroom, ram_headroom, cpu, ram_bandwidth)
        return fn(*args, hardware=hardware, **kwargs)

    return _apply(
        wrapper,
        [
            click.option(
                "--gpu",
                "gpus",
                multiple=True,
                metavar="NAME",
                help='Plan for a known card, not this one: "RTX 4090", "2x RTX 3090", "M3 Max 128GB".',
            ),
            click.option(
                "--vram",
                multiple=True,
                metavar="SIZE",
                help="Plan for a GPU with this much memory: 24GiB; repeat, or 2x24GiB, for several.",
            ),
            click.option("--ram", metavar="SIZE", help="Plan with this much RAM instead of this machine's."),
            click.option(
                "--cpu",
                metavar="NAME",
                help='Plan for a known CPU ("Ryzen 9 7950X", "i9-13900K", "EPYC 9654"; `probe --list-cpus`): its '
                "cores, and the peak bandwidth of the fastest memory it supports. Without --gpu, --vram or "
                "--hardware the plan is CPU-only (this machine's GPUs are left out).",
            ),
            click.option(
                "--ram-bandwidth",
                type=float,
                metavar="GBS",
                help="Peak RAM bandwidth in GB/s (channels x 8 bytes x MT/s: 89.6 for dual-channel DDR5-5600) of the "
                "CPU planned for, over --cpu's; alone, a CPU-only plan with a default 8-core CPU. Wins over "
                "OLLAMA_FIT_RAM_BANDWIDTH_GBS, which sets only this machine's.",
            ),
            click.option(
                "--hardware",
                "hardware_file",
                type=click.Path(path_type=Path),
                metavar="FILE.json",
                help="Plan for the machine a saved `probe --json` describes.",
            ),
            click.option(
                "--headroom",
                default="1GiB",
                show_default=True,
                metavar="SIZE",
                help="Memory left free on each GPU (llama.cpp's own fitting keeps 1 GiB).",
            ),
            click.option(
                "--ram-headroom",
                metavar="SIZE",
                help="RAM kept for the system and the desktop when a model runs from RAM or unified memory "
                "(default: an eighth of the RAM, at least 2 GiB).",
            ),
        ],
    )


# one --draft for plan, auto, pull and inspect (0 or more: click refuses the rest as a usage error)
draft_option = click.option(
    "--draft",
    default=0,
    type=click.IntRange(min=0),
    metavar="N",
    help="Speculative decoding with the model's own prediction (MTP) block, N tokens a step (Ollama's "
    "draft_num_predict, 0.30 and newer): planned with its memory and registered with it. Only for a GGUF that "
    "carries the block. Default 0: off, as in Ollama.",
)


def plan_options(fn: F) -> F:
    """What to plan for, packed into `request` (a PlanRequest)."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        task: str,
        ctx: str | None,
        kv_type: str,
        flash_attn: str,
        min_quant: str | None,
        family: str | None,
        model_id: str | None,
        min_speed: float | None,
        parallel: int,
        ollama_version: str | None,
        text_only: bool,
        draft: int,
        **kwargs: Any,
    ) -> Any:
        from ollama_fit.plan.planner import DEFAULT_CTX, PlanRequest
        from ollama_fit.runtime.ollama import NEWEST, parse_version
        from ollama_fit.validate import at_least_one, parse_ctx
        from ollama_fit.validate import min_speed as check_speed

        request = PlanRequest(
            task=task,
            ctx=DEFAULT_CTX if ctx is None else parse_ctx(ctx),
            ctx_auto=ctx is None,
            kv_type=kv_type,
            flash_attn=None if flash_attn == "auto" else flash_attn == "on",
            min_quant=min_quant,
            family=family,
            min_speed=None if min_speed is None else check_speed(min_speed),
            parallel=at_least_one(parallel, "--parallel"),
            model=model_id,
            ollama=parse_version(ollama_version) if ollama_version else NEWEST,
            ollama_from="option" if ollama_version else "newest",
            vision=not text_only,
            draft=draft,
        )
        return fn(*args, request=request, **kwargs)

    return _apply(
        wrapper,
        [
            click.option(
                "--task",
                default="chat",
                show_default=True,
                metavar="TASK",
                help="chat, summarization, translation, instructions, coding, reasoning, math, creative, "
                "planning, numerical, recall, evaluation, embedding.",
            ),
            click.option(
                "--ctx",
                metavar="TOKENS|max",
                help="Context length per request (8192, 32k), or 'max' for the largest that fits. Default: what "
                "Ollama gives a model on this machine (32k with 23 GiB of VRAM, 256k with 47 GiB), or the largest "
                "step of that which fits, but at least 8192.",
            ),
            click.option(
                "--kv-type",
                default="f16",
                show_default=True,
                type=click.Choice(["f16", "q8_0", "q4_0"]),
                help="KV cache type (a quantized cache needs flash attention).",
            ),
            click.option(
                "--flash-attn",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", "on", "off"]),
                help="Flash attention; auto = on where the GPUs support it.",
            ),
            click.option(
                "--min-quant",
                metavar="QUANT",
                help="Lowest quant allowed: raises the task's floor, or lowers it as far as the task allows.",
            ),
            click.option("--family", metavar="FAMILY", help="Only this model family (qwen3, llama3, gemma3, ...)."),
            click.option("--model", "model_id", metavar="ID", help="Only this catalog model (e.g. qwen3:8b)."),
            click.option(
                "--min-speed",
                type=float,
                metavar="TOK/S",
                help="The decode speed a pick must reach (default: the task's target, 10 for chat, 20 for "
                "coding and reasoning); 0 turns it off.",
            ),
            click.option(
                "--parallel",
                default=1,
                show_default=True,
                type=int,
                help="Requests served at once (OLLAMA_NUM_PARALLEL): each gets its own context.",
            ),
            click.option(
                "--ollama-version",
                metavar="VERSION",
                help="Plan for this Ollama (0.13 or newer; default: the running server's for auto and pull, "
                "else the newest modelled). Ignored with --target llama.cpp.",
            ),
            draft_option,
            click.option(
                "--text-only",
                is_flag=True,
                help="Leave out the vision projector a multimodal model's repository publishes (it is pulled and "
                "registered with the model by default, for Ollama 0.30 and newer).",
            ),
        ],
    )


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (sizes in bytes) instead of a table.")(fn)


def verbose_debug(message: str, *args: Any) -> None:
    """A debug line under -v (which configures logging); without it, logging is not even imported."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and (ctx.find_root().obj or {}).get("verbose"):
        import logging

        logging.getLogger("ollama_fit").debug(message, *args)


def report_for(hardware: Any, *, remeasure: bool = False) -> Any:
    from ollama_fit.hardware.probe import Probes, probe
    from ollama_fit.hardware.simulate import hardware_report

    simulated = hardware.replaces_devices  # then only RAM is read here: the CPU is named or assumed
    probes = Probes(gpus=False, ram_bandwidth=lambda *_: None) if simulated else Probes(remeasure=remeasure)
    report = hardware_report(hardware, lambda: probe(probes))
    verbose_debug("hardware: %s", report.hardware)
    return report


def learned(request: Any, report: Any, hardware: Any) -> Any:
    """Plans on this machine (not simulated ones) add what real loads here taught (ollama/learning.py)."""
    if report.hardware.simulated:
        return request
    from dataclasses import replace

    from ollama_fit.ollama.learning import Observations

    observations = Observations.load(config.state_dir())
    correction, note = observations.correction(report.hardware)
    ratio, speed_note = observations.speed_ratio(report.hardware)
    return replace(
        request, overhead_correction=correction, correction_note=note, speed_ratio=ratio, speed_note=speed_note
    )


def hub_for_plans(offline: bool) -> Any:
    """The Hub for exact figures, unless offline (flag or HF_HUB_OFFLINE): then the catalog alone, no import."""

    if offline or config.hf_offline():
        return None
    from ollama_fit.hub.repos import Hub

    # two attempts: a plan falls back to the catalog's shapes rather than wait out a struggling Hub
    return Hub(config.hf_endpoint(), config.hf_token(), timeout=config.hub_timeout(5.0), retries=2)


def connections_option(fn: F) -> F:
    return click.option(
        "--connections",
        default=config.DOWNLOAD_CONNECTIONS,
        show_default=True,
        type=click.IntRange(1, 64),
        metavar="N",
        help="Download each large file over N ranged connections at once (1: one stream).",
    )(fn)


def register_options(fn: F) -> F:
    """How the model is registered (or run with llama.cpp instead)."""
    return _apply(
        fn,
        [
            click.option(
                "--name",
                metavar="NAME",
                help="The Ollama model name (default: family:size-quant, e.g. qwen3:8b-q4_k_m).",
            ),
            click.option("--force", is_flag=True, help="Replace an existing Ollama model of that name."),
            click.option("--keep-gguf", is_flag=True, help="Keep the downloaded file after Ollama has its own copy."),
            click.option(
                "--target",
                "runner",
                default="ollama",
                show_default=True,
                type=click.Choice(["ollama", "llama.cpp"]),
                help="Register with Ollama, or keep the file and print the llama-server command.",
            ),
        ],
    )


def target_options(fn: F) -> F:
    return _apply(
        fn,
        [
            click.argument("ref", required=False),
            click.option(
                "--quant", metavar="QUANT", help="The quant (default: the plan's pick; Q4_K_M for hf.co refs)."
            ),
        ],
    )


def needs_ctx(request: Any, ref: str | None, quant: str | None, command: str) -> None:
    """--ctx max asks the planner for the largest context that fits: without a plan (an hf.co reference, or a
    catalog model at a named --quant) there is nothing to size it, so ask for tokens instead of guessing."""
    from ollama_fit.errors import InvalidInput

    planned = ref is None or ("/" not in ref and quant is None)
    if request.ctx is None and not planned:
        raise InvalidInput(
            f"--ctx max is not available for {command} {ref}{f' --quant {quant}' if quant else ''}: no plan sizes it",
            hint=f"give the context in tokens (8192, 32k); `ollama-fit inspect {ref}` shows what fits",
        )
