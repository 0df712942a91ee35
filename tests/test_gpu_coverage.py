"""Every card and chip the speed calibration names, and those issue 22 asks for, is known to `--gpu`.

The calibration rows are read from ../shared/calibration (skipped where that checkout is absent) and resolved the
way scripts/calibrate_speed.py resolves them: an Apple row becomes "CHIP NNGB" (its variant then picked by the
row's GPU cores), any other GPU row "Nx DEVICE" (a remark in parentheses dropped).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ollama_fit.cli import cli
from ollama_fit.hardware.known import find_chip, find_gpu
from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.units import GiB

REPO = Path(__file__).resolve().parents[1]
# ../shared/calibration beside the checkout (or shared/ inside it, where a copy carries it there)
CALIBRATION = next(
    (d for d in (REPO.parent / "shared" / "calibration", REPO / "shared" / "calibration") if d.is_dir()),
    REPO.parent / "shared" / "calibration",
)
FILES = ("speed-public.jsonl", "speed-public-current.jsonl")
BASE = Hardware(gpus=(), ram_total_bytes=256 * GiB, ram_available_bytes=256 * GiB, cpu=Cpu("unknown", None, None))


def _rows() -> list[Any]:
    """One case per distinct device description, or one skipped case where the files are absent."""
    seen: dict[tuple[Any, ...], Any] = {}
    for name in FILES:
        path = CALIBRATION / name
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("vendor") == "cpu":  # a CPU run names no GPU
                continue
            fields = ("device", "vendor", "gpu_count", "memory_gb", "gpu_cores", "bandwidth_gbs")
            key = (name, *(row.get(f) for f in fields))
            seen.setdefault(key, pytest.param(row, id=f"{name.split('.')[0]}:{row['id']}"))
    return list(seen.values()) or [pytest.param(None, marks=pytest.mark.skip(reason=f"no {CALIBRATION}"))]


def _device(row: dict[str, Any]) -> str:
    return re.sub(r"\s*\(.*\)$", "", row["device"]).removeprefix("Apple ").strip()  # "(SXM or PCIe not stated)"


def _apple_name(row: dict[str, Any]) -> str:
    """As calibrate_speed: 'M4 Max 64GB'; where the row states no memory size (the -current file), the largest
    configuration of the measured variant (found by its GPU cores)."""
    memory = row.get("memory_gb")
    if not memory:
        chip = find_chip(_device(row), gpu_cores=row.get("gpu_cores"), bandwidth_gbs=row.get("bandwidth_gbs"))
        assert chip is not None, f"{row['device']!r} is not a known Apple chip"
        memory = chip.memory_gb[-1]
    return f"{_device(row)} {memory}GB"


@pytest.mark.parametrize("row", _rows())
def test_calibration_device_resolves_as_calibrate_speed_does(row: dict[str, Any]) -> None:
    device = _device(row)
    if row.get("vendor") == "apple":
        hw = simulate(Simulation(gpus=(_apple_name(row),)), lambda: BASE)
        assert hw.apple is not None
        chip = find_chip(device, gpu_cores=row.get("gpu_cores"))
        assert chip is not None
        if row.get("gpu_cores"):  # the measured variant, not the largest one
            assert chip.gpu_cores == row["gpu_cores"], (device, row["gpu_cores"])
        count = 1
    else:
        count = int(row.get("gpu_count") or 1)
        hw = simulate(Simulation(gpus=(f"{count}x {device}",), ram="256GiB"), lambda: BASE)
        known = find_gpu(device)
        assert known is not None
        assert known.tflops, f"{known.name} has no FP32 throughput for the speed model"
        if row.get("memory_gb"):
            assert abs(known.memory_bytes / GiB - row["memory_gb"]) <= 1.5, (known.name, row["memory_gb"])
    assert len(hw.gpus) == count
    gpu = hw.gpus[0]
    assert gpu.vendor == row["vendor"]
    assert gpu.bandwidth_gbs
    assert gpu.bandwidth_gbs > 0
    if row.get("bandwidth_gbs"):  # the source's own figure, rounded
        assert abs(gpu.bandwidth_gbs / row["bandwidth_gbs"] - 1) < 0.05, (gpu.name, row["bandwidth_gbs"])


# (what a user types, the entry's name, vendor, llama.cpp backend, memory GiB, bandwidth range GB/s, unified memory)
ISSUE_CARDS = [
    ("Intel Arc A770", "Intel Arc A770", "intel", "vulkan", 16, (500, 600), False),
    ("Intel(R) Arc(TM) A770 Graphics", "Intel Arc A770", "intel", "vulkan", 16, (500, 600), False),
    ("Arc B580", "Intel Arc B580", "intel", "vulkan", 12, (420, 480), False),
    ("Radeon 780M", "AMD Radeon 780M", "amd", "rocm", 32, (80, 130), True),
    ("AMD Radeon 890M Graphics", "AMD Radeon 890M", "amd", "rocm", 32, (80, 130), True),
    ("Radeon 8060S", "AMD Ryzen AI Max+ 395", "amd", "rocm", 128, (250, 260), True),
    ("RX 9070", "AMD Radeon RX 9070", "amd", "rocm", 16, (600, 660), False),
    ("RX 9070 XT", "AMD Radeon RX 9070 XT", "amd", "rocm", 16, (600, 660), False),
    ("Radeon AI PRO R9700", "AMD Radeon AI PRO R9700", "amd", "rocm", 32, (600, 660), False),
    ("Ryzen Z1", "AMD Ryzen Z1", "amd", "rocm", 16, (100, 125), True),
    ("Ryzen Z1 Extreme", "AMD Ryzen Z1 Extreme", "amd", "rocm", 16, (100, 125), True),
    ("RTX 2070 Max-Q", "NVIDIA GeForce RTX 2070 with Max-Q Design", "nvidia", "cuda", 8, (350, 400), False),
]


@pytest.mark.parametrize(("typed", "name", "vendor", "backend", "gib", "bandwidth", "unified"), ISSUE_CARDS)
def test_issue_card_is_known(
    typed: str, name: str, vendor: str, backend: str, gib: int, bandwidth: tuple[int, int], unified: bool
) -> None:
    known = find_gpu(typed)
    assert known is not None
    assert known.name == name
    assert known.tflops
    assert 1 < known.tflops < 100
    assert known.memory_type == ("lpddr" if unified else "gddr")
    hw = simulate(Simulation(gpus=(typed,)), lambda: BASE)
    (gpu,) = hw.gpus
    assert (gpu.vendor, gpu.backend, gpu.unified_memory) == (vendor, backend, unified)
    assert gpu.memory_total_bytes == gib * GiB
    assert gpu.bandwidth_gbs is not None
    assert bandwidth[0] <= gpu.bandwidth_gbs <= bandwidth[1]
    if unified:  # an APU's GPU memory is the machine's RAM
        assert hw.unified_memory
        assert hw.ram_total_bytes == gib * GiB


def test_parenthesized_remark_is_not_part_of_the_name() -> None:
    sxm = find_gpu("H100 80GB")
    assert sxm is not None
    assert find_gpu("H100 80GB (SXM or PCIe not stated)") is sxm
    assert find_gpu("RTX 4090 (laptop?)") is find_gpu("RTX 4090")


def test_binned_apple_variant_is_picked_by_its_gpu_cores() -> None:
    full, binned = find_chip("M1 Max"), find_chip("M1 Max", gpu_cores=24)
    assert full is not None
    assert binned is not None
    assert (full.gpu_cores, binned.gpu_cores) == (32, 24)  # without a core count: the full chip, as before
    assert binned.bandwidth_gbs == full.bandwidth_gbs
    assert binned.tflops
    assert full.tflops
    assert binned.tflops < full.tflops
    hw = simulate(Simulation(gpus=("M1 Max 24-core 32GB",)), lambda: BASE)
    assert hw.apple is not None
    assert hw.apple.gpu_cores == 24
    hw = simulate(Simulation(gpus=("M1 Max 64GB",)), lambda: BASE)
    assert hw.apple is not None
    assert hw.apple.gpu_cores == 32


def test_list_gpus_lists_them() -> None:
    result = CliRunner().invoke(cli, ["probe", "--list-gpus"], env={"COLUMNS": "200"})  # long names unwrapped
    assert result.exit_code == 0, result.output
    for name in {n for _, n, *_ in ISSUE_CARDS} | {"NVIDIA GeForce RTX 2070"}:
        assert name in result.output, name
    assert "Apple M1 Max (24-core GPU)" in result.output
    assert "Apple M3 Ultra (60-core GPU)" in result.output
    doc = json.loads(CliRunner().invoke(cli, ["probe", "--list-gpus", "--json"]).stdout)
    listed = {g["name"]: g for g in doc["gpus"]}
    assert listed["Intel Arc B580"]["vendor"] == "intel"
    assert listed["AMD Radeon 780M"]["unified_memory"] is True
