"""Where llama.cpp's `--fit` puts a model that its devices cannot hold whole, with the estimator in place of the
dry-run allocations llama.cpp measures (common/fit.cpp of b11434, `common_params_fit_impl`; llama-server and so
Ollama since 0.30 run it whenever -ngl is not given).

The order of decisions is the source's, step by step (each function names the part it mirrors):
1. everything on the devices (llama.cpp's default split by free memory): done when every device keeps its
   margin (`--fit-target`, the planner's --headroom);
2. a context the user did not set is lowered, by linear interpolation between the trained context and
   `--fit-ctx`, when that alone could make the model fit;
3. the devices are filled back to front with layers (a MoE model's with their routed experts in system
   memory), by false position on the measured memory per device;
4. a MoE model whose attention and dense parts fit everywhere then gets full layers front to back (experts
   back on the device) and one more layer in part: attention + up projections, + gate, or attention alone.
The result is -ngl N with the tensor overrides of the partial layers (`Move`s); `FitResult.estimate` is the
estimator's figure for that placement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ollama_fit.memory.estimate import MemoryEstimate, Move, Runtime, estimate, fraction_table, split_for_ngl
from ollama_fit.model.spec import ModelSpec

FIT_CTX_MIN = 4096  # --fit-ctx: the smallest context the fit lowers an unset one to
CTX_ALIGN = 256  # "round down context for CUDA backend", per stream
UINT32 = 1 << 32
# what of the first partial layer stays on its device, in llama.cpp's terms (common_layer_fraction_t)
FRACTION_NAMES = {"attn": "ATTN", "up": "UP", "gate": "GATE", "moe": "MOE"}
# the tensor groups each fraction moves off the device, for plans and JSON
FRACTION_GROUPS = {
    "attn": ("ffn_gate", "ffn_up", "ffn_down"),
    "up": ("ffn_gate", "ffn_down"),
    "gate": ("ffn_down",),
    "moe": ("ffn_*_exps",),
}


@dataclass(frozen=True)
class FitDevice:
    """One device as the fit sees it: the memory llama.cpp finds free there (after the backend's own
    context) and the margin to keep (--fit-target)."""

    free_bytes: int
    margin_bytes: int

    @property
    def target_bytes(self) -> int:
        return self.free_bytes - self.margin_bytes


@dataclass(frozen=True)
class DeviceLayers:
    """llama.cpp's ngl_t: layers on one device (the output layer counts as one), of which `n_part` partial
    (only `overflow` of the first stays, the others keep everything but their routed experts)."""

    n_layer: int = 0
    n_part: int = 0
    overflow: str = "moe"

    @property
    def n_full(self) -> int:
        return self.n_layer - self.n_part


@dataclass(frozen=True)
class FitResult:
    """What llama.cpp's --fit decides: status, context, layers per device, the estimate of it."""

    status: str  # no-change, ctx-reduced, fit (layers or parts moved), failed
    ctx: int  # per slot, after the context rule
    layers: tuple[DeviceLayers, ...]  # per device
    overflow_to: tuple[int | None, ...]  # per device: where its first partial layer's moved part goes
    estimate: MemoryEstimate

    @property
    def ngl(self) -> int:
        """llama.cpp's n_gpu_layers: -1 when the fit left the default (everything on the devices)."""
        return -1 if self.status in ("no-change", "ctx-reduced") else sum(d.n_layer for d in self.layers)

    @property
    def partial_layer(self) -> dict[str, Any] | None:
        """The one layer split inside its FFN (not just its experts): which layer and what moved."""
        for m in self.estimate.moves:
            if m.fraction != "moe":
                where = "on_cpu" if m.to is None else f"on_gpu_{m.to}"
                return {"layer": m.layer, "keeps": FRACTION_NAMES[m.fraction], where: list(FRACTION_GROUPS[m.fraction])}
        return None


Measure = Callable[[Sequence[DeviceLayers], Sequence[int | None]], list[int]]


def _c_step(delta: int, num: int, den: int) -> int:
    """The false-position step as C computes it: int64 truncating division stored in a uint32 (a negative
    step wraps to a huge one), then clamped to [1, delta - 1]."""
    q = abs(delta * num) // abs(den) if den else 0
    if (delta * num < 0) != (den < 0) and q:
        q = -q
    step = q % UINT32
    return min(max(step, 1), delta - 1)


class _Layout:
    """Turns per-device layer counts into the estimator's split and moves (`set_ngl_tensor_split_tbo`)."""

    def __init__(self, spec: ModelSpec, rt: Runtime, n_devices: int, mtp: int = 0) -> None:
        self.spec = spec
        self.rt = rt
        self.nd = n_devices
        self.mtp = mtp
        self.table = fraction_table(spec)

    def arguments(
        self, layers: Sequence[DeviceLayers], overflow_to: Sequence[int | None]
    ) -> tuple[list[int], int | None, list[Move]]:
        n, mtp = self.spec.shape.n_layer, self.mtp
        ngl = sum(d.n_layer for d in layers)
        # The loader offloads the last ngl of its n + mtp + 1 "layers" (a GGUF's multi-token-prediction blocks
        # count there though they are not loaded; the output layer is the last), device d the next
        # layers[d].n_layer of them (llama.cpp's tensor_split = the counts)
        offloaded = list(range(n + mtp + 1 - ngl, n + mtp + 1))
        split: list[int] = []
        output = None
        start = 0
        for d, dev in enumerate(layers):
            mine = offloaded[start : start + dev.n_layer]
            start += dev.n_layer
            split.append(sum(1 for i in mine if i < n))
            output = d if n + mtp in mine else output
        moves: list[Move] = []
        # the overrides count from the fit's own view, which leaves the prediction blocks out (hp_ngl)
        il0 = n + 1 - ngl
        for d, dev in enumerate(layers):
            il0 += dev.n_full
            for il in range(il0, il0 + dev.n_part):
                first = il == il0
                fraction = dev.overflow if first else "moe"
                moved = self.table.get((il, fraction))
                if moved and il < n:  # index n is the output layer (or a prediction block): nothing loaded moves
                    moves.append(Move(il, fraction, moved[0], moved[1], overflow_to[d] if first else None))
            il0 += dev.n_part
        return split, output, moves

    def estimate(
        self, layers: Sequence[DeviceLayers], overflow_to: Sequence[int | None], rt: Runtime | None = None
    ) -> MemoryEstimate:
        split, output, moves = self.arguments(layers, overflow_to)
        return estimate(self.spec, rt or self.rt, split, output_gpu=output, moves=moves)

    def everything(self, rt: Runtime, frees: Sequence[int], moves: Sequence[Move] = ()) -> MemoryEstimate:
        """Every layer on the devices, split by free memory as llama.cpp's loader splits without
        --tensor-split (the fit's "default parameters")."""
        n = self.spec.shape.n_layer
        split, out = split_for_ngl(n, n + 1, [max(1, f) for f in frees])
        return estimate(self.spec, rt, list(split), output_gpu=out, moves=moves)

    def memory(self, est: MemoryEstimate) -> list[int]:
        """llama.cpp's own buffers per device (model + context + compute): what the fit compares with the
        free memory it reads, which already excludes the backend's context."""
        out = [0] * self.nd
        for g in est.gpus:
            out[g.position or 0] = g.total_bytes - g.overhead_bytes
        return out


def fit(
    spec: ModelSpec,
    rt: Runtime,
    devices: Sequence[FitDevice],
    *,
    ctx_auto: bool = False,
    n_ctx_min: int = FIT_CTX_MIN,
    streams: int | None = None,
    mtp: int | None = None,
) -> FitResult:
    """llama.cpp's --fit for `spec` on `devices` (in llama.cpp's order). `ctx_auto`: no -c was given, so
    rt.ctx is the trained context and may be lowered; `streams`: KV streams (1 with a unified cache); `mtp`:
    the GGUF's multi-token-prediction blocks (default: as its header says; a catalog spec has none)."""
    nd = len(devices)
    if nd == 0:
        raise ValueError("the fit needs at least one device")
    n_streams = streams or rt.streams
    nextn = int(spec.extra.get("nextn_layers", "0")) if mtp is None else mtp
    layout = _Layout(spec, rt, nd, nextn)
    n = spec.shape.n_layer
    moe = spec.shape.n_expert > 0
    margins = [d.margin_bytes for d in devices]
    frees = [d.free_bytes for d in devices]

    # step 1 (`common_params_fit_impl`, "get data for default parameters"): every layer on the devices, split
    # by free memory as llama.cpp splits without --tensor-split
    full = layout.everything(rt, frees)
    used = layout.memory(full)
    if all(f - u >= m for f, u, m in zip(frees, used, margins, strict=True)):
        return FitResult("no-change", rt.ctx, (), (), full)

    # step 2 ("try reducing memory use by reducing the context size")
    model_bytes = sum(g.weights_bytes for g in full.gpus)
    rt, reduced = _reduce_context(
        spec, rt, layout, frees, margins, used, model_bytes, ctx_auto, n_ctx_min, n_streams, nd, moe
    )
    if reduced is not None:
        return reduced
    layout.rt = rt

    # step 3 ("iteratively fill the back to front with dense layers")
    surplus_cpu_moe = 0
    if moe:  # every expert tensor in system memory, everything else on the devices as in step 1
        experts = [Move(il, "moe", *layout.table[(il, "moe")]) for il in range(n) if (il, "moe") in layout.table]
        cpu_moe = layout.memory(layout.everything(rt, frees, experts))
        surplus_cpu_moe = sum(f - u - m for f, u, m in zip(frees, cpu_moe, margins, strict=True))
    targets = [f - m for f, m in zip(frees, margins, strict=True)]  # from what the devices reported at first
    overflow_to: list[int | None] = [None] * nd  # step 3 splits no layer: every moved part goes to RAM

    def measure(layers: Sequence[DeviceLayers], over: Sequence[int | None]) -> list[int]:
        return layout.memory(layout.estimate(layers, over))

    def measure_dense(layers: Sequence[DeviceLayers]) -> list[int]:
        return measure(layers, overflow_to)

    ngl = [DeviceLayers() for _ in range(nd)]
    mem = measure_dense(ngl)
    for d in reversed(range(nd)):
        ngl, mem = _fill_back_to_front(d, ngl, mem, targets, measure_dense, n, moe)
    if not moe or surplus_cpu_moe <= 0:
        return _result("fit", rt, ngl, overflow_to, layout)

    # step 4 ("convert the dense-only layers in the back to full layers in the front until all devices are
    # full", then "try to fit at least part of one more layer")
    ngl, overflow_to = _convert_front_to_back(ngl, mem, targets, overflow_to, measure)
    return _result("fit", rt, ngl, overflow_to, layout)


def _result(
    status: str, rt: Runtime, ngl: Sequence[DeviceLayers], overflow_to: Sequence[int | None], layout: _Layout
) -> FitResult:
    return FitResult(status, rt.ctx, tuple(ngl), tuple(overflow_to), layout.estimate(ngl, overflow_to, rt))


def _reduce_context(
    spec: ModelSpec,
    rt: Runtime,
    layout: _Layout,
    frees: Sequence[int],
    margins: Sequence[int],
    used: Sequence[int],
    model_bytes: int,
    ctx_auto: bool,
    n_ctx_min: int,
    n_streams: int,
    nd: int,
    moe: bool,
) -> tuple[Runtime, FitResult | None]:
    """Step 2 of `common_params_fit_impl`: only a context the user left unset is lowered, at most to
    n_ctx_min; one device that then fits is done, several go on to the layer split at that context."""
    surplus = sum(frees) - sum(used) - sum(margins)
    n = spec.shape.n_layer
    ctx_max = rt.ctx * n_streams  # totals over the streams, as llama.cpp counts n_ctx
    ctx_min = n_ctx_min * n_streams
    if surplus >= 0 or not ctx_auto or ctx_max <= ctx_min:
        return rt, None
    target = sum(frees) - sum(margins)
    if nd > 1:  # whole layers (MoE: tensors) waste about half a layer per device: be conservative
        per_layer = model_bytes // max(1, n)
        target -= (nd + 1) * per_layer // (6 if moe else 2)
    small = replace(rt, ctx=n_ctx_min)
    used_min = sum(layout.memory(layout.everything(small, frees)))
    if target <= used_min:
        return small, None  # the context stays at the minimum; the layers are fitted there
    used_max = sum(used)
    total = ctx_min + (ctx_max - ctx_min) * (target - used_min) // (used_max - used_min)
    align = CTX_ALIGN * n_streams
    total = max(total - total % align, ctx_min)
    reduced = replace(rt, ctx=total // n_streams)
    if nd > 1:
        return reduced, None
    return reduced, FitResult("ctx-reduced", reduced.ctx, (), (), layout.everything(reduced, frees))


def _fill_back_to_front(
    d: int,
    ngl: list[DeviceLayers],
    mem: list[int],
    targets: Sequence[int],
    measure: Callable[[Sequence[DeviceLayers]], list[int]],
    n: int,
    moe: bool,
) -> tuple[list[DeviceLayers], list[int]]:
    """Step 3 for device d ("filling dense layers back-to-front"): the most layers it holds, by false position
    between none and all unassigned ones; a MoE model's layers here keep their experts in system memory except
    the lowest one (the output layer "must always be full", and the first of the run is the full one)."""
    nd = len(ngl)
    unassigned = n + 1 - sum(ngl[j].n_layer for j in range(d + 1, nd))
    high = list(ngl)
    part = (unassigned if d < nd - 1 else unassigned - 1) if moe else 0
    high[d] = replace(high[d], n_layer=unassigned, n_part=part if moe else high[d].n_part)
    if high[d].n_layer == 0:
        return ngl, mem
    mem_high = measure(high)
    if mem_high[d] <= targets[d]:
        return high, mem_high
    delta = high[d].n_layer - ngl[d].n_layer
    while delta > 1:
        step = _c_step(delta, targets[d] - mem[d], mem_high[d] - mem[d])
        test = list(ngl)
        cur = test[d]
        add_part = (step - 1 if d == nd - 1 and cur.n_part == 0 else step) if moe else 0
        test[d] = replace(cur, n_layer=cur.n_layer + step, n_part=cur.n_part + add_part)
        mem_test = measure(test)
        if mem_test[d] <= targets[d]:
            ngl, mem = test, mem_test
        else:
            high, mem_high = test, mem_test
        delta = high[d].n_layer - ngl[d].n_layer
    return ngl, mem


def _convert_front_to_back(
    ngl: list[DeviceLayers],
    mem: list[int],
    targets: Sequence[int],
    overflow_to: list[int | None],
    measure: Callable[..., list[int]],
) -> tuple[list[DeviceLayers], list[int | None]]:
    """Step 4: each device from the first takes full layers (experts included) from the dense-only run at the
    back, by false position, then tries one more layer in part (UP, then GATE; else ATTN), whose moved part
    overflows to the next device or, on the last, to system memory."""
    nd = len(ngl)
    dense_start = nd
    for d in reversed(range(nd)):
        if ngl[d].n_layer > 0:
            dense_start = d
            continue
        break
    d = 0
    while d <= dense_start < nd:
        high = list(ngl)
        for j in range(dense_start, nd):
            move = high[j].n_layer if j < nd - 1 else high[j].n_layer - 1
            high[d] = replace(high[d], n_layer=high[d].n_layer + move)
            high[j] = replace(high[j], n_layer=high[j].n_layer - move, n_part=0)
        dense_start_high = nd - 1
        mem_high = measure(high, overflow_to)  # the parts already moved onto later devices count there
        if mem_high[d] > targets[d]:
            delta = high[d].n_full - ngl[d].n_full
            while delta > 1:
                step = _c_step(delta, targets[d] - mem[d], mem_high[d] - mem[d])
                test, start_test = _convert(ngl, d, dense_start, step)
                mem_test = measure(test, overflow_to)
                if mem_test[d] <= targets[d]:
                    ngl, mem, dense_start = test, mem_test, start_test
                else:
                    high, mem_high, dense_start_high = test, mem_test, start_test
                delta = high[d].n_full - ngl[d].n_full
        else:
            ngl, mem, dense_start = high, mem_high, dense_start_high
        ngl, mem, overflow_to, dense_start = _one_more_layer(ngl, mem, targets, overflow_to, measure, d, dense_start)
        d += 1
    return ngl, overflow_to


def _convert(ngl: Sequence[DeviceLayers], d: int, dense_start: int, step: int) -> tuple[list[DeviceLayers], int]:
    """Turn `step` dense-only layers (from the run starting on device `dense_start`) into full layers of d."""
    test = list(ngl)
    converted = 0
    j = dense_start
    while j < len(test):
        take = min(step - converted, test[j].n_part)
        test[j] = replace(test[j], n_layer=test[j].n_layer - take, n_part=test[j].n_part - take)
        test[d] = replace(test[d], n_layer=test[d].n_layer + take)
        converted += take
        if test[j].n_part > 0:
            break
        j += 1
    return test, j


def _one_more_layer(
    ngl: list[DeviceLayers],
    mem: list[int],
    targets: Sequence[int],
    overflow_to: list[int | None],
    measure: Callable[..., list[int]],
    d: int,
    dense_start: int,
) -> tuple[list[DeviceLayers], list[int], list[int | None], int]:
    """ "try to fit at least part of one more layer": the first dense-only layer becomes device d's partial
    layer keeping attention + up (then + gate) on d, else attention alone; its moved part goes to the next
    device (or system memory on the last). Accepted only strictly below the targets of d and the next."""
    nd = len(ngl)
    if ngl[dense_start].n_layer <= (0 if d < nd - 1 else 1):
        return ngl, mem, overflow_to, dense_start
    test = list(ngl)
    src = test[dense_start]
    test[dense_start] = replace(src, n_layer=src.n_layer - 1, n_part=src.n_part - 1)
    dst = test[d]
    test[d] = replace(dst, n_layer=dst.n_layer + 1, n_part=dst.n_part + 1)
    start_test = dense_start + 1 if test[dense_start].n_part == 0 else dense_start
    over_test = list(overflow_to)
    if d < nd - 1:
        over_test[d] = d + 1

    def fits(m: Sequence[int]) -> bool:
        return m[d] < targets[d] and (d + 1 == nd or m[d + 1] < targets[d + 1])

    test[d] = replace(test[d], overflow="up")
    mem_test = measure(test, over_test)
    if fits(mem_test):
        ngl, mem, overflow_to, dense_start = list(test), mem_test, over_test, start_test
        test[d] = replace(test[d], overflow="gate")
        mem_test = measure(test, over_test)
        if fits(mem_test):
            ngl, mem = list(test), mem_test
        return ngl, mem, overflow_to, dense_start
    test[d] = replace(test[d], overflow="attn")
    mem_test = measure(test, over_test)
    if fits(mem_test):
        return list(test), mem_test, over_test, start_test
    return ngl, mem, overflow_to, dense_start
