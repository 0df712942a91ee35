"""Option values are checked once, the same way for every command, and every error has a hint (issue 15)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from ollama_fit.cli import cli
from ollama_fit.errors import InvalidInput
from ollama_fit.hub.repos import HubRef
from ollama_fit.units import parse_size
from ollama_fit.validate import MAX_CTX, parse_ctx

SIM = ["--vram", "24GiB", "--ram", "32GiB"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def assert_refused(result, code: int, says: str) -> None:
    assert result.exit_code == code, result.output
    assert says in result.stderr
    assert "\nHint: " in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize(
    ("ctx", "says"),
    [
        ("infk", "not a whole number"),
        ("nan", "not a whole number"),
        ("-5", "out of range"),
        ("0", "out of range"),
        ("1", "out of range"),
        ("99999999999", "out of range"),
        ("1.5", "not a whole number"),
        ("abc", "invalid --ctx"),
    ],
)
@pytest.mark.parametrize("command", ["plan", "inspect", "pull", "auto", "serve-cmd", "list"])
def test_ctx_is_validated_the_same_everywhere(command, ctx, says, tmp_path):
    target = {"inspect": [str(tmp_path / "m.gguf")], "pull": ["hf.co/acme/X-GGUF:Q4_K_M"]}.get(command, [])
    result = invoke(command, *target, *SIM, f"--ctx={ctx}", "--offline" if command == "plan" else "--json")
    assert_refused(result, 3, says)


def test_ctx_parsing():
    assert parse_ctx("32k") == 32768
    assert parse_ctx(" 8192 ") == 8192
    assert parse_ctx("max") is None
    assert parse_ctx(str(MAX_CTX)) == MAX_CTX
    with pytest.raises(InvalidInput, match="not available for inspect"):
        parse_ctx("max", allow_max=False, command="inspect")


def test_inspect_ctx_max_says_what_is_wrong(tmp_path):
    result = invoke("inspect", str(tmp_path / "m.gguf"), *SIM, "--ctx", "max")
    assert_refused(result, 3, "--ctx max is not available for inspect")
    assert "at least 256" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "hf.co/acme/X-GGUF:Q4_K_M", "--ctx", "max"],
        ["pull", "qwen3:8b", "--quant", "Q4_K_M", "--ctx", "max"],
        ["serve-cmd", "hf.co/acme/X-GGUF:Q4_K_M", "--ctx", "max"],
    ],
)
def test_ctx_max_without_a_plan_is_refused_not_turned_into_8192(args):
    assert_refused(invoke(*args, *SIM), 3, "--ctx max is not available")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["plan", "--parallel", "0"], "--parallel must be at least 1"),
        (["plan", "--min-speed", "nan"], "invalid --min-speed nan"),
        (["plan", "--min-speed", "-1"], "invalid --min-speed -1"),
        (["plan", "--min-speed", "inf"], "invalid --min-speed inf"),
        (["inspect", "x.gguf", "--ubatch", "0"], "--ubatch must be at least 1"),
        (["inspect", "x.gguf", "--parallel", "-2"], "--parallel must be at least 1"),
    ],
)
def test_counts_and_speeds_are_validated_with_a_hint(args, says):
    assert_refused(invoke(*args, *SIM), 3, says)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--vram", "99999999TiB"], "larger than 1 PiB"),
        (["--vram", "24GiB", "--ram", "99999999TiB"], "larger than 1 PiB"),
        (["--vram", "0"], "must be positive"),
        (["--gpu", "0x RTX 4090"], "count must be 1 to 64"),
        (["--vram", "24GiB", "--headroom", "30GiB"], "--headroom 30GiB is larger than GPU 0"),
        (["--gpu", "RTX 4090", "--headroom", "25GiB"], "is larger than GPU 0 (NVIDIA GeForce RTX 4090"),
    ],
)
def test_sizes_gpus_and_headroom_are_validated_with_a_hint(args, says):
    assert_refused(invoke("probe", *args), 3, says)


def test_a_zero_headroom_is_allowed():
    assert invoke("probe", "--vram", "24GiB", "--ram", "32GiB", "--headroom", "0MiB").exit_code == 0
    assert parse_size("0", what="--headroom", allow_zero=True) == 0


def test_plan_ctx_0_has_a_hint():
    assert_refused(invoke("plan", *SIM, "--offline", "--ctx", "0"), 3, "--ctx 0 is out of range")


@pytest.mark.parametrize(
    "ref", ["hf.co/a/..:Q4_K_M", "hf.co/a/.", "hf.co/a/b..c", "hf.co/a--b/c", "hf.co/a/b.git", "hf.co/a/b."]
)
def test_invalid_repository_ids_are_refused_locally(ref):
    with pytest.raises(InvalidInput, match="invalid Hugging Face repository id"):
        HubRef.parse(ref)
    # the closed port in HF_ENDPOINT would give exit 7: exit 3 proves nothing was sent
    assert_refused(invoke("inspect", ref, *SIM), 3, "invalid Hugging Face repository id")
    assert_refused(invoke("pull", ref, *SIM, "--no-register"), 3, "invalid Hugging Face repository id")


@pytest.mark.parametrize("ref", ["hf.co/unsloth/Qwen3-8B-GGUF", "bartowski/google_gemma-3-12b-it-GGUF:Q4_K_M"])
def test_valid_repository_ids_pass(ref):
    assert HubRef.parse(ref).repo.count("/") == 1


def test_the_hub_timeout_follows_hf_hub_etag_timeout(monkeypatch):
    from ollama_fit import config
    from ollama_fit.hub.repos import Hub

    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "90")
    assert Hub.from_env().timeout == 90
    for bad in ("x", "-1", "inf"):
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", bad)
        assert config.hub_timeout(5.0) == 5.0
    assert os.environ["HF_HUB_ETAG_TIMEOUT"] == "inf"


def test_an_error_raised_without_a_hint_still_gets_a_hint_line(tmp_path):
    import json

    saved = json.loads(invoke("probe", *SIM, "--json").stdout)
    saved["gpus"][0]["vendor"] = "acme"
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(saved))
    result = invoke("probe", "--hardware", str(path))
    assert_refused(result, 3, "vendor must be one of")
    assert "Hint: `ollama-fit probe --help` shows what each option accepts" in result.stderr
