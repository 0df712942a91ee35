"""Human-readable text for each command's result. Pure string building: the command decides where it goes.

Layout: the command passes the terminal's width (80 columns when unknown) and a `paint(text, color)` that colors
only on a terminal without NO_COLOR. Tables shrink their widest columns and wrap cells inside them; prose
lines wrap at spaces with indented continuation lines. Widths count what shows, not color codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollama_fit.cli.text import Paint, fit, plain, table
from ollama_fit.hardware.known import AppleChip, KnownGpu
from ollama_fit.hardware.model import Gpu, ProbeReport
from ollama_fit.units import GiB, human


def _gpu_details(g: Gpu) -> str:
    parts = [g.backend.upper()]
    if g.compute_capability:
        parts.append(f"CC {g.compute_capability}")
    if g.mig_parent is not None:
        parts.append(f"MIG of GPU {g.mig_parent}")
    if g.unified_memory:
        parts.append("unified memory")
    return ", ".join(parts)


def _bandwidth(value: float | None) -> str:
    return f"{value:g} GB/s" if value else "? GB/s"


def render_probe(report: ProbeReport, width: int | None = None) -> str:
    hw, bud = report.hardware, report.budget
    out = [f"Hardware ({hw.source})"]
    if hw.gpus:
        out.append(
            table(
                [
                    [
                        f"GPU {g.index}",
                        g.name,
                        f"{human(g.memory_total_bytes)} total",
                        f"{human(g.memory_free_bytes)} free",
                        _bandwidth(g.bandwidth_gbs),
                        _gpu_details(g),
                    ]
                    for g in hw.gpus
                ],
                width=width,
            )
        )
    else:
        out.append("  No GPU found: models will run on the CPU, from RAM.")
    cores = f", {hw.cpu.physical_cores} cores" if hw.cpu.physical_cores else ""
    out.append(
        f"  RAM    {human(hw.ram_total_bytes)} total, {human(hw.ram_available_bytes)} available"
        f"   CPU: {hw.cpu.model}{cores}"
    )
    if hw.driver_version:
        cuda = f", CUDA {hw.cuda_driver_version}" if hw.cuda_driver_version else ""
        out.append(f"  NVIDIA driver {hw.driver_version}{cuda}")
    if hw.apple:
        a = hw.apple
        out.append(
            f"  Apple {a.chip}: GPU may use {human(a.gpu_limit_bytes)} of {human(a.ram_bytes)} ({a.gpu_limit_source})"
        )
    out.append("")
    out.append("Budget (what a model may use: free memory minus the headroom kept)")
    rows = [
        [
            d.name,
            f"{human(d.free_bytes)} free",
            f"- {human(d.headroom_bytes)} headroom",
            f"= {human(d.usable_bytes)}",
        ]
        for d in (*bud.gpus, bud.host)
    ]
    out.append(table(rows, width=width))
    notes = (*hw.notes, *bud.notes)
    if notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in notes)
    return fit(out, width)


def render_known_gpus(gpus: Sequence[KnownGpu], chips: Sequence[AppleChip], width: int | None = None) -> str:
    rows = [[g.name, g.vendor, g.segment, f"{g.memory_bytes / GiB:g} GiB", f"{g.bandwidth_gbs:g} GB/s"] for g in gpus]
    for c in chips:
        cores = f" ({c.gpu_cores}-core GPU)" if c.gpu_cores else ""
        sizes = "/".join(str(s) for s in c.memory_gb)
        rows.append([f"Apple {c.chip}{cores}", "apple", "unified", f"{sizes} GB", f"{c.bandwidth_gbs:g} GB/s"])
    return table(rows, header=["name", "vendor", "segment", "memory", "bandwidth"], width=width)


# ----- plans -----

# the program a Runtime describes, as a reader knows it
RUNNERS = {
    "llama-server": "llama-server",
    "ollama-engine": "Ollama's Go engine",
    "ollama": "Ollama's llama.cpp runner",
    "llama-completion": "llama-completion",
}
BAR_CHARS = {"utf-8": ("█", "▓", "▒", "░", "·"), "ascii": ("#", "=", "+", "-", ".")}
BAR_COLORS = ("blue", "magenta", "yellow", "cyan", "")  # weights, KV, compute, overhead; free stays plain
BAR_WIDTH = 36


def memory_bar(
    parts: Sequence[int], capacity: int, width: int = BAR_WIDTH, charset: str = "utf-8", paint: Paint = plain
) -> str:
    """[weights|kv+state|compute|overhead|free] scaled to the device's usable memory; '!' marks an overflow."""
    chars = BAR_CHARS[charset]
    used = sum(parts)
    scale = max(capacity, used, 1)
    cells = [round(p / scale * width) for p in parts]
    runs, left = [], width
    for char, n in zip(chars[:4], cells, strict=True):
        runs.append((char, min(n, left)))
        left -= runs[-1][1]
    runs.append((chars[4], left))
    body = "".join(paint(c * n, color) if color else c * n for (c, n), color in zip(runs, BAR_COLORS, strict=True))
    return "[" + body + "]" + (paint("!", "red") if used > capacity else "")


def _bar_width(width: int | None, tail: int) -> int:
    """The memory bar shrinks (to 10) so that `  GPU 0  [bar]  <tail>` fits the line."""
    return BAR_WIDTH if width is None else max(10, min(BAR_WIDTH, width - 13 - tail))


def _speed_text(speed: Any) -> str:
    if speed is None:
        return "speed unknown (no bandwidth figure)"
    if speed.upper_bound:
        return f"at most ~{speed.tps:.0f} tok/s (a GPU's bandwidth is unknown)"
    return f"~{speed.tps:.0f} tok/s ({speed.low:.0f}-{speed.high:.0f})"


def _state(dev: Any) -> str:
    return f"  state {human(dev.state_bytes)}" if dev.state_bytes else ""


def _projector_bytes(plan: Any, device: str) -> int:
    """The vision projector's weights on `device` ("GPU 0", "RAM", "pool"): in the bar with the model's weights,
    and back in the capacity, since the plan kept them out of that device's budget."""
    p = getattr(plan, "projector", None)
    if p is None:
        return 0
    return p.size if device in (p.device, "pool") else 0


def _projector_text(extra: int) -> str:
    return f"  projector {human(extra)}" if extra else ""


def _device_lines(plan: Any, charset: str, width: int | None = None, paint: Paint = plain) -> list[str]:
    mem = plan.choice.placement.memory
    budgets = {g.index: g for g in plan.report.budget.gpus}
    lines = []
    for dev, index in zip(mem.gpus, plan.choice.placement.gpu_indices, strict=True):
        b = budgets[index]
        extra = _projector_bytes(plan, f"GPU {index}")
        parts = [dev.weights_bytes + extra, dev.kv_bytes + dev.state_bytes, dev.compute_bytes, dev.overhead_bytes]
        usable, used = b.usable_bytes + extra, dev.total_bytes + extra
        tail = f"{human(used)} of {human(usable)} usable ({dev.layers} layers)"
        bar = memory_bar(parts, usable, _bar_width(width, len(tail)), charset, paint)
        lines.append(f"  GPU {index}  {bar}  {tail}")
        lines.append(
            f"         weights {human(dev.weights_bytes)}{_projector_text(extra)}  KV {human(dev.kv_bytes)}"
            f"{_state(dev)}  compute {human(dev.compute_bytes)}  overhead {human(dev.overhead_bytes)}  "
            f"free {human(usable - used)}"
        )
    host = mem.host
    hb = plan.report.budget.host
    if plan.report.budget.unified_memory:
        return lines + _pool_lines(mem, hb, charset, width, paint, _projector_bytes(plan, "pool"))
    extra = _projector_bytes(plan, "RAM")
    parts = [host.weights_bytes + extra, host.kv_bytes + host.state_bytes, host.compute_bytes, host.overhead_bytes]
    parts[0] -= host.evictable_bytes
    usable, used = hb.usable_bytes + extra, host.required_bytes + extra
    tail = f"{human(used)} of {human(usable)} usable" + _ram_layers(mem, host.layers)
    lines.append(f"  RAM    {memory_bar(parts, usable, _bar_width(width, len(tail)), charset, paint)}  {tail}")
    lines.append(
        f"         {_host_weights_text(host)}{_projector_text(extra)}  KV {human(host.kv_bytes)}"
        f"{_state(host)}  compute {human(host.compute_bytes)}  free {human(usable - used)}"
    )
    return lines


LARGE_DOWNLOAD = 60 * 10**9  # said plainly from here on: hours on a home connection, the disk twice over
ASSUMED_LINK = 100 * 10**6  # bytes/s for the time a download takes (a 1 Gbit/s line at most of its rate)


def _large_download_lines(size: int, indent: str = "         ") -> list[str]:
    if size < LARGE_DOWNLOAD:
        return []
    minutes = size / ASSUMED_LINK / 60
    took = f"{minutes / 60:.1f} hours" if minutes >= 90 else f"{minutes:.0f} minutes"
    return [f"{indent}a {human(size)} download: about {took} at 100 MB/s, and as much disk again for Ollama's copy"]


def _first_token_lines(plan: Any) -> list[str]:
    """The wait for the first token of a long prompt (coding and RAG paste thousands of tokens)."""
    from ollama_fit.speed.prompt import PROMPT_TOKENS

    prompt = plan.prompt_speed
    if prompt is None:
        return []
    wait = PROMPT_TOKENS / prompt.tps
    slow, fast = PROMPT_TOKENS / prompt.low, PROMPT_TOKENS / prompt.high
    return [
        f"         first token after ~{_seconds(wait)} ({_seconds(fast)} to {_seconds(slow)}) for a "
        f"{PROMPT_TOKENS // 1024}k-token prompt (~{prompt.tps:.0f} prompt tok/s)"
    ]


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def _ram_layers(mem: Any, layers: int) -> str:
    """What of the model the RAM holds, in layers: whole ones, and those llama.cpp's fit split (routed experts
    or part of the feed-forward in RAM)."""
    parts = [f"{layers} layers"] if layers else []
    experts = mem.cpu_expert_layers
    if experts:
        parts.append(f"experts of {len(experts)} layers")
    split = [m.layer for m in mem.moves if m.fraction != "moe" and m.to is None]
    if split:
        parts.append(f"feed-forward of layer {split[0]}")
    return f" ({', '.join(parts)})" if parts else ""


def _host_weights_text(host: Any) -> str:
    """The weights in RAM as a user reads them: with mmap, the mapped file plus llama.cpp's repacked copy of
    some tensors, whose pages in the file are page cache the OS may drop (so they count once in the bar)."""
    if not host.evictable_bytes:
        return f"weights {human(host.weights_bytes)}"
    repacked = host.evictable_bytes
    return (
        f"weights {human(host.weights_bytes - repacked)} mapped file + {human(repacked)} repacked copy (its "
        f"{human(repacked)} of the file's pages are cache the OS may drop)"
    )


def _pool_lines(mem: Any, pool: Any, charset: str, width: int | None, paint: Paint, extra: int = 0) -> list[str]:
    """Unified memory: the GPU's share and the host's part out of one pool, shown as one figure (`extra`: the
    projector, beside the model's weights)."""
    used = mem.device_bytes + mem.host_required_bytes + extra
    devices = (*mem.gpus, mem.host)
    parts = [sum(getattr(d, k) for d in devices) for k in ("weights_bytes", "kv_bytes", "compute_bytes")]
    parts[0] += extra - mem.host.evictable_bytes
    parts[1] += sum(d.state_bytes for d in devices)
    parts.append(sum(d.overhead_bytes for d in devices))
    tail = f"{human(used)} of {human(pool.usable_bytes)} usable (one pool)"
    return [
        f"  Pool   {memory_bar(parts, pool.usable_bytes, _bar_width(width, len(tail)), charset, paint)}  {tail}",
        f"         GPU share {human(mem.device_bytes)}  rest {human(mem.host_required_bytes)}"
        f"{_projector_text(extra)}  free {human(pool.usable_bytes - used)}  (+{human(pool.headroom_bytes)} kept)",
    ]


def _memory_text(mem: Any, unified: bool) -> str:
    if unified:
        return f"unified {human(mem.device_bytes + mem.host_required_bytes)}"
    if mem.gpus:
        return f"GPU {human(mem.device_bytes)} + RAM {human(mem.host_required_bytes)}"
    return f"RAM {human(mem.host_required_bytes)}"


def _vision_lines(plan: Any) -> list[str]:
    """The projector that comes with the pick, and where its weights go (kept out of that device's budget)."""
    p = plan.projector
    if p is None:
        return []
    return [f"         vision: yes (+{human(p.size)} on {p.device}, {p.name})"]


def render_plan(plan: Any, charset: str = "utf-8", width: int | None = None, paint: Paint = plain) -> str:
    from ollama_fit.model.quants import quant_table
    from ollama_fit.placement.offload import KIND_TEXT

    c = plan.choice
    hw = plan.report.hardware
    where = ", ".join(g.name for g in hw.gpus) or "CPU only"
    q = quant_table()[c.quant]
    src = c.to_dict()["source"]
    files = ", ".join(src["files"]) or f"{src['pattern']} (split into shards)"
    legend = zip(BAR_CHARS[charset], BAR_COLORS, ("weights", "KV", "compute", "overhead", "free"), strict=True)
    out = [
        f"Plan for {plan.task} on {where} ({hw.source})",
        "",
        f"  Pick   {paint(f'{c.model.name}  {c.quant}', 'green')}  ctx {c.ctx}  {KIND_TEXT[c.placement.kind]}",
        f"         {_speed_text(c.placement.speed)}   quality loss {q.quality_loss} ({q.source})   "
        f"license {c.model.license}",
        f"         hf.co/{src['repo']}  {files}",
        *_large_download_lines(src["file_bytes"]),
        *_first_token_lines(plan),
        *_vision_lines(plan),
        "",
        "Memory (" + " ".join(f"{paint(ch, color) if color else ch} {part}" for ch, color, part in legend) + ")",
        *_device_lines(plan, charset, width, paint),
    ]
    if plan.alternatives:
        out += ["", "Alternatives"]
        rows = []
        for a in plan.alternatives:
            mem = a.placement.memory
            rows.append(
                [
                    a.model.name,
                    a.quant,
                    str(a.ctx),
                    KIND_TEXT[a.placement.kind],
                    _memory_text(mem, plan.report.budget.unified_memory),
                    _speed_text(a.placement.speed),
                ]
            )
        out.append(table(rows, header=["model", "quant", "ctx", "where", "memory", "speed"], indent=4, width=width))
    out += ["", "Why"] + [f"  - {r}" if not r.startswith("  ") else f"    {r.strip()}" for r in plan.reasons]
    notes = (*plan.warnings,)
    if notes:
        out += ["", "Warnings"] + [f"  {paint('!', 'yellow')} {w}" for w in notes]
    return fit(out, width)


# ----- inspect -----


def render_inspection(insp: Any, width: int | None = None, paint: Paint = plain) -> str:
    from ollama_fit.placement.offload import KIND_TEXT, Placement
    from ollama_fit.plan.inspect import summarize

    m = summarize(insp.spec)
    rt = insp.runtime
    experts = f", {m['experts']} experts ({m['experts_used']} active)" if m["experts"] else ""
    window = f", sliding window {m['sliding_window']}" if m["sliding_window"] else ""
    out = [
        f"{m['name'] or insp.ref} ({m['architecture']}): {m['params'] / 1e9:.2f}B parameters{experts}",
        f"  {m['layers']} layers, embedding {m['embedding_length']}, {m['heads']} heads / {m['kv_heads']} KV heads "
        f"x {m['key_length']}, vocabulary {m['vocab_size']}, trained context {m['context_length']}{window}",
        f"  chat template: {'yes' if m['chat_template'] else 'no'}   tied embeddings: "
        f"{'yes' if m['tied_embeddings'] else 'no'}   header read: {human(insp.header_bytes_read)} ({insp.source})",
        *[f"  {note}" for note in m["notes"]],
        "",
        f"Memory at ctx {rt.ctx}, KV {rt.kv_type}, flash attention {'on' if rt.flash_attn else 'off'}, "
        f"{rt.parallel} slot(s), batch {rt.ubatch}, {RUNNERS.get(rt.runner, rt.runner)}"
        + (f", -ngl {insp.gpu_layers}" if insp.gpu_layers is not None else "")
        + ":",
    ]
    bound = "" if m["memory_model"] == "modelled" else " (bound)"
    rows = []
    for q in insp.quants:
        p = q.placement
        if isinstance(p, Placement):
            mem = p.memory
            rows.append(
                [
                    q.quant,
                    human(q.file_bytes),
                    human(mem.device_bytes),
                    human(mem.host_required_bytes),
                    human(mem.kv_bytes) + bound,
                    human(mem.state_bytes) + bound,
                    paint("yes", "green"),
                    KIND_TEXT[p.kind] + _fit_text(p),
                ]
            )
        else:
            short = f"{human(p.missing_bytes)} short on {p.device}"
            rows.append([q.quant, human(q.file_bytes), "", "", "", "", paint("no", "red"), short])
    out.append(table(rows, header=["quant", "file", "GPU", "RAM", "KV", "state", "fits", "where"], width=width))
    return fit(out, width)


def _fit_text(p: Any) -> str:
    """llama.cpp's fit decision in its own terms, where it split the model."""
    if p.fit is None or p.fit.status == "no-change":
        return ""
    parts = [f"-ngl {p.ngl}"]
    if p.memory.cpu_expert_layers:
        parts.append(f"experts of {len(p.memory.cpu_expert_layers)} layers in RAM")
    if p.partial_layer:
        parts.append(f"layer {p.partial_layer['layer']} keeps {p.partial_layer['keeps']}")
    return f" ({', '.join(parts)})"


# ----- pull -----


def _fetched_text(result: Any) -> str:
    """Both figures when part was already on disk: what came over the network now, and the whole."""
    done = result.to_dict()
    if done["reused"]:
        return "already in the cache (verified)"
    got, total = done["downloaded_bytes"], result.target.total_bytes
    if 0 < got < total:
        return f"downloaded {human(got)} of {human(total)} ({human(total - got)} were already on disk), sha256 verified"
    return f"downloaded {human(got)}, sha256 verified"


def render_pull(result: Any, width: int | None = None) -> str:
    done = result.to_dict()
    reg = result.registration
    lines = []
    if reg is not None and reg.status == "unchanged":
        lines.append(f"{reg.name} is already registered from these files: nothing to do")
    elif reg is not None and reg.status == "updated":
        lines.append(f"{reg.name} is registered from these files: updated {', '.join(reg.changes)}")
    elif result.fetched:
        lines.append(f"{result.target.repo} {result.target.quant.label}: {_fetched_text(result)}")
        if reg is None or not reg.freed_bytes:
            lines += [f"  {path}" for path in done["local_files"]]
    if reg is not None and reg.status not in ("unchanged", "updated"):
        lines.append(
            f"registered with Ollama {reg.server.version} as {reg.name} ({reg.status}), "
            f"num_ctx {reg.parameters.get('num_ctx')}"
        )
        if reg.freed_bytes:
            lines.append(f"removed the downloaded copy: {human(reg.freed_bytes)} freed (Ollama keeps its own)")
    if reg is not None and result.target.projector is not None and reg.status not in ("unchanged", "updated"):
        lines.append(f"with its vision projector {result.target.projector.name}: images work in Ollama")
    if reg is not None:
        lines.append(f"run it: ollama run {reg.name}")
    return fit(lines, width)


def render_confirmation(prep: Any, width: int | None = None) -> tuple[str, str]:
    """What `auto` is about to do, and the question: the bytes still to download, where they go, the model
    name Ollama gets."""
    t = prep.target
    total = t.total_bytes
    files = ", ".join(f.path for f in t.files)
    if prep.missing_bytes == 0:
        size = f"nothing: all {human(total)} are already in the cache"
    elif prep.missing_bytes < total:
        have = total - prep.missing_bytes
        size = f"{human(prep.missing_bytes)}, the rest of {human(total)} ({human(have)} is already on disk)"
    else:
        size = human(total)
    if prep.name is None:
        kept = "kept for llama-server"
    else:
        kept = "kept: --keep-gguf" if prep.keep else "removed once Ollama has its own copy"
    lines = [
        f"About to set up {t.model.name if t.model else t.repo} {t.quant.label}:",
        f"  download  {size}",
        *_large_download_lines(prep.missing_bytes, "            "),
        f"  from      hf.co/{t.repo}  {files}",
        f"  into      {prep.cache_dir} ({kept})",
    ]
    if prep.updates:  # ours, from these files: re-created from the blobs Ollama holds, nothing downloaded
        lines = [
            f"About to update {prep.name} in Ollama {prep.server.version} at {prep.server.host}:",
            f"  change    {', '.join(prep.updates)} (from the files Ollama already has; nothing to download)",
        ]
        return fit(lines, width), f"Update {prep.name} in Ollama?"
    if prep.name is not None:
        where = f", its copy in {prep.ollama_dir}" if prep.ollama_dir else ""
        lines.append(f"  create    {prep.name} in Ollama {prep.server.version} at {prep.server.host}{where}")
    if prep.name is None:
        question = f"Download {human(prep.missing_bytes)} for llama-server?"
    elif prep.missing_bytes:
        question = f"Download {human(prep.missing_bytes)} and create {prep.name} in Ollama?"
    else:
        question = f"Create {prep.name} in Ollama from the cached copy?"
    return fit(lines, width), question


# ----- auto, doctor, list -----


def render_auto(result: Any, width: int | None = None, paint: Paint = plain) -> str:
    from ollama_fit.placement.offload import KIND_TEXT

    c = result.plan.choice
    if result.status == "dry-run":
        return "Dry run: nothing downloaded. Run `ollama-fit auto` to set it up."
    if result.status in ("needs-confirmation", "declined"):
        return ""  # the reason and the way forward were said on stderr
    lines = [render_pull(result.pull, width)] if result.pull else []
    if result.status == "unchanged":
        return "\n".join(lines)
    smoke = result.smoke
    if smoke is not None:
        if smoke.answered:
            predicted = f" (predicted ~{smoke.predicted_tps:.0f})" if smoke.predicted_tps else ""
            lines.append(f"smoke test: answered {smoke.text[:60]!r} at {smoke.tokens_per_second:.0f} tok/s{predicted}")
        else:
            lines.append(f"{paint('smoke test FAILED:', 'red')} {smoke.error}; the model stays registered. Check:")
            lines += [f"  - {h}" for h in smoke.hints]
    obs = result.observation
    if obs is not None:
        diff = obs.observed_vram_bytes - obs.predicted_device_bytes
        sign = "+" if diff >= 0 else "-"
        if obs.observed_ctx and obs.observed_ctx != obs.ctx:
            lines.append(f"note: Ollama runs it with a {obs.observed_ctx}-token context, not the planned {obs.ctx}")
        kept = "later plans on this machine use it" if result.observation_stored else "simulated hardware: not kept"
        lines.append(
            f"Ollama loaded {human(obs.observed_vram_bytes)} into VRAM; predicted "
            f"{human(obs.predicted_device_bytes)} ({sign}{human(abs(diff))}); {kept}"
        )
    blocks = [fit(lines, width)]
    if result.serve is not None:  # the command stays on one line, unwrapped, to be copied whole
        blocks.append(fit(["Run it with llama.cpp (" + KIND_TEXT[c.placement.kind] + "):"], width))
        blocks.append("  " + result.serve.shell(result.serve.argv or result.serve.hf_argv))
    done = fit([f"Done: {paint(f'{c.model.name} {c.quant}', 'green')}, context {c.ctx} tokens."], width)
    return "\n".join(blocks) + "\n\n" + done


def render_doctor(checks: Sequence[Any], paint: Any = lambda text, color: text) -> str:
    colors = {"ok": "green", "warn": "yellow", "fail": "red", "info": "blue"}
    rows = []
    for c in checks:
        rows.append(f"  {paint(f'[{c.status:4}]', colors[c.status])} {c.area:13} {c.detail}")
        if c.fix:
            rows.append(f"  {'':6} {'':13} fix: {c.fix}")
    return "\n".join(rows)


def render_catalog(rows: Sequence[Any], width: int | None = None, paint: Paint = plain) -> str:
    from ollama_fit.placement.offload import KIND_TEXT

    table_rows = []
    for r in rows:
        c = r.candidate
        if c is None:
            why = paint("too slow here" if r.too_slow else "does not fit", "red")
            table_rows.append([r.model.id, r.model.family, f"{r.model.params_b:g}B", "-", why, "", ""])
            continue
        mem = c.placement.memory
        need = f"GPU {human(mem.device_bytes)}" if mem.gpus else f"RAM {human(mem.host_required_bytes)}"
        speed = f"~{c.placement.speed.tps:.0f} tok/s" if c.placement.speed else "?"
        table_rows.append(
            [r.model.id, r.model.family, f"{r.model.params_b:g}B", c.quant, KIND_TEXT[c.placement.kind], need, speed]
        )
    return table(table_rows, header=["model", "family", "params", "quant", "where", "needs", "speed"], width=width)


def render_installed(rows: Sequence[Any], width: int | None = None, paint: Paint = plain) -> str:
    if not rows:
        return "Ollama has no models yet: `ollama-fit auto` sets one up."
    out = []
    for r in rows:
        fits = paint(*{True: ("yes", "green"), False: ("no", "red"), None: ("?", "yellow")}[r.fits])
        need = human(r.need_bytes) if r.need_bytes is not None else "?"
        out.append([r.name, human(r.size_bytes), str(r.ctx), need, fits, r.where])
    text = table(out, header=["name", "size", "ctx", "needs", "fits", "where"], width=width)
    drafts = [f"  {r.name}: {r.draft}" for r in rows if r.draft]
    return "\n".join([text, "", "Speculative decoding:", *drafts]) if drafts else text


# ----- probe --list-cpus -----


def render_known_cpus(cpus: Sequence[Any], memory: Sequence[Any], width: int | None = None) -> str:
    """The CPUs --cpu accepts by segment (cores, threads, the memory a plan assumes), then the memory table."""
    out: list[str] = []
    for segment in dict.fromkeys(c.segment for c in cpus):
        rows = [
            [c.name, f"{c.physical_cores}/{c.logical_cores}", c.default_memory.name, f"{c.bandwidth_gbs:g} GB/s"]
            for c in cpus
            if c.segment == segment
        ]
        out += [
            f"{segment.capitalize()} CPUs",
            table(rows, header=["", "cores/threads", "memory planned", "peak"], width=width),
            "",
        ]
    others = [f"{c.name}: {', '.join(m.name for m in c.memory[1:])}" for c in cpus if len(c.memory) > 1]
    if others:
        out += ["Also supported (give its peak as --ram-bandwidth): " + "; ".join(others) + ".", ""]
    configs = [
        [m.name, m.kind, f"{m.mts}", f"{m.channels} x {m.bus_bits}-bit", f"{m.bandwidth_gbs:g} GB/s"] for m in memory
    ]
    out += [
        "Memory configurations (peak = channels x bus width x MT/s)",
        table(configs, header=["", "type", "MT/s", "channels", "peak"], width=width),
    ]
    return fit(out, width)
