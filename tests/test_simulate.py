from __future__ import annotations

import json

import pytest

from ollama_fit.errors import InvalidInput
from ollama_fit.hardware.model import Cpu, Hardware, ProbeReport, budget
from ollama_fit.hardware.simulate import Simulation, simulate

GiB = 1024**3
HERE = Hardware(
    gpus=(),
    ram_total_bytes=32 * GiB,
    ram_available_bytes=30 * GiB,
    cpu=Cpu("Test CPU", 8, 16),
    notes=("probed here",),
)


def sim(**kw):
    return simulate(Simulation(**kw), lambda: HERE)


def test_no_simulation_returns_the_probe():
    assert sim() is HERE


def test_known_gpu_by_alias_and_full_name():
    hw = sim(gpus=("RTX 4060 Laptop",))
    (gpu,) = hw.gpus
    assert gpu.name == "NVIDIA GeForce RTX 4060 Laptop GPU"
    assert gpu.memory_total_bytes == 8 * GiB
    assert gpu.bandwidth_gbs == 256
    assert hw.ram_total_bytes == 32 * GiB  # this machine's RAM, said in a note
    assert any("--ram" in n for n in hw.notes)
    assert sim(gpus=("NVIDIA GeForce RTX 4090",)).gpus[0].memory_total_bytes == 24 * GiB


def test_count_prefix_and_repeated_gpus():
    hw = sim(gpus=("2x RTX 3090", "RTX 4090"))
    assert [g.name for g in hw.gpus] == ["NVIDIA GeForce RTX 3090"] * 2 + ["NVIDIA GeForce RTX 4090"]
    assert [g.index for g in hw.gpus] == [0, 1, 2]
    b = budget(hw)
    assert len(b.gpus) == 3  # never summed into one device
    assert all(d.usable_bytes == 23 * GiB for d in b.gpus)


@pytest.mark.parametrize(
    ("vram", "sizes"),
    [
        (("24GiB",), [24 * GiB]),
        (("2x24GiB",), [24 * GiB, 24 * GiB]),
        (("16GiB", "8GiB"), [16 * GiB, 8 * GiB]),
        (("12",), [12 * GiB]),
    ],
)
def test_vram(vram, sizes):
    assert [g.memory_total_bytes for g in sim(vram=vram).gpus] == sizes


def test_ram_override_with_and_without_gpus():
    assert sim(ram="64GiB").ram_available_bytes == 64 * GiB
    hw = sim(gpus=("RTX 4090",), ram="128GB")
    assert hw.ram_total_bytes == 128 * 1000**3


def test_apple_chip_with_ram():
    hw = sim(gpus=("M4 Max 128GB",))
    (gpu,) = hw.gpus
    assert gpu.vendor == "apple"
    assert gpu.bandwidth_gbs == 546
    assert gpu.memory_total_bytes == 96 * GiB
    assert hw.unified_memory
    assert hw.ram_total_bytes == 128 * GiB
    assert sim(gpus=("M4 Max",), ram="36GiB").gpus[0].bandwidth_gbs == 410


def test_unified_known_gpu_takes_ram_from_the_board():
    hw = sim(gpus=("DGX Spark",))
    assert hw.unified_memory
    assert hw.ram_total_bytes == 128 * GiB


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"vram": ("-3",)}, "must be positive"),
        ({"vram": ("lots",)}, "invalid --vram"),
        ({"vram": ("0x24GiB",)}, "count must be 1 to 64"),
        ({"gpus": ("no such card",)}, "unknown GPU"),
        ({"gpus": ("M3 Max 40GB",)}, "does not come with 40 GB"),
        ({"gpus": ("M3 Max",)}, "say how much memory"),
        ({"ram": "-1GiB"}, "must be positive"),
    ],
)
def test_bad_values_raise_invalid_input_with_hint(kw, message):
    with pytest.raises(InvalidInput, match=message) as info:
        sim(**kw)
    assert info.value.hint


def test_unknown_gpu_hint_suggests_close_names():
    with pytest.raises(InvalidInput) as info:
        sim(gpus=("RTX 4099",))
    assert "RTX 4090" in info.value.hint


def test_saved_probe_round_trips(tmp_path):
    original = sim(gpus=("2x RTX 3090",), ram="64GiB")
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(ProbeReport(original, budget(original)).to_dict()))
    loaded = sim(hardware_file=path)
    assert loaded.gpus == original.gpus
    assert loaded.ram_available_bytes == 64 * GiB
    assert loaded.source == str(path)
    assert sim(hardware_file=path, ram="8GiB").ram_available_bytes == 8 * GiB


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"ram_total_bytes": 1}', "not a probe document"),
        (
            '{"gpus": [{"vendor": "nvidia", "memory_total_bytes": -5, "memory_free_bytes": 0}], '
            '"ram_total_bytes": 1, "ram_available_bytes": 1}',
            "non-negative integer",
        ),
        (
            '{"gpus": [{"vendor": "matrox", "memory_total_bytes": 5, "memory_free_bytes": 0}], '
            '"ram_total_bytes": 1, "ram_available_bytes": 1}',
            "vendor must be one of",
        ),
        ('{"gpus": [], "ram_total_bytes": "lots", "ram_available_bytes": 1}', "ram_total_bytes"),
    ],
)
def test_malformed_hardware_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        sim(hardware_file=path)


def test_missing_hardware_file(tmp_path):
    with pytest.raises(InvalidInput, match="not found"):
        sim(hardware_file=tmp_path / "nope.json")


def test_hardware_file_with_gpu_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="cannot be combined"):
        sim(hardware_file=tmp_path / "x.json", gpus=("RTX 4090",))
