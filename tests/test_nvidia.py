from __future__ import annotations

from pathlib import Path

import pynvml
from fakes.nvml import A100_80, RTX_3060, RTX_4090, FakeGpu, FakeNvml, from_fixture

from ollama_fit.hardware.nvidia import probe_nvidia

GiB = 1024**3
RAM = (64 * GiB, 50 * GiB)


def meminfo() -> tuple[int, int]:
    return RAM


def run(nvml: FakeNvml, **kw):
    kw.setdefault("jetson", False)
    kw.setdefault("wsl_lib", Path("/nonexistent/libnvidia-ml.so.1"))
    return probe_nvidia(meminfo, nvml, **kw)


def test_no_library_is_a_note_not_an_error():
    reading = run(FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert reading.gpus == ()
    assert "no NVIDIA driver library" in reading.notes[0]


def test_driver_not_loaded():
    reading = run(FakeNvml(gpus=[FakeGpu(**RTX_4090)], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert reading.gpus == ()
    assert "driver is not loaded" in reading.notes[0]


def test_wsl2_library_path_is_preloaded_then_init_retried(tmp_path):
    lib = tmp_path / "libnvidia-ml.so.1"
    lib.write_bytes(b"")
    loaded: list[Path] = []
    nvml = FakeNvml(gpus=[FakeGpu(**RTX_4090)], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, init_failures=1)
    reading = run(nvml, wsl_lib=lib, preload=loaded.append)
    assert loaded == [lib]
    assert [g.name for g in reading.gpus] == ["NVIDIA GeForce RTX 4090"]


def test_one_real_h100_reading():
    reading = run(from_fixture("nvml-h100.json"))
    (gpu,) = reading.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.memory_total_bytes == 85520809984
    assert gpu.memory_free_bytes == 85017493504
    assert gpu.memory_reserved_bytes == 503316480
    assert gpu.bandwidth_gbs == 3352.3  # 5120 bits / 8 x 2619 MHz x 2
    assert gpu.compute_capability == "9.0"
    assert gpu.uuid == "GPU-802245a6-8af8-30e3-1572-9dacca2188b5"
    assert gpu.source == "nvml v2"
    assert reading.driver_version == "580.159.04"
    assert reading.cuda_driver_version == "13.0"
    assert reading.notes == ()


def test_h200_bandwidth_matches_the_recorded_formula():
    (gpu,) = run(from_fixture("nvml-h200.json")).gpus
    assert gpu.bandwidth_gbs == 4814.3
    assert gpu.memory_free_bytes == 150109880320


def test_two_mixed_gpus_are_reported_separately():
    reading = run(FakeNvml(gpus=[FakeGpu(**RTX_4090), FakeGpu(**RTX_3060)], cuda=12040))
    assert [g.index for g in reading.gpus] == [0, 1]
    assert [g.memory_free_bytes for g in reading.gpus] == [RTX_4090["free"], RTX_3060["free"]]
    assert reading.gpus[0].bandwidth_gbs == 1008.1  # 384 bits x 10501 MHz x 2
    assert reading.gpus[1].bandwidth_gbs == 360.0
    assert reading.cuda_driver_version == "12.4"


def test_mig_instances_become_separate_devices():
    slice_ = FakeGpu(name="NVIDIA A100-SXM4-80GB MIG 3g.40gb", total=40 * GiB, free=39 * GiB, reserved=0)
    small = FakeGpu(name="NVIDIA A100-SXM4-80GB MIG 1g.10gb", total=10 * GiB, free=9 * GiB, reserved=0)
    a100 = FakeGpu(**A100_80, mig_mode=(1, 1), mig=[slice_, None, small, None, None, None, None])
    reading = run(FakeNvml(gpus=[a100]))
    assert [g.name for g in reading.gpus] == [slice_.name, small.name]
    assert [g.memory_free_bytes for g in reading.gpus] == [39 * GiB, 9 * GiB]
    assert all(g.mig_parent == 0 for g in reading.gpus)
    assert reading.gpus[0].bandwidth_gbs < A100_80["bus_width"] / 8 * A100_80["mem_clock"] * 2 / 1000
    assert any("MIG mode" in n for n in reading.notes)


def test_v2_unsupported_falls_back_to_v1():
    (gpu,) = run(FakeNvml(gpus=[FakeGpu(**RTX_4090, v2=False)])).gpus
    assert gpu.source == "nvml v1"
    assert gpu.memory_free_bytes == RTX_4090["free"]
    assert gpu.memory_reserved_bytes == 0


def test_memory_not_supported_means_unified_memory_from_ram():
    gb10 = FakeGpu(name="NVIDIA GB10", memory_supported=False, cc=(12, 1), bus_width=None, mem_clock=None)
    (gpu,) = run(FakeNvml(gpus=[gb10])).gpus
    assert gpu.unified_memory
    assert (gpu.memory_total_bytes, gpu.memory_free_bytes) == RAM
    assert gpu.bandwidth_gbs is None


def test_jetson_uses_system_ram_even_if_nvml_answers():
    (gpu,) = run(FakeNvml(gpus=[FakeGpu(name="Orin")]), jetson=True).gpus
    assert gpu.unified_memory
    assert gpu.memory_free_bytes == RAM[1]


def test_lost_gpu_is_left_out_with_a_note():
    reading = run(FakeNvml(gpus=[FakeGpu(**RTX_4090, lost=True), FakeGpu(**RTX_3060)]))
    assert [g.name for g in reading.gpus] == ["NVIDIA GeForce RTX 3060"]
    assert reading.gpus[0].index == 0
    assert any("GPU 0 could not be read" in n for n in reading.notes)


def test_shutdown_is_always_called():
    nvml = FakeNvml(gpus=[FakeGpu(**RTX_4090)])
    run(nvml)
    assert nvml.shutdown_called
