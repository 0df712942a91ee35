from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ollama_fit.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_plan_runs_on_this_gpu_less_machine():
    result = invoke("plan")
    assert result.exit_code == 0, result.output
    assert "on the CPU, from RAM" in result.stdout
    assert "Pick" in result.stdout
    assert "Why" in result.stdout


def test_plan_json_for_a_simulated_card():
    result = invoke("plan", "--gpu", "RTX 4090", "--ram", "64GiB", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["choice"]["model"]["params"] >= 26e9  # a ~27B model at Q4_K_M or better fills a 24 GB card
    assert doc["choice"]["placement"]["kind"] == "gpu"
    assert doc["choice"]["memory"]["device_bytes"] <= doc["hardware"]["budget"]["gpus"][0]["usable_bytes"]
    assert len(doc["alternatives"]) == 3


def test_plan_table_shows_memory_bars_per_device():
    result = invoke("plan", "--vram", "2x24GiB", "--ram", "64GiB")
    assert result.exit_code == 0
    assert "  GPU 0  [" in result.stdout
    assert "  GPU 1  [" in result.stdout
    assert "split across GPUs" in result.stdout
    assert "weights" in result.stdout
    assert "KV" in result.stdout


def test_plan_task_and_ctx_options():
    doc = json.loads(
        invoke("plan", "--gpu", "RTX 4090", "--task", "coding", "--ctx", "32k", "--kv-type", "q8_0", "--json").stdout
    )
    assert doc["choice"]["ctx"] == 32768
    assert "coding" in doc["choice"]["model"]["capabilities"]
    doc = json.loads(invoke("plan", "--gpu", "H200", "--model", "llama3.2:1b", "--ctx", "max", "--json").stdout)
    assert doc["choice"]["ctx"] == 131072


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--ctx", "lots"), 3, "invalid --ctx 'lots'"),
        (("--task", "coding", "--min-quant", "Q3_K_M"), 3, "too aggressive for the coding task"),
        (("--min-quant", "Q9_X"), 3, "unknown quantization"),
        (("--vram", "1GiB", "--ram", "1GiB"), 5, "nothing fits"),
        (("--task", "fine-tuning"), 6, "fine-tuning must run in FP16/BF16"),
        (("--kv-type", "q8_0", "--flash-attn", "off"), 3, "needs flash attention"),
    ],
)
def test_plan_errors_have_documented_exit_codes(args, code, message):
    result = invoke("plan", *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.splitlines()[1].startswith("Hint: ")
    assert result.stdout == ""


def test_q2_warning_goes_to_stderr():
    result = invoke("plan", "--vram", "16GiB", "--ram", "3GiB", "--min-quant", "Q2_K", "--json")
    assert result.exit_code == 0
    assert "Warning: Q2_K allowed" in result.stderr
    json.loads(result.stdout)  # stdout stays pure JSON
