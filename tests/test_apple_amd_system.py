from __future__ import annotations

import pytest
from fakes.apple import FakeMac

from ollama_fit.hardware.amd import probe_amd
from ollama_fit.hardware.apple import probe_apple, suggested_wired_limit_mb
from ollama_fit.hardware.model import budget
from ollama_fit.hardware.probe import Probes, probe
from ollama_fit.hardware.system import SystemReading, cgroup_headroom, probe_system

GiB = 1024**3
MiB = 1024**2


@pytest.mark.parametrize(
    ("brand", "ram_gib", "cores", "expected_limit", "bandwidth"),
    [
        ("Apple M1", 16, 8, 16 * GiB * 2 // 3, 68.25),  # 10.67 GiB, as reported for 16 GB Macs
        ("Apple M4 Pro", 24, 16, 24 * GiB * 2 // 3, 273),
        ("Apple M4 Max", 48, 40, 48 * GiB * 3 // 4, 546),
        ("Apple M3 Max", 128, 40, 96 * GiB, 400),  # Ollama's source comment: 98304 MiB
    ],
)
def test_apple_default_rule_without_metal_or_wired_limit(brand, ram_gib, cores, expected_limit, bandwidth):
    reading = probe_apple(FakeMac(brand=brand, memsize=ram_gib * GiB, cores=cores))
    assert reading.gpu is not None
    assert reading.gpu.memory_free_bytes == expected_limit
    assert reading.gpu.unified_memory
    assert reading.gpu.bandwidth_gbs == bandwidth
    assert "guess" in reading.info.gpu_limit_source
    assert any("pyobjc-framework-Metal" in n for n in reading.notes)


def test_apple_metal_value_wins():
    metal = int(107.52 * GiB)  # M5 Max 128 GB on macOS 26
    reading = probe_apple(FakeMac(brand="Apple M5 Max", memsize=128 * GiB, metal=metal, cores=40))
    assert reading.gpu.memory_total_bytes == metal
    assert reading.info.gpu_limit_source == "Metal recommendedMaxWorkingSetSize"
    assert reading.gpu.bandwidth_gbs == 614


@pytest.mark.parametrize("ram_gib", [16, 24, 48, 128])
def test_apple_wired_limit_is_used_without_metal(ram_gib):
    wired = (ram_gib - 4) * 1024
    reading = probe_apple(FakeMac(memsize=ram_gib * GiB, wired_limit_mb=wired))
    assert reading.gpu.memory_free_bytes == wired * MiB
    assert reading.info.wired_limit_mb == wired
    assert reading.info.gpu_limit_source == "iogpu.wired_limit_mb"


def test_apple_suggests_raising_the_wired_limit():
    reading = probe_apple(FakeMac(brand="Apple M2", memsize=16 * GiB, cores=10))
    note = next(n for n in reading.notes if "iogpu.wired_limit_mb=" in n)
    assert f"iogpu.wired_limit_mb={suggested_wired_limit_mb(16 * GiB)}" in note
    assert suggested_wired_limit_mb(16 * GiB) == 12 * 1024
    assert suggested_wired_limit_mb(128 * GiB) == 112 * 1024


def test_apple_m3_max_variant_by_cores():
    assert probe_apple(FakeMac(memsize=36 * GiB, cores=30)).gpu.bandwidth_gbs == 300
    assert probe_apple(FakeMac(memsize=48 * GiB, cores=40)).gpu.bandwidth_gbs == 400


def test_intel_mac_has_no_metal_budget():
    reading = probe_apple(FakeMac(brand="Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz"))
    assert reading.gpu is None


def _amd_card(root, n, vram_total, vram_used, gtt_total=0, gtt_used=0, name=None, vendor="0x1002"):
    dev = root / "sys/class/drm" / f"card{n}" / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "device").write_text("0x744c\n")
    (dev / "mem_info_vram_total").write_text(f"{vram_total}\n")
    (dev / "mem_info_vram_used").write_text(f"{vram_used}\n")
    (dev / "mem_info_gtt_total").write_text(f"{gtt_total}\n")
    (dev / "mem_info_gtt_used").write_text(f"{gtt_used}\n")
    if name:
        (dev / "product_name").write_text(name + "\n")
    # connector entries sit beside the cards and must be skipped
    (root / "sys/class/drm" / f"card{n}-DP-1").mkdir()


def test_amd_discrete_and_apu_from_sysfs(tmp_path):
    _amd_card(tmp_path, 0, 24 * GiB, 1 * GiB, 16 * GiB, 0, name="Radeon RX 7900 XTX")
    _amd_card(tmp_path, 1, 512 * MiB, 100 * MiB, 32 * GiB, 2 * GiB)  # APU: small VRAM, big GTT
    _amd_card(tmp_path, 2, 8 * GiB, 0, vendor="0x8086")  # an Intel card is not ours
    gpus, notes = probe_amd(tmp_path)
    assert [g.name for g in gpus] == ["AMD Radeon RX 7900 XTX", "AMD GPU (PCI device 0x744c)"]
    assert gpus[0].memory_free_bytes == 23 * GiB
    assert not gpus[0].unified_memory
    assert gpus[1].unified_memory
    assert gpus[1].memory_total_bytes == 512 * MiB + 32 * GiB
    assert gpus[1].memory_free_bytes == 512 * MiB + 32 * GiB - 100 * MiB - 2 * GiB
    assert any("APU" in n for n in notes)


def test_amd_absent_sysfs(tmp_path):
    assert probe_amd(tmp_path) == ((), ())


def _cgroup(root, limit, current, path="/docker/abc"):
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(f"0::{path}\n")
    folder = root / "sys/fs/cgroup" / path.lstrip("/")
    folder.mkdir(parents=True)
    (folder / "memory.max").write_text(f"{limit}\n")
    (folder / "memory.current").write_text(f"{current}\n")
    (root / "sys/fs/cgroup/memory.max").write_text("max\n")


def test_cgroup_v2_limit_caps_available_ram(tmp_path):
    _cgroup(tmp_path, 4 * GiB, 1 * GiB)
    assert cgroup_headroom(tmp_path) == (4 * GiB, 3 * GiB)
    reading = probe_system(tmp_path)
    assert reading.ram_available_bytes == 3 * GiB
    assert reading.cgroup_limit_bytes == 4 * GiB
    assert any("cgroup" in n for n in reading.notes)


def test_unlimited_cgroup_is_ignored(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory.max").write_text("max\n")
    assert cgroup_headroom(tmp_path) is None


def test_cpu_only_box_with_cgroup_limit_plans_on_ram(tmp_path):
    import pynvml
    from fakes.nvml import FakeNvml

    _cgroup(tmp_path, 6 * GiB, 2 * GiB)
    hw = probe(
        Probes(
            nvml=FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND),
            sysfs_root=tmp_path,
            is_apple_silicon=False,
            jetson=False,
        )
    )
    assert hw.gpus == ()
    assert hw.ram_available_bytes == 4 * GiB
    assert any("no GPU found" in n for n in hw.notes)
    b = budget(hw)
    assert b.gpus == ()
    # the desktop keeps an eighth of the RAM (at least 2 GiB) out of what the cgroup leaves
    assert b.host.usable_bytes == 4 * GiB - max(2 * GiB, hw.ram_total_bytes // 8)


def test_apple_probe_end_to_end_budget_is_one_pool():
    system = SystemReading(128 * GiB, 100 * GiB, cpu=_cpu(), cgroup_limit_bytes=None, notes=())
    hw = probe(Probes(apple=FakeMac(), system=system, is_apple_silicon=True))
    assert hw.unified_memory
    assert hw.apple is not None
    b = budget(hw)
    assert b.unified_memory
    # one pool: the GPU may wire its working set (96 GiB) only as far as the available RAM leaves the desktop
    # its room (128 GiB / 8 = 16 GiB): min(96, 100 - 16) - 1 GiB headroom
    assert b.gpus[0].usable_bytes == 83 * GiB
    assert b.host.free_bytes == 100 * GiB  # the pool the GPU share and the rest come out of together
    assert b.host.usable_bytes == 84 * GiB


def _cpu():
    from ollama_fit.hardware.model import Cpu

    return Cpu(model="Apple M3 Max", physical_cores=16, logical_cores=16)


def test_linux_ram_and_cores_are_read_from_proc_and_sys_as_psutil_reads_them(tmp_path):
    import sys

    import psutil

    from ollama_fit.hardware import system

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text(
        "MemTotal:       65536000 kB\nMemFree:         1000000 kB\nMemAvailable:   32768000 kB\nHugePages_Total: 0\n"
    )
    for cpu, core in enumerate(["0,4", "1,5", "2,6", "3,7", "0,4", "1,5", "2,6", "3,7"]):  # 4 cores, 2 threads
        topology = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        (topology / "core_cpus_list").write_text(core + "\n")
    if sys.platform.startswith("linux"):
        reading = system.probe_system(tmp_path)
        assert (reading.ram_total_bytes, reading.ram_available_bytes) == (65536000 * 1024, 32768000 * 1024)
        assert reading.cpu.physical_cores == 4
        here = system.probe_system()  # this machine: the same figures psutil gives (available moves a little)
        assert here.ram_total_bytes == psutil.virtual_memory().total
        assert abs(here.ram_available_bytes - psutil.virtual_memory().available) < 256 * 2**20
        assert (here.cpu.physical_cores, here.cpu.logical_cores) == (
            psutil.cpu_count(logical=False),
            psutil.cpu_count(logical=True),
        )
    (tmp_path / "proc/meminfo").write_text("MemTotal: 1 kB\n")  # no MemAvailable (a kernel before 3.14): psutil
    assert system._proc_memory(tmp_path) is None
