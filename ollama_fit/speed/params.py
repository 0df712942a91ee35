"""The fitted constants of the decode-speed model (`scripts/calibrate_speed.py --fit` refits them; docs/speed.md).

Fitted by least squares on log(speed) over ../shared/calibration/speed-public.jsonl and speed-public-current.jsonl
(147 published llama.cpp measurements, 2024 and 2025+ builds: NVIDIA consumer, workstation and datacenter cards,
every Apple chip from M1 to M4 Max and the Ultras, Llama 2/3 7B-70B, Q2_K-F16), with the CPU terms from the CPU
rows of tests/fixtures/speed-cpu.jsonl. Each constant is a physical quantity, bounded in the fit to a plausible
range, so that the model extrapolates to other chips and models; the figures are for today's (2025+) builds, a
2024 build's per-layer cost being `old_build_layer_factor` times theirs. The range shown comes from
leave-one-source-out predictions, not from the rows a fit has seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Arithmetic per weight element for a matrix-vector product (a multiply-add is 2): the dequantization of a
# block adds unpacking, scales and, for the K-quants, sub-block scales and mins.
_OPS = {
    "F32": 2.0,
    "F16": 2.0,
    "BF16": 2.0,
    "Q8_0": 2.22,  # fitted: about as cheap as F16 (the int8 dot product hides its scale)
    "Q4_0": 2.0,  # fitted (2025 builds and every Apple chip): the nibble unpacking hides behind the reads
    "Q4_1": 2.0,
    "Q5_0": 2.0,
    "Q5_1": 2.0,
    "IQ4_NL": 2.0,  # a 16-entry lookup per nibble: priced like Q4_0 (not measured)
    "MXFP4": 2.0,  # e2m1 lookup and an e8m0 scale per 32: priced like Q4_0 (not measured)
    "Q4_K": 2.0,  # fitted: the K-quant kernels keep the dequantization hidden behind the reads
    "Q5_K": 2.0,
    "Q6_K": 2.0,
    "IQ4_XS": 6.7,
    "Q3_K": 28.25,  # fitted with Q2_K: 2-3 bit unpacking with sub-block scales costs several times a read
    "Q2_K": 28.25,
    "IQ3_S": 29.0,  # grid lookups: priced like the low-bit K-quants (not measured)
    "IQ3_XXS": 29.0,
    "IQ2_XXS": 29.0,
    "IQ2_XS": 29.0,
    "IQ2_S": 29.0,
    "IQ1_S": 29.0,
}


@dataclass(frozen=True)
class Params:
    """The speed model's constants: fitted ones and those read from the hardware's specs."""

    ops: dict[str, float] = field(default_factory=lambda: dict(_OPS))
    ops_default: float = 6.7
    # on the CPU the 4-bit legacy blocks keep their unpacking cost (fitted on a Core i9-13900K at 4 threads,
    # where the cores set the pace); the GPU kernels of today's builds hide it
    cpu_ops: dict[str, float] = field(
        default_factory=lambda: {t: 6.7 for t in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "MXFP4")}
    )
    # share of peak bandwidth that large weight reads reach, by memory system
    efficiency: dict[str, float] = field(
        default_factory=lambda: {
            "gddr": 0.935,  # fitted: GDDR6/6X/7 cards stream large reads close to peak
            "hbm": 0.63,  # fitted: HBM cards cannot fill their very wide bus from one token's kernels
            "apple": 0.96,  # fitted on every M1-M4 chip short of the Ultras
            "apple-ultra": 0.80,  # fitted on M1-M3 Ultra: two dies, one token's reads do not fill both
            "lpddr": 0.81,  # GB10, Strix Halo: priced like Apple's LPDDR5X (not measured)
            "cpu": 0.65,  # fitted on a Core i9-13900K (DDR5-6400) at 8 threads
        }
    )
    # fixed seconds per layer per token of today's (2025+) builds on the backend's reference chip; fitted; rocm
    # and vulkan: as CUDA
    layer_cost_s: dict[str, float] = field(
        default_factory=lambda: {"cuda": 47.6e-6, "rocm": 47.6e-6, "vulkan": 47.6e-6, "metal": 146e-6, "cpu": 40e-6}
    )
    # the per-layer cost is the backend's for its reference chip (FP32 TFLOPS), x (reference / chip) ** exponent
    layer_cost_ref_tflops: dict[str, float] = field(
        default_factory=lambda: {"cuda": 40.0, "rocm": 40.0, "vulkan": 40.0, "metal": 15.0}
    )
    layer_cost_exponent: float = 0.163  # fitted
    # the share of the vector throughput (FP32 TFLOPS) that the decoding kernels reach
    compute_share: float = 1.0  # fitted
    # one CPU core's decoding throughput, in 1e12 ops/s: fitted on the same CPU at 4 threads, where the
    # cores and not the memory set the pace
    cpu_core_tops: float = 0.14
    handoff_s: float = 100e-6  # per device boundary of a layer split: the activations cross PCIe
    # per crossing to the CPU and back inside a layer whose experts --fit keeps in RAM (one token's
    # activations, a few KB, and a stream synchronisation): NOT fitted, no published measurement in the
    # calibration set; a third of a layer split's hand-off
    expert_handoff_s: float = 30e-6
    # llama.cpp builds before 2025 spent this many times today's per-layer cost (before CUDA graphs and the
    # fused kernels); the constants above are for today's builds. Used by scripts/calibrate_speed.py only.
    old_build_layer_factor: float = 1.84  # fitted
    # prompt processing (speed/prompt.py): the share of 0.94 x FP32 TFLOPS a prompt batch reaches, by backend
    # (above 1 on CUDA: tensor cores and int8 kernels); fitted on the pp512 / 1024-token prompt rows; the CPU's
    # is not fitted (no published CPU prompt rows in the set)
    prompt_efficiency: dict[str, float] = field(
        default_factory=lambda: {"cuda": 1.75, "rocm": 1.75, "vulkan": 1.75, "metal": 0.963, "cpu": 1.0}
    )
    pcie_gbs: float = 25.0  # host-to-GPU copy rate of weights in RAM (PCIe 4.0 x16 in practice; not fitted)
    prompt_batch: int = 512  # tokens per micro-batch: each copies the RAM-held weights once
    # held out (each source predicted by a fit without it): 10th and 90th percentiles of measured / predicted.
    # Wide: FP32 TFLOPS is a poor proxy for tensor-core throughput (datacenter cards have far more of it)
    prompt_range_low: float = 0.59
    prompt_range_high: float = 1.38
    # the range shown: the 10th and 90th percentiles of measured / predicted over HELD-OUT predictions (each
    # source predicted by a fit without it: scripts/calibrate_speed.py --held-out)
    range_low: float = 0.844
    range_high: float = 1.169


PARAMS = Params()
