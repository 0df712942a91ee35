"""Human-readable text for the CLI. Pure string building: cli.py decides where the text goes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollama_fit.hardware.known import AppleChip, KnownGpu
from ollama_fit.hardware.model import Gpu, ProbeReport
from ollama_fit.units import GiB, human


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None, indent: int = 2) -> str:
    """Left-aligned columns; numbers are pre-formatted by the caller."""
    all_rows = [list(header)] if header else []
    all_rows += [list(r) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(max(map(len, all_rows)))]
    lines = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return "\n".join(lines)


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


def render_probe(report: ProbeReport) -> str:
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
                ]
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
    out.append(table(rows))
    notes = (*hw.notes, *bud.notes)
    if notes:
        out.append("")
        out.append("Notes")
        out.extend(f"  - {n}" for n in notes)
    return "\n".join(out)


def render_known_gpus(gpus: Sequence[KnownGpu], chips: Sequence[AppleChip]) -> str:
    rows = [[g.name, g.vendor, g.segment, f"{g.memory_bytes / GiB:g} GiB", f"{g.bandwidth_gbs:g} GB/s"] for g in gpus]
    for c in chips:
        cores = f" ({c.gpu_cores}-core GPU)" if c.gpu_cores else ""
        sizes = "/".join(str(s) for s in c.memory_gb)
        rows.append([f"Apple {c.chip}{cores}", "apple", "unified", f"{sizes} GB", f"{c.bandwidth_gbs:g} GB/s"])
    return table(rows, header=["name", "vendor", "segment", "memory", "bandwidth"])


# ----- plans -----

BAR_CHARS = {"utf-8": ("█", "▓", "▒", "░", "·"), "ascii": ("#", "=", "+", "-", ".")}


def memory_bar(parts: Sequence[int], capacity: int, width: int = 36, charset: str = "utf-8") -> str:
    """[weights|kv|compute|overhead|free] scaled to the device's usable memory; '!' marks an overflow."""
    chars = BAR_CHARS[charset]
    used = sum(parts)
    scale = max(capacity, used, 1)
    cells = [round(p / scale * width) for p in parts]
    body = "".join(c * n for c, n in zip(chars[:4], cells, strict=True))
    body = body[:width] + chars[4] * max(0, width - len(body))
    return "[" + body + "]" + ("!" if used > capacity else "")


def _speed_text(speed: Any) -> str:
    if speed is None:
        return "speed unknown (no bandwidth figure)"
    if speed.upper_bound:
        return f"at most ~{speed.tps:.0f} tok/s (a GPU's bandwidth is unknown)"
    return f"~{speed.tps:.0f} tok/s ({speed.low:.0f}-{speed.high:.0f})"


def _device_lines(plan: Any, charset: str) -> list[str]:
    mem = plan.choice.placement.memory
    budgets = {g.index: g for g in plan.report.budget.gpus}
    lines = []
    for dev, index in zip(mem.gpus, plan.choice.placement.gpu_indices, strict=True):
        b = budgets[index]
        parts = [dev.weights_bytes, dev.kv_bytes, dev.compute_bytes, dev.overhead_bytes]
        free = b.usable_bytes - dev.total_bytes
        lines.append(
            f"  GPU {index}  {memory_bar(parts, b.usable_bytes, charset=charset)}  "
            f"{human(dev.total_bytes)} of {human(b.usable_bytes)} usable ({dev.layers} layers)"
        )
        lines.append(
            f"         weights {human(dev.weights_bytes)}  KV {human(dev.kv_bytes)}  compute "
            f"{human(dev.compute_bytes)}  overhead {human(dev.overhead_bytes)}  free {human(free)}"
        )
    host = mem.host
    hb = plan.report.budget.host
    parts = [host.weights_bytes, host.kv_bytes, host.compute_bytes, host.overhead_bytes]
    parts[0] -= host.evictable_bytes
    lines.append(
        f"  RAM    {memory_bar(parts, hb.usable_bytes, charset=charset)}  {human(host.required_bytes)} of "
        f"{human(hb.usable_bytes)} usable" + (f" ({host.layers} layers)" if host.layers else "")
    )
    evictable = f"  (of which {human(host.evictable_bytes)} page cache)" if host.evictable_bytes else ""
    lines.append(
        f"         weights {human(host.weights_bytes)}  KV {human(host.kv_bytes)}  compute "
        f"{human(host.compute_bytes)}  free {human(hb.usable_bytes - host.required_bytes)}{evictable}"
    )
    return lines


def render_plan(plan: Any, charset: str = "utf-8") -> str:
    from ollama_fit.placement import KIND_TEXT
    from ollama_fit.quants import quant_table

    c = plan.choice
    hw = plan.report.hardware
    where = ", ".join(g.name for g in hw.gpus) or "CPU only"
    q = quant_table()[c.quant]
    src = c.to_dict()["source"]
    files = ", ".join(src["files"]) or f"{src['pattern']} (split into shards)"
    out = [
        f"Plan for {plan.task} on {where} ({hw.source})",
        "",
        f"  Pick   {c.model.name}  {c.quant}  ctx {c.ctx}  {KIND_TEXT[c.placement.kind]}",
        f"         {_speed_text(c.placement.speed)}   quality loss {q.quality_loss} ({q.source})   "
        f"license {c.model.license}",
        f"         hf.co/{src['repo']}  {files}",
        "",
        "Memory (█ weights ▓ KV ▒ compute ░ overhead · free)"
        if charset == "utf-8"
        else "Memory (# weights = KV + compute - overhead . free)",
        *_device_lines(plan, charset),
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
                    f"GPU {human(mem.device_bytes)} + RAM {human(mem.host_required_bytes)}"
                    if mem.gpus
                    else f"RAM {human(mem.host_required_bytes)}",
                    _speed_text(a.placement.speed),
                ]
            )
        out.append(table(rows, header=["model", "quant", "ctx", "where", "memory", "speed"], indent=4))
    out += ["", "Why"] + [f"  - {r}" if not r.startswith("  ") else f"    {r.strip()}" for r in plan.reasons]
    notes = (*plan.warnings,)
    if notes:
        out += ["", "Warnings"] + [f"  ! {w}" for w in notes]
    return "\n".join(out)


# ----- inspect -----


def render_inspection(insp: Any) -> str:
    from ollama_fit.inspect_model import summarize
    from ollama_fit.placement import KIND_TEXT, Placement

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
        "",
        f"Memory at ctx {rt.ctx}, KV {rt.kv_type}, flash attention {'on' if rt.flash_attn else 'off'}, "
        f"{rt.parallel} slot(s)" + (f", -ngl {insp.gpu_layers}" if insp.gpu_layers is not None else "") + ":",
    ]
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
                    "yes",
                    KIND_TEXT[p.kind],
                ]
            )
        else:
            rows.append([q.quant, human(q.file_bytes), "", "", "no", f"{human(p.missing_bytes)} short on {p.device}"])
    out.append(table(rows, header=["quant", "file", "GPU", "RAM", "fits", "where"]))
    return "\n".join(out)


# ----- pull -----


class ProgressLine:
    """One line per file: bar, bytes, speed and ETA; keeps the start time of each file for the speed."""

    def __init__(self, width: int = 30) -> None:
        import time

        self.width = width
        self.clock = time.monotonic
        self.started: dict[str, tuple[float, int]] = {}

    def render(self, event: Any) -> str:
        now = self.clock()
        start, base = self.started.setdefault(event.file, (now, event.done))
        speed = (event.done - base) / max(now - start, 1e-6)
        left = int((event.total - event.done) / speed) if speed > 0 else 0
        filled = int(self.width * event.done / max(event.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        name = event.file.rsplit("/", 1)[-1][-40:]
        state = "verifying" if event.kind == "verify" else f"{human(speed)}/s ETA {left // 60}:{left % 60:02d}"
        return f"{name:40} [{bar}] {human(event.done)}/{human(event.total)} {state}"


def render_pull(result: Any) -> str:
    done = result.to_dict()
    reg = result.registration
    lines = []
    if reg is not None and reg.status == "unchanged":
        lines.append(f"{reg.name} is already registered from these files: nothing to do")
    elif result.fetched:
        if done["reused"]:
            verb = "already in the cache (verified)"
        else:
            verb = f"downloaded {human(done['downloaded_bytes'])}, sha256 verified"
        lines.append(f"{result.target.repo} {result.target.quant.label}: {verb}")
        if reg is None or not reg.freed_bytes:
            lines += [f"  {path}" for path in done["local_files"]]
    if reg is not None and reg.status != "unchanged":
        lines.append(
            f"registered with Ollama {reg.server.version} as {reg.name} ({reg.status}), "
            f"num_ctx {reg.parameters.get('num_ctx')}"
        )
        if reg.freed_bytes:
            lines.append(f"removed the downloaded copy: {human(reg.freed_bytes)} freed (Ollama keeps its own)")
    if reg is not None:
        lines.append(f"run it: ollama run {reg.name}")
    return "\n".join(lines)


# ----- auto, doctor, list -----


def render_auto(result: Any) -> str:
    from ollama_fit.placement import KIND_TEXT

    c = result.plan.choice
    if result.status == "dry-run":
        return "Dry run: nothing downloaded. Run `ollama-fit auto` to set it up."
    if result.status == "needs-confirmation":
        return ""  # the reason and the way forward were said on stderr
    lines = [render_pull(result.pull)] if result.pull else []
    if result.status == "unchanged":
        return "\n".join(lines)
    smoke = result.smoke
    if smoke is not None:
        if smoke.answered:
            predicted = f" (predicted ~{smoke.predicted_tps:.0f})" if smoke.predicted_tps else ""
            lines.append(f"smoke test: answered {smoke.text[:60]!r} at {smoke.tokens_per_second:.0f} tok/s{predicted}")
        else:
            lines.append(f"smoke test FAILED: {smoke.error}; the model stays registered. Check:")
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
    if result.serve is not None:
        lines.append("Run it with llama.cpp (" + KIND_TEXT[c.placement.kind] + "):")
        lines.append("  " + result.serve.shell(result.serve.argv or result.serve.hf_argv))
    lines.append("")
    lines.append(f"Done: {c.model.name} {c.quant}, context {c.ctx} tokens.")
    return "\n".join(lines)


def render_doctor(checks: Sequence[Any], paint: Any = lambda text, color: text) -> str:
    colors = {"ok": "green", "warn": "yellow", "fail": "red", "info": "blue"}
    rows = []
    for c in checks:
        rows.append(f"  {paint(f'[{c.status:4}]', colors[c.status])} {c.area:13} {c.detail}")
        if c.fix:
            rows.append(f"  {'':6} {'':13} fix: {c.fix}")
    return "\n".join(rows)


def render_catalog(rows: Sequence[Any]) -> str:
    from ollama_fit.placement import KIND_TEXT

    table_rows = []
    for r in rows:
        c = r.candidate
        if c is None:
            why = "too slow here" if "min-speed" in r.why_not else "does not fit"
            table_rows.append([r.model.id, r.model.family, f"{r.model.params_b:g}B", "-", why, "", ""])
            continue
        mem = c.placement.memory
        need = f"GPU {human(mem.device_bytes)}" if mem.gpus else f"RAM {human(mem.host_required_bytes)}"
        speed = f"~{c.placement.speed.tps:.0f} tok/s" if c.placement.speed else "?"
        table_rows.append(
            [r.model.id, r.model.family, f"{r.model.params_b:g}B", c.quant, KIND_TEXT[c.placement.kind], need, speed]
        )
    return table(table_rows, header=["model", "family", "params", "quant", "where", "needs", "speed"])


def render_installed(rows: Sequence[Any]) -> str:
    if not rows:
        return "Ollama has no models yet: `ollama-fit auto` sets one up."
    out = []
    for r in rows:
        fits = {True: "yes", False: "no", None: "?"}[r.fits]
        need = human(r.need_bytes) if r.need_bytes is not None else "?"
        out.append([r.name, human(r.size_bytes), str(r.ctx), need, fits, r.where])
    return table(out, header=["name", "size", "ctx", "needs", "fits", "where"])
