"""CPU-only plans for another machine: `--cpu NAME` and `--ram-bandwidth GBS` (issue 22, item 3), and the
CPU table behind them (profiles/cpus.toml)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

import ollama_fit
from ollama_fit.cli import cli
from ollama_fit.errors import InvalidInput, ProfileError
from ollama_fit.hardware import cpus
from ollama_fit.hardware.cpus import MemoryConfig, find_cpu, known_cpus, memory_configs
from ollama_fit.hardware.model import Cpu, Gpu, Hardware
from ollama_fit.hardware.simulate import SIMULATED_CPU, Simulation, simulate
from ollama_fit.profiles import load_profile, profile_names

GiB = 1024**3
SOURCE = Path(__file__).resolve().parent.parent
FROM_SOURCE = Path(ollama_fit.__file__).resolve().is_relative_to(SOURCE / "ollama_fit")
# one model at its largest quant that fits, whatever the speed: two plans then differ in speed alone
SAME_PICK = ["--ram", "64GiB", "--offline", "--json", "--model", "qwen3:8b", "--min-speed", "0"]
HERE = Hardware(
    gpus=(Gpu(0, "nvidia", "NVIDIA GeForce RTX 3060", 12 * GiB, 12 * GiB, bandwidth_gbs=360),),
    ram_total_bytes=32 * GiB,
    ram_available_bytes=30 * GiB,
    cpu=Cpu("Test CPU", 4, 8, bandwidth_gbs=30.0),
    notes=("probed here",),
)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def planned(*args: str) -> dict:
    result = invoke("plan", *args, *SAME_PICK)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sim(**kw) -> Hardware:
    return simulate(Simulation(**kw), lambda: HERE)


# ----- the table -----


def test_the_profile_is_shipped_and_loads():
    assert "cpus" in profile_names()
    data = load_profile("cpus")
    assert data["cpu"]
    assert data["memory"]


@pytest.mark.skipif(FROM_SOURCE, reason="ollama_fit is imported from the source tree (editable or python -m pytest)")
def test_the_profile_loads_from_the_installed_package():
    resource = resources.files("ollama_fit").joinpath("profiles", "cpus.toml")
    assert resource.is_file()
    assert "site-packages" in str(resource) or "dist-packages" in str(resource)


@pytest.mark.parametrize(
    ("name", "gbs"),
    [
        ("DDR4-3200 dual channel", 51.2),  # 2 x 8 B x 3200 MT/s
        ("DDR5-5600 dual channel", 89.6),
        ("DDR5-6400 dual channel", 102.4),
        ("LPDDR5X-7500 128-bit", 120.0),
        ("LPDDR5X-8533 128-bit", 136.5),  # 2 x 8 B x 8533 = 136.528
        ("DDR5-4800 8-channel", 307.2),
        ("DDR5-4800 12-channel", 460.8),  # 12 x 8 B x 4800
    ],
)
def test_peak_bandwidth_is_channels_times_bus_width_times_transfers(name, gbs):
    (config,) = [m for m in memory_configs() if m.name == name]
    assert config.bandwidth_gbs == gbs


def test_peak_bandwidth_worked_by_hand():
    assert MemoryConfig("x", "DDR5", mts=6000, channels=2).bandwidth_gbs == 96.0
    assert MemoryConfig("x", "LPDDR5X", mts=8000, channels=4, bus_bits=64).bandwidth_gbs == 256.0


def test_the_cpu_table_is_sane():
    table = known_cpus()
    names = [c.name for c in table]
    assert len(names) == len(set(names))
    aliases = [cpus.normalize_cpu(a) for c in table for a in (c.name, *c.aliases)]
    assert len(aliases) == len(set(aliases)), "every name and alias resolves to one CPU only"
    assert {c.segment for c in table} == {"desktop", "laptop", "workstation", "server"}
    assert not any("apple" in n.lower() or n.startswith("M") for n in names)  # Apple chips are GPUs here
    for c in table:
        assert c.physical_cores <= c.logical_cores <= 2 * c.physical_cores, c.name
        assert all(m.channels == c.channels for m in c.memory), c.name
        assert 40 <= c.bandwidth_gbs <= 700, c.name
    assert find_cpu("EPYC 9654").bandwidth_gbs == 460.8
    assert find_cpu("Threadripper PRO 7995WX").channels == 8


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("Ryzen 9 7950X", "Ryzen 9 7950X"),
        ("7950x", "Ryzen 9 7950X"),
        ("AMD Ryzen 9 7950X 16-Core Processor", "Ryzen 9 7950X"),  # /proc/cpuinfo's model name
        ("Intel(R) Core(TM) i9-14900K CPU @ 3.20GHz", "Core i9-14900K"),
        ("i9-13900K", "Core i9-13900K"),
        ("AMD Ryzen 7 8845HS w/ Radeon 780M Graphics", "Ryzen 7 8845HS"),
        ("Core Ultra 7 258V", "Core Ultra 7 258V"),
    ],
)
def test_names_as_people_and_probes_write_them(typed, name):
    found = find_cpu(typed)
    assert found is not None
    assert found.name == name


def test_a_memory_of_another_channel_count_is_a_broken_profile(monkeypatch):
    broken = {
        "memory": [{"name": "DDR5-4800 8-channel", "type": "DDR5", "mts": 4800, "channels": 8}],
        "cpu": [
            {
                "name": "Some CPU",
                "vendor": "amd",
                "segment": "desktop",
                "cores": 8,
                "threads": 16,
                "channels": 2,
                "memory": ["DDR5-4800 8-channel"],
            }
        ],
    }
    monkeypatch.setattr(cpus, "load_profile", lambda name: broken)
    cpus.memory_configs.cache_clear()
    cpus.known_cpus.cache_clear()
    try:
        with pytest.raises(ProfileError, match="channel count"):
            cpus.known_cpus()
    finally:
        monkeypatch.undo()
        cpus.memory_configs.cache_clear()
        cpus.known_cpus.cache_clear()


# ----- simulated machines -----


def test_a_named_cpu_alone_is_a_cpu_only_machine():
    hw = sim(cpu="Ryzen 9 7950X", ram="64GiB")
    assert hw.gpus == ()
    assert hw.cpu == Cpu("AMD Ryzen 9 7950X", 16, 32, bandwidth_gbs=83.2)  # DDR5-5200 dual channel
    assert hw.ram_total_bytes == 64 * GiB
    assert hw.source == "simulated"
    assert hw.simulated
    assert "probed here" not in hw.notes  # this machine's notes are not the simulated one's


def test_ram_bandwidth_alone_is_the_default_cpu_at_that_bandwidth():
    hw = sim(ram_bandwidth=40.0)
    assert hw.gpus == ()
    assert hw.cpu == Cpu(SIMULATED_CPU.model, 8, 16, bandwidth_gbs=40.0)
    assert hw.ram_total_bytes == 32 * GiB  # this machine's, said in a note
    assert any("--ram" in n for n in hw.notes)


def test_ram_bandwidth_overrides_the_named_cpus():
    hw = sim(cpu="EPYC 9654", ram_bandwidth=300.0)
    assert (hw.cpu.physical_cores, hw.cpu.bandwidth_gbs) == (96, 300.0)


def test_a_named_cpu_beside_simulated_cards():
    hw = sim(gpus=("RTX 4090",), cpu="Core i9-14900K")
    assert [g.name for g in hw.gpus] == ["NVIDIA GeForce RTX 4090"]
    assert hw.cpu == Cpu("Intel Core i9-14900K", 24, 32, bandwidth_gbs=89.6)
    assert sim(gpus=("RTX 4090",)).cpu == SIMULATED_CPU  # unchanged without --cpu


def test_a_saved_probe_keeps_its_gpus_and_takes_the_cpu(tmp_path):
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(HERE.to_dict()))
    hw = simulate(Simulation(hardware_file=path, cpu="Ryzen 7 9800X3D"), lambda: pytest.fail("no probe"))
    assert [g.name for g in hw.gpus] == ["NVIDIA GeForce RTX 3060"]
    assert (hw.cpu.model, hw.cpu.physical_cores, hw.cpu.bandwidth_gbs) == ("AMD Ryzen 7 9800X3D", 8, 89.6)
    stated = simulate(Simulation(hardware_file=path, ram_bandwidth=70.0), lambda: pytest.fail("no probe"))
    assert (stated.cpu.model, stated.cpu.physical_cores, stated.cpu.bandwidth_gbs) == ("Test CPU", 4, 70.0)


def test_an_apple_chip_has_its_own_cpu_and_memory():
    with pytest.raises(InvalidInput, match="share one memory"):
        sim(gpus=("M4 Max 128GB",), cpu="Ryzen 9 7950X")
    with pytest.raises(InvalidInput, match="share one memory"):
        sim(gpus=("M4 Max 128GB",), ram_bandwidth=100.0)


def test_values_are_checked_before_this_machine_is_probed():
    def no_probe() -> Hardware:
        raise AssertionError("probed")

    with pytest.raises(InvalidInput, match="unknown CPU"):
        simulate(Simulation(cpu="Ryzen 9 7900X"), no_probe)
    with pytest.raises(InvalidInput, match="invalid --ram-bandwidth"):
        simulate(Simulation(ram_bandwidth=float("nan")), no_probe)


# ----- the command line -----


def test_plan_for_a_named_cpu_gets_its_cores_and_bandwidth():
    named = planned("--cpu", "Ryzen 9 7950X")
    assert named["hardware"]["gpus"] == []
    assert named["hardware"]["source"] == "simulated"
    assert named["hardware"]["cpu"] == {
        "model": "AMD Ryzen 9 7950X",
        "physical_cores": 16,
        "logical_cores": 32,
        "bandwidth_gbs": 83.2,
    }
    slower = planned("--cpu", "Ryzen 9 7950X", "--ram-bandwidth", "40")
    assert slower["hardware"]["cpu"]["bandwidth_gbs"] == 40.0
    assert slower["hardware"]["cpu"]["physical_cores"] == 16
    pick, slow_pick = named["choice"], slower["choice"]
    assert (pick["model"]["id"], pick["quant"]) == (slow_pick["model"]["id"], slow_pick["quant"])
    # decoding on a CPU streams the weights from RAM: 83.2 GB/s decodes faster than 40 (about 2x)
    assert pick["speed"]["tps"] > 1.5 * slow_pick["speed"]["tps"]


def test_the_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("OLLAMA_FIT_RAM_BANDWIDTH_GBS", "200")
    assert planned("--ram-bandwidth", "40")["hardware"]["cpu"]["bandwidth_gbs"] == 40.0
    assert planned("--cpu", "Ryzen 9 7950X")["hardware"]["cpu"]["bandwidth_gbs"] == 83.2


def test_an_unknown_cpu_is_refused_with_a_hint():
    result = invoke("plan", "--cpu", "Ryzen 9 7900X", "--offline")
    assert result.exit_code == InvalidInput.exit_code == 3
    assert "Error: unknown CPU 'Ryzen 9 7900X'" in result.stderr
    assert "Hint: did you mean 'Ryzen 9 7950X'" in result.stderr
    assert "probe --list-cpus" in result.stderr
    apple = invoke("probe", "--cpu", "M3 Max")
    assert apple.exit_code == 3
    assert '--gpu "M3 Max 64GB"' in apple.stderr


@pytest.mark.parametrize("gbs", ["0", "-5", "0.0", "nan", "inf", "51200"])
def test_a_bandwidth_out_of_range_is_refused_with_a_hint(gbs):
    result = invoke("plan", "--ram-bandwidth", gbs, "--offline")
    assert result.exit_code == 3, result.output
    assert "invalid --ram-bandwidth" in result.stderr
    assert "\nHint: the peak RAM bandwidth in GB/s" in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("command", [["list"], ["inspect", "qwen3:8b"], ["serve-cmd", "qwen3:8b"], ["probe"]])
def test_every_command_with_gpu_takes_cpu(command):
    result = invoke(*command, "--cpu", "Ryzen 9 7900X")
    assert result.exit_code == 3, result.output
    assert "unknown CPU" in result.stderr


def test_probe_lists_the_cpus_and_the_memory_configurations():
    text = invoke("probe", "--list-cpus")
    assert text.exit_code == 0, text.output
    assert "Ryzen 9 7950X" in text.stdout
    assert "EPYC 9654" in text.stdout
    assert "460.8 GB/s" in text.stdout
    assert "DDR4-3200 dual channel" in text.stdout
    data = json.loads(invoke("probe", "--list-cpus", "--json").stdout)
    (ryzen,) = [c for c in data["cpus"] if c["name"] == "Ryzen 9 7950X"]
    assert ryzen["physical_cores"] == 16
    assert ryzen["bandwidth_gbs"] == 83.2
    assert ryzen["memory"] == ["DDR5-5200 dual channel"]
    assert {"name": "DDR4-3200 dual channel", "bandwidth_gbs": 51.2}.items() <= data["memory"][0].items()
    both = json.loads(invoke("probe", "--list-cpus", "--list-gpus", "--json").stdout)
    assert {"cpus", "memory", "gpus", "apple"} <= both.keys()
