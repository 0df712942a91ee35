"""The fitted constants of the decode-speed model (scripts/fit_speed.py refits them; docs/speed.md).

Fitted by least squares on log(speed) over ../shared/calibration/speed-public.jsonl (55 published llama.cpp
measurements: NVIDIA consumer, workstation and datacenter cards, Apple M1-M3, Llama 2/3 7B-70B, Q2_K-F16),
with the CPU terms from the CPU rows of tests/fixtures/speed-cpu.jsonl. Each constant is a physical quantity,
bounded in the fit to a plausible range, so that the model extrapolates to other chips and models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Arithmetic per weight element for a matrix-vector product (a multiply-add is 2): the dequantization of a
# block adds unpacking, scales and, for the K-quants, sub-block scales and mins.
_OPS = {
    "F32": 2.0,
    "F16": 2.0,
    "BF16": 2.0,
    "Q8_0": 2.0,  # fitted: as cheap as F16 (the int8 dot product hides its scale)
    "Q4_0": 6.7,  # fitted: the nibble unpacking shows on fast cards
    "Q4_1": 6.7,
    "Q5_0": 6.7,
    "Q5_1": 6.7,
    "IQ4_NL": 6.7,  # a 16-entry lookup per nibble: priced like Q4_0 (not measured)
    "MXFP4": 6.7,  # e2m1 lookup and an e8m0 scale per 32: priced like Q4_0 (not measured)
    "Q4_K": 2.0,  # fitted: the K-quant kernels keep the dequantization hidden behind the reads
    "Q5_K": 2.0,
    "Q6_K": 2.0,
    "IQ4_XS": 6.7,
    "Q3_K": 29.0,  # fitted with Q2_K: 2-3 bit unpacking with sub-block scales costs several times a read
    "Q2_K": 29.0,
    "IQ3_S": 29.0,  # grid lookups: priced like the low-bit K-quants (not measured)
    "IQ3_XXS": 29.0,
    "IQ2_XXS": 29.0,
    "IQ2_XS": 29.0,
    "IQ2_S": 29.0,
    "IQ1_S": 29.0,
}


@dataclass(frozen=True)
class Params:
    ops: dict[str, float] = field(default_factory=lambda: dict(_OPS))
    ops_default: float = 6.7
    # share of peak bandwidth that large weight reads reach, by memory system
    efficiency: dict[str, float] = field(
        default_factory=lambda: {
            "gddr": 0.92,  # fitted: GDDR6/6X/7 cards stream large reads close to peak
            "hbm": 0.62,  # fitted: HBM cards cannot fill their very wide bus from one token's kernels
            "apple": 0.81,  # fitted on M1, M1 Max, M3 Max
            "apple-ultra": 0.89,  # fitted on M2 Ultra: its shortfall is the per-layer cost, not the bandwidth
            "lpddr": 0.81,  # GB10, Strix Halo: priced like Apple's LPDDR5X (not measured)
            "cpu": 0.65,  # fitted on a Core i9-13900K (DDR5-6400) at 8 threads
        }
    )
    # fixed seconds per layer per token, by backend
    layer_cost_s: dict[str, float] = field(
        default_factory=lambda: {"cuda": 83e-6, "rocm": 83e-6, "metal": 191e-6, "cpu": 40e-6}  # rocm: as CUDA
    )
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
    # the range shown: the 10th and 90th percentiles of measured / predicted over the calibration rows
    range_low: float = 0.83
    range_high: float = 1.17


PARAMS = Params()
