"""Speculative decoding with a GGUF's own prediction (MTP) block, as Ollama 0.32.15 starts it when a model has
draft_num_predict: the argv it builds, and the memory against the real llama-server started that way on sparse
GGUFs of every layout that carries a block (tests/fixtures/mtp-llama-cpu.jsonl, scripts/measure_mtp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollama_fit.cli import cli
from ollama_fit.memory.estimate import estimate
from ollama_fit.model.gguf import read_local_header, spec_from_header
from ollama_fit.provision.pull import RegisterOptions
from ollama_fit.runtime.ollama import NEWEST, Machine, parse_version, plan_load

FIXTURE = Path(__file__).parent / "fixtures" / "mtp-llama-cpu.jsonl"
ROWS = [r for r in map(json.loads, FIXTURE.read_text().splitlines()) if "error" not in r]
MiB = 1024**2


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    from hybrid_ggufs import MTP_PRESETS, PRESETS, write_hybrid

    folder = tmp_path_factory.mktemp("mtp")
    out = {}
    for preset in sorted(MTP_PRESETS):
        path = write_hybrid(folder / f"{preset}.gguf", PRESETS[preset], "Q4_K_M", mtp=True)
        out[preset] = spec_from_header(read_local_header(path), path.stat().st_size)
    return out


def _mib(row: dict, context: str, *kinds: str) -> float:
    return sum(b["mib"] for b in row["buffers"] if b["context"] == context and b["kind"] in kinds)


def test_ollama_drafts_only_where_asked_and_where_the_file_has_a_block():
    load = plan_load(NEWEST, None, Machine(), 8192, draft=4, mtp_layers=1)
    argv = list(load.argv)
    i = argv.index("--spec-type")
    assert argv[i : i + 5] == ["--spec-type", "draft-mtp", "--spec-draft-n-max", "4", "--spec-draft-backend-sampling"]
    assert argv[i - 1] == "--no-log-timestamps"  # right after the log flags, as llama_server.go appends them
    assert load.to_dict()["draft"] == {"type": "draft-mtp", "tokens": 4}
    assert "--spec-type" not in plan_load(NEWEST, None, Machine(), 8192, draft=4, mtp_layers=0).argv
    assert "--spec-type" not in plan_load(NEWEST, None, Machine(), 8192, draft=0, mtp_layers=1).argv
    assert RegisterOptions(ctx=8192, draft=4).parameters == {"num_ctx": 8192, "draft_num_predict": 4}
    assert RegisterOptions(ctx=8192).parameters == {"num_ctx": 8192}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['preset']}-c{r['num_ctx']}-np{r['parallel']}-d{r['draft']}")
def test_memory_with_and_without_drafting_matches_llama_server(row, specs):
    spec = specs[row["preset"]]
    load = plan_load(
        parse_version(row["ollama"]), spec.shape, Machine(), row["num_ctx"], spec.file_bytes or 0, row["parallel"],
        draft=row["draft"], mtp_layers=int(spec.extra["nextn_layers"]),
    )  # fmt: skip
    # the command line measured is the one planned (the measurement put the draft flags last; Ollama puts them
    # after the log flags: llama-server reads them alike)
    spec_flags = ["--spec-type", "draft-mtp", "--spec-draft-n-max", str(row["draft"]), "--spec-draft-backend-sampling"]
    planned, measured = list(load.argv), list(row["argv"])
    if row["draft"]:
        for argv in (planned, measured):
            i = argv.index("--spec-type")
            assert argv[i : i + 5] == spec_flags
            del argv[i : i + 5]
    assert planned == measured
    host = estimate(spec, load.runtime("cpu", flash_attn_resolved=True)).host
    rounding = 0.01 * len(row["buffers"])
    # weights: the prediction block's tensors are loaded only for drafting
    assert host.weights_bytes / MiB == pytest.approx(_mib(row, "main", "model"), abs=rounding)
    # KV: the model's, and the block's own context over the same cells
    kv = _mib(row, "main", "KV") + _mib(row, "draft", "KV")
    assert host.kv_bytes / MiB == pytest.approx(kv, abs=rounding)
    # recurrent state: a copy per drafted token to roll back to (Qwen3.5), one otherwise
    assert host.state_bytes / MiB == pytest.approx(_mib(row, "main", "RS") + _mib(row, "draft", "RS"), abs=rounding)
    # compute: the model's within its usual bar; the block's context a bound, never under what it takes
    real = _mib(row, "main", "compute", "output") + _mib(row, "draft", "compute", "output")
    if row["preset"] != "qwen3next":  # its delta-net phase is a known gap (tests/test_ollama_argv.py)
        assert host.compute_bytes / MiB >= real - 16
    assert host.compute_bytes / MiB <= 2.5 * real + 64


def test_inspect_plans_the_draft_of_a_file_with_a_block(tmp_path):
    from hybrid_ggufs import PRESETS, write_hybrid

    path = write_hybrid(tmp_path / "q.gguf", PRESETS["qwen35"], "Q4_K_M", mtp=True)
    args = ["inspect", str(path), "--backend", "cpu", "--ctx", "4096", "--json"]
    plain = json.loads(CliRunner().invoke(cli, args).stdout)
    drafted = json.loads(CliRunner().invoke(cli, [*args, "--draft", "4"]).stdout)
    assert plain["runtime"]["mtp_layers"] == 0
    assert drafted["runtime"]["mtp_layers"] == 1
    more = drafted["estimates"][0]["memory"]["weights_bytes"] - plain["estimates"][0]["memory"]["weights_bytes"]
    assert more == int(read_spec_extra(path)["skipped_bytes"])
    bad = CliRunner().invoke(cli, [*args, "--draft", "-1"])
    assert bad.exit_code != 0


def read_spec_extra(path: Path) -> dict[str, str]:
    return spec_from_header(read_local_header(path), path.stat().st_size).extra
