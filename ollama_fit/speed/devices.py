"""What the speed model knows of each device: bandwidth, the share of it reached, compute, per-layer cost.

Known cards and chips carry their FP32 throughput and memory type in profiles/gpus.toml; a card that is not
there gets a throughput derived from its bandwidth (the median ratio of the table) and says so.
"""

from __future__ import annotations

from ollama_fit.hardware.known import AppleChip, KnownGpu, find_chip, find_gpu
from ollama_fit.hardware.model import Cpu, Gpu, Hardware
from ollama_fit.speed.model import SpeedDevice
from ollama_fit.speed.params import PARAMS, Params

DEFAULT_RAM_BANDWIDTH_GBS = 50.0  # dual-channel DDR5 when no probe measured it
DEFAULT_CORES = 4
TFLOPS_PER_GBS = 0.05  # a card missing from the table: FP32 TFLOPS per GB/s, the table's median


def _apple_chip(hw: Hardware, gpu: Gpu) -> AppleChip | None:
    name = hw.apple.chip if hw.apple else gpu.name
    return find_chip(name, gpu_cores=hw.apple.gpu_cores if hw.apple else None, bandwidth_gbs=gpu.bandwidth_gbs)


def memory_class(gpu: Gpu, known: KnownGpu | None, chip: AppleChip | None) -> str:
    if gpu.vendor == "apple":
        return "apple-ultra" if chip and "ultra" in chip.chip.lower() else "apple"
    if known is not None:
        return known.memory_type
    return "lpddr" if gpu.unified_memory else "gddr"


def gpu_device(gpu: Gpu, hw: Hardware, p: Params = PARAMS) -> SpeedDevice:
    known = find_gpu(gpu.name) if gpu.vendor != "apple" else None
    chip = _apple_chip(hw, gpu) if gpu.vendor == "apple" else None
    notes: list[str] = []
    tflops = known.tflops if known else chip.tflops if chip else None
    if tflops is None and gpu.bandwidth_gbs:
        tflops = gpu.bandwidth_gbs * TFLOPS_PER_GBS
        notes.append(f"{gpu.name}: compute throughput assumed from its bandwidth")
    return SpeedDevice(
        name=gpu.name,
        kind=gpu.backend,
        bandwidth_gbs=gpu.bandwidth_gbs,
        efficiency=p.efficiency[memory_class(gpu, known, chip)],
        compute_tops=(tflops or 0.0) * p.compute_share,
        layer_cost_s=p.layer_cost_s[gpu.backend] * _clock_class(tflops, gpu.backend, p),
        assumptions=tuple(notes),
    )


def _clock_class(tflops: float | None, backend: str, p: Params) -> float:
    """The per-layer cost scales with the chip: a small GPU launches and finishes each layer's kernels more
    slowly than a large one (fitted exponent of its FP32 throughput against the backend's reference chip)."""
    ref = p.layer_cost_ref_tflops.get(backend)
    if not tflops or not ref or not p.layer_cost_exponent:
        return 1.0
    return float((ref / tflops) ** p.layer_cost_exponent)


def cpu_device(hw: Hardware, p: Params = PARAMS) -> SpeedDevice:
    """The CPU: its cores and RAM bandwidth; on unified memory it reads the chip's memory."""
    cpu: Cpu = hw.cpu
    notes: list[str] = []
    bandwidth = cpu.bandwidth_gbs
    if bandwidth is None and hw.unified_memory and hw.gpus and hw.gpus[0].bandwidth_gbs:
        bandwidth = hw.gpus[0].bandwidth_gbs  # one memory for the CPU and the GPU
    if bandwidth is None:
        bandwidth = DEFAULT_RAM_BANDWIDTH_GBS
        notes.append(f"RAM bandwidth assumed {DEFAULT_RAM_BANDWIDTH_GBS:g} GB/s")
    cores = cpu.physical_cores or cpu.logical_cores
    if not cores:
        cores = DEFAULT_CORES
        notes.append(f"CPU cores assumed {DEFAULT_CORES}")
    return SpeedDevice(
        name="CPU",
        kind="cpu",
        bandwidth_gbs=bandwidth,
        efficiency=p.efficiency["cpu"],
        compute_tops=cores * p.cpu_core_tops,
        layer_cost_s=p.layer_cost_s["cpu"],
        assumptions=tuple(notes),
    )
