"""Speculative decoding with a separate draft file (Ollama 0.32.15's DRAFT layer): the argv Ollama builds, and the
memory against the real llama-server started that way on sparse target and draft GGUFs
(tests/fixtures/draft-llama-cpu.jsonl, scripts/measure_draft.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollama_fit.cli import cli
from ollama_fit.errors import BadModelFile, InvalidInput
from ollama_fit.memory.estimate import estimate
from ollama_fit.model.draft import external_draft_type
from ollama_fit.model.gguf import read_local_header, spec_from_header
from ollama_fit.model.gguf.draft import check_pairing, read_draft
from ollama_fit.runtime.ollama import NEWEST, Machine, parse_version, plan_load

FIXTURE = Path(__file__).parent / "fixtures" / "draft-llama-cpu.jsonl"
ALL = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
DRAFTED = [r for r in ALL if r["draft"] and "error" not in r]
MiB = 1024**2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from draft_ggufs import DFLASH, write_dflash_draft, write_mtp_draft
    from hybrid_ggufs import PRESETS, QWEN35, catalog_layers, write_hybrid

    d = tmp_path_factory.mktemp("drafts")
    qwen3 = catalog_layers("qwen3:8b", range(4), n_vocab=32768)
    paths = {
        "qwen35": write_hybrid(d / "qwen35.gguf", QWEN35, "Q4_K_M"),
        "qwen35moe": write_hybrid(d / "qwen35moe.gguf", PRESETS["qwen35moe"], "Q4_K_M"),
        "qwen3": write_hybrid(d / "qwen3.gguf", qwen3, "Q4_K_M"),
        "mtp": write_mtp_draft(d / "mtp.gguf", QWEN35),
        "mtp-ollama": write_hybrid(d / "mtp-ollama.gguf", QWEN35, "Q4_K_M", mtp=True),
        "dflash-qwen35": write_dflash_draft(d / "dflash-qwen35.gguf", DFLASH),
        "dflash-qwen3": write_dflash_draft(
            d / "dflash-qwen3.gguf", DFLASH.__class__(target_layers=(1, 2, 3), n_vocab=32768)
        ),
    }
    paths["plain"] = paths["qwen3"]
    return paths


def _mib(row: dict, context: str, *kinds: str) -> float:
    """MiB of these kinds in a context, counting only the last reservation of a compute buffer."""
    last: dict[str, float] = {}
    total = 0.0
    for b in row["buffers"]:
        if b["context"] != context or b["kind"] not in kinds:
            continue
        if b["kind"] == "compute":
            last[b["where"]] = b["mib"]
        else:
            total += b["mib"]
    return total + sum(last.values())


def _estimate(row: dict, files: dict):
    target = files[row["target"]]
    spec = spec_from_header(read_local_header(target), target.stat().st_size)
    draft = read_draft(files[row["draft_file"]])
    load = plan_load(
        parse_version(row["ollama"]), spec.shape, Machine(), row["num_ctx"], spec.file_bytes or 0, row["parallel"],
        draft=row["draft"], draft_arch=draft.arch,
    )  # fmt: skip
    rt = load.runtime("cpu", flash_attn_resolved=True)
    return load, draft, spec, estimate(spec, rt.__class__(**{**rt.__dict__, "draft_model": draft}))


def test_ollama_passes_a_draft_file_as_its_architecture_says():
    load = plan_load(NEWEST, None, Machine(), 8192, draft=4, draft_arch="dflash")
    argv = list(load.argv)
    i = argv.index("--spec-type")
    assert argv[i : i + 6] == ["--spec-type", "draft-dflash", "--spec-draft-n-max", "4", "--spec-draft-model", "DRAFT"]
    assert argv[i - 1] == "--no-log-timestamps"  # appendDraftArgs runs right after the log arguments
    mtp = list(plan_load(NEWEST, None, Machine(), 8192, draft=4, draft_arch="qwen35").argv)
    i = mtp.index("--spec-type")
    assert mtp[i : i + 7] == [
        "--spec-type", "draft-mtp", "--spec-draft-n-max", "4", "--spec-draft-backend-sampling",
        "--spec-draft-model", "DRAFT",
    ]  # fmt: skip
    # with a draft file the GGUF's own block is not the draft; draft_num_predict 0 turns drafting off
    own = plan_load(NEWEST, None, Machine(), 8192, draft=4, mtp_layers=1, draft_arch="dflash")
    assert own.mtp_layers == 0
    assert own.draft_file == "draft-dflash"
    assert "--spec-type" not in plan_load(NEWEST, None, Machine(), 8192, draft=0, draft_arch="dflash").argv
    assert external_draft_type("dflash") == "draft-dflash"
    assert external_draft_type("llama") == "draft-mtp"
    assert load.to_dict()["draft"] == {"type": "draft-dflash", "tokens": 4, "file": True}


@pytest.mark.parametrize("row", DRAFTED, ids=lambda r: f"{r['case']}-c{r['num_ctx']}-np{r['parallel']}")
def test_the_command_line_measured_is_the_one_planned(row, files):
    load, *_ = _estimate(row, files)
    assert list(load.argv) == row["argv"]


@pytest.mark.parametrize("row", DRAFTED, ids=lambda r: f"{r['case']}-c{r['num_ctx']}-np{r['parallel']}")
def test_draft_memory_matches_llama_server(row, files):
    _, draft, _, est = _estimate(row, files)
    host = est.host
    rounding = 0.01 * len(row["buffers"])
    # weights: the target's and every tensor of the draft file (an MTP drafter's block loads with load_mtp)
    assert draft.weights_bytes / MiB == pytest.approx(_mib(row, "draft", "model"), abs=0.01)
    assert host.weights_bytes / MiB == pytest.approx(
        _mib(row, "main", "model") + _mib(row, "draft", "model"), abs=rounding
    )
    # KV: the target's, and the draft context's over the same cells (f16)
    kv = _mib(row, "main", "KV") + _mib(row, "draft", "KV")
    assert host.kv_bytes / MiB == pytest.approx(kv, abs=rounding)
    # the target's recurrent state: a copy per drafted token for both draft types
    assert host.state_bytes / MiB == pytest.approx(_mib(row, "main", "RS"), abs=rounding)
    real = _mib(row, "main", "compute", "output") + _mib(row, "draft", "compute", "output")
    if draft.kind == "draft-dflash":  # the dflash context's graph: exact within the usual bar
        assert host.compute_bytes / MiB == pytest.approx(real, abs=max(16, 0.03 * real))
    else:  # the MTP context's: a bound, never under what it takes
        assert real - 16 <= host.compute_bytes / MiB <= 2.5 * real + 64


@pytest.mark.xfail(strict=True, reason="the MTP context's graph is a bound (MTP_COMPUTE_BOUND x the target's)")
@pytest.mark.parametrize(
    "row", [r for r in DRAFTED if r["draft_arch"] != "dflash"], ids=lambda r: f"{r['case']}-c{r['num_ctx']}"
)
def test_mtp_draft_compute_exact(row, files):
    # the draft context (MiB): mtp and mtp-ollama 4096x1 92.02 measured, 348.00 predicted; 16384x1 192.04, 768.00
    *_, est = _estimate(row, files)
    real = _mib(row, "main", "compute", "output") + _mib(row, "draft", "compute", "output")
    assert est.host.compute_bytes / MiB == pytest.approx(real, abs=max(16, 0.03 * real))


def test_refusals_are_recorded_and_predicted(files):
    refused = {r["case"]: r for r in ALL if r["draft"] and "error" in r}
    assert "GGML_ASSERT(n_embd == llama_model_n_embd_out" in refused["mtp-width"]["error"]
    assert "failed to create MTP context" in refused["plain-draft"]["error"]
    target = spec_from_header(read_local_header(files["qwen35moe"]))
    with pytest.raises(InvalidInput, match=r"2048 wide|4096 wide|is 4096"):
        check_pairing(read_draft(files["mtp"]), target.shape)
    qwen3 = spec_from_header(read_local_header(files["qwen3"]))
    with pytest.raises(InvalidInput, match="no MTP block"):
        check_pairing(read_draft(files["plain"]), qwen3.shape)
    check_pairing(read_draft(files["dflash-qwen3"]), qwen3.shape)  # accepted


def test_inspect_plans_with_a_draft_file(files, tmp_path):
    args = ["inspect", str(files["qwen35"]), "--backend", "cpu", "--ctx", "4096", "--json"]
    plain = json.loads(CliRunner().invoke(cli, args).stdout)
    result = CliRunner().invoke(cli, [*args, "--draft-file", str(files["dflash-qwen35"])])
    drafted = json.loads(result.stdout)
    assert drafted["runtime"]["draft"] == 4  # Ollama's default with a draft file
    info = drafted["runtime"]["draft_file"]
    assert info["spec_type"] == "draft-dflash"
    assert info["cached_layers"] == 5
    more = drafted["estimates"][0]["memory"]["weights_bytes"] - plain["estimates"][0]["memory"]["weights_bytes"]
    assert more == read_draft(files["dflash-qwen35"]).weights_bytes
    off = json.loads(CliRunner().invoke(cli, [*args, "--draft-file", str(files["mtp"]), "--draft", "0"]).stdout)
    assert off["runtime"]["draft_file"] is None
    assert off["estimates"][0]["memory"]["weights_bytes"] == plain["estimates"][0]["memory"]["weights_bytes"]
    missing = CliRunner().invoke(cli, [*args, "--draft-file", str(tmp_path / "none.gguf")])
    assert missing.exit_code == InvalidInput.exit_code
    assert "not found" in missing.output
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    bad = CliRunner().invoke(cli, [*args, "--draft-file", str(junk)])
    assert bad.exit_code == BadModelFile.exit_code
    assert "draft file junk.gguf" in bad.output
    wide = CliRunner().invoke(cli, [*args[:1], str(files["qwen35moe"]), *args[2:], "--draft-file", str(files["mtp"])])
    assert wide.exit_code == InvalidInput.exit_code
    assert "aborts" in wide.output
