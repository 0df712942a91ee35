from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ollama_fit import __version__
from ollama_fit.cli import cli

GiB = 1024**3


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_probe_runs_for_real_on_this_machine():
    result = invoke("probe")
    assert result.exit_code == 0, result.output
    assert "Budget" in result.output
    assert "RAM" in result.output


def test_probe_json_shape_on_this_machine():
    result = invoke("probe", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    for key in ("gpus", "unified_memory", "ram_total_bytes", "ram_available_bytes", "budget", "notes"):
        assert key in doc
    assert isinstance(doc["ram_total_bytes"], int)
    assert doc["ram_total_bytes"] > 0
    keep = max(2 * GiB, doc["ram_total_bytes"] // 8)  # room for the system and the desktop
    assert doc["budget"]["host"]["usable_bytes"] == max(0, doc["budget"]["host"]["free_bytes"] - keep)
    if not doc["gpus"]:  # this CI box: say so plainly
        assert any("no GPU found" in n for n in doc["notes"])


def test_probe_gpu_simulation_table_and_json():
    result = invoke("probe", "--gpu", "RTX 4060 Laptop")
    assert result.exit_code == 0
    assert "NVIDIA GeForce RTX 4060 Laptop GPU" in result.output
    assert "7.0 GiB" in result.output  # 8 GiB minus the 1 GiB headroom
    doc = json.loads(invoke("probe", "--gpu", "RTX 4060 Laptop", "--json").stdout)
    (gpu,) = doc["gpus"]
    assert gpu["vendor"] == "nvidia"
    assert gpu["memory_total_bytes"] == 8 * GiB
    assert gpu["bandwidth_gbs"] == 256
    assert doc["budget"]["gpus"][0]["usable_bytes"] == 7 * GiB


def test_probe_headroom_option():
    doc = json.loads(invoke("probe", "--vram", "24GiB", "--headroom", "2GiB", "--json").stdout)
    assert doc["budget"]["gpus"][0]["usable_bytes"] == 22 * GiB
    doc = json.loads(invoke("probe", "--vram", "24GiB", "--headroom", "0", "--json").stdout)
    assert doc["budget"]["gpus"][0]["usable_bytes"] == 24 * GiB


def test_probe_hardware_file_round_trip(tmp_path):
    saved = tmp_path / "saved.json"
    saved.write_text(invoke("probe", "--vram", "2x24GiB", "--ram", "64GiB", "--json").stdout)
    doc = json.loads(invoke("probe", "--hardware", str(saved), "--json").stdout)
    assert [g["memory_total_bytes"] for g in doc["gpus"]] == [24 * GiB, 24 * GiB]
    assert doc["ram_total_bytes"] == 64 * GiB
    assert "GPU 1" in invoke("probe", "--hardware", str(saved)).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--vram", "-3"), "Error: invalid --vram '-3': it must be positive"),
        (("--gpu", "no such card"), "Error: unknown GPU 'no such card'"),
        (("--ram", "twelve"), "Error: invalid --ram 'twelve'"),
    ],
)
def test_bad_values_give_one_line_error_hint_and_exit_3(args, message):
    result = invoke("probe", *args)
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert lines[0] == message
    assert lines[1].startswith("Hint: ")
    assert len(lines) == 2
    assert result.stdout == ""


def test_malformed_hardware_file_exit_3(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = invoke("probe", "--hardware", str(bad))
    assert result.exit_code == 3
    assert "not valid JSON" in result.stderr


def test_list_gpus():
    result = invoke("probe", "--list-gpus")
    assert result.exit_code == 0
    assert "NVIDIA GeForce RTX 4090" in result.output
    assert "Apple M4 Max (40-core GPU)" in result.output
    doc = json.loads(invoke("probe", "--list-gpus", "--json").stdout)
    assert any(g["name"] == "NVIDIA H200" for g in doc["gpus"])


def test_installed_console_script_and_module_run():
    exe = shutil.which("ollama-fit", path=os.path.dirname(sys.executable))
    assert exe, "the console script must be installed next to the interpreter"
    done = subprocess.run([exe, "probe", "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ram_total_bytes"] > 0
    done = subprocess.run(
        [sys.executable, "-m", "ollama_fit", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert __version__ in done.stdout
