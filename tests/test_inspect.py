from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import tiny_shape
from ggufs import write_gguf

from ollama_fit.cli import cli
from ollama_fit.hardware.model import Cpu, Hardware, ProbeReport, budget
from ollama_fit.hardware.simulate import Simulation, simulate
from ollama_fit.hub.repos import Hub, HubRef
from ollama_fit.memory.estimate import Runtime
from ollama_fit.model.spec import rebuild
from ollama_fit.plan.inspect import inspect_file, inspect_hub

GiB = 1024**3
HERE = Hardware(gpus=(), ram_total_bytes=32 * GiB, ram_available_bytes=32 * GiB, cpu=Cpu("Test CPU", 8, 16))


def report(*gpus: str) -> ProbeReport:
    hw = simulate(Simulation(gpus=gpus), lambda: HERE)
    return ProbeReport(hw, budget(hw))


@pytest.fixture(scope="module")
def llama_repo(fake_hub, llama1b_gguf):
    repo = fake_hub.repo("bartowski/Llama-3.2-1B-Instruct-GGUF")
    repo.add(llama1b_gguf.name, llama1b_gguf)
    return repo


def test_local_and_hub_give_the_same_estimate_reading_only_the_header(fake_hub, llama_repo, llama1b_gguf):
    rep = report("RTX 4060 Laptop")
    rt = Runtime(ctx=8192, backend="cuda")
    local = inspect_file(llama1b_gguf, rt, rep)
    remote = inspect_hub(
        HubRef.parse("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"), Hub(fake_hub.endpoint), rt, rep
    )
    assert local.quants[0].to_dict()["memory"] == remote.quants[0].to_dict()["memory"]
    assert local.quants[0].file_bytes == remote.quants[0].file_bytes == llama1b_gguf.stat().st_size
    served = fake_hub.served("bartowski/Llama-3.2-1B-Instruct-GGUF", llama1b_gguf.name)
    header = local.header_bytes_read
    assert header <= served <= 2 * header  # growing reads stop near the header
    assert served < llama1b_gguf.stat().st_size / 50  # never the weights
    assert remote.quants[0].fits
    # 1871 MiB measured for this model at 8k on CUDA (calibration): the exact header reproduces it
    assert remote.quants[0].placement.memory.device_bytes / 2**20 == pytest.approx(1873.3, abs=0.5)


@pytest.fixture(scope="module")
def multi_repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi")
    shape = tiny_shape(n_layer=4)
    repo = fake_hub.repo("acme/Multi-GGUF")
    for quant in ("Q4_K_M", "Q6_K"):
        repo.add(f"Multi-{quant}.gguf", write_gguf(folder / f"Multi-{quant}.gguf", shape, quant))
    names = [t.name for t in rebuild(shape, "Q8_0").tensors]
    half = len(names) // 2
    for i, part in enumerate((names[:half], names[half:])):
        name = f"Q8_0/Multi-Q8_0-0000{i + 1}-of-00002.gguf"
        path = write_gguf(folder / f"s{i}.gguf", shape, "Q8_0", tensors_only=tuple(part), split=(i, 2))
        repo.add(name, path)
    return repo


def test_every_quant_of_a_repository_with_a_split_one(fake_hub, multi_repo):
    result = inspect_hub(HubRef.parse("hf.co/acme/Multi-GGUF"), Hub(fake_hub.endpoint), Runtime(ctx=2048), report())
    by_quant = {q.quant: q for q in result.quants}
    assert list(by_quant) == ["Q8_0", "Q6_K", "Q4_K_M"]
    q8 = by_quant["Q8_0"]
    assert len(q8.files) == 2
    assert q8.file_bytes == sum(f.size for p, f in multi_repo.files.items() if p.startswith("Q8_0/"))
    assert q8.spec.weights_bytes == rebuild(tiny_shape(n_layer=4), "Q8_0").weights_bytes  # both shards' tensors
    assert all(q.fits for q in result.quants)


def test_cli_inspect_json_shape(fake_hub, multi_repo, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    result = CliRunner().invoke(cli, ["inspect", "hf.co/acme/Multi-GGUF", "--vram", "8GiB", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"architecture", "params"} <= set(doc["model"])
    for est in doc["estimates"]:
        assert {"quant", "file_bytes", "fits"} <= set(est)
        assert {"device_bytes", "host_bytes", "weights_bytes", "kv_bytes", "compute_bytes", "overhead_bytes"} <= set(
            est["memory"]
        )
    table = CliRunner().invoke(cli, ["inspect", "hf.co/acme/Multi-GGUF:Q6_K", "--vram", "8GiB"])
    assert "Q6_K" in table.stdout
    assert "fully on one GPU" in table.stdout


def test_cli_inspect_local_file_and_errors(tmp_path, fake_hub, multi_repo, monkeypatch):
    path = multi_repo.files["Multi-Q4_K_M.gguf"].source
    result = CliRunner().invoke(cli, ["inspect", str(path), "--backend", "cpu"])
    assert result.exit_code == 0
    assert "on the CPU, from RAM" in result.stdout
    pointer = tmp_path / "model.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1\n")
    bad = CliRunner().invoke(cli, ["inspect", str(pointer)])
    assert bad.exit_code == 8
    assert "git-LFS pointer" in bad.stderr
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    missing = CliRunner().invoke(cli, ["inspect", "hf.co/acme/Nothing-Here"])
    assert missing.exit_code == 7
    assert "not found" in missing.stderr
    gone = CliRunner().invoke(cli, ["inspect", "hf.co/acme/Multi-GGUF:IQ1_S"])
    assert gone.exit_code == 7
    assert "available: Q8_0, Q6_K, Q4_K_M" in gone.stderr


def test_remote_headers_are_read_once_then_cached_by_sha256(fake_hub, llama_repo, llama1b_gguf, tmp_path):
    from ollama_fit.hub.repos import group_quants
    from ollama_fit.model.gguf.cache import HeaderCache
    from ollama_fit.plan.inspect import hub_spec

    hub = Hub(fake_hub.endpoint)
    (group,) = group_quants(hub.list_files("bartowski/Llama-3.2-1B-Instruct-GGUF"))
    cache = HeaderCache(tmp_path / "headers")
    first, read_first = hub_spec(hub, llama_repo.repo_id, group, cache)
    before = fake_hub.served(llama_repo.repo_id, llama1b_gguf.name)
    second, read_second = hub_spec(hub, llama_repo.repo_id, group, cache)
    assert read_first > 0
    assert read_second == 0
    assert fake_hub.served(llama_repo.repo_id, llama1b_gguf.name) == before
    assert second.tensors == first.tensors
    assert second.shape == first.shape
    (cache.folder / f"{group.first.sha256}.json").write_text("{broken")
    third, read_third = hub_spec(hub, llama_repo.repo_id, group, cache)  # a damaged entry is read again
    assert read_third > 0
    assert third.shape == first.shape


def test_a_local_shard_is_inspected_as_the_whole_split_model(tmp_path):
    shape = tiny_shape(n_layer=4)
    names = [t.name for t in rebuild(shape, "Q8_0").tensors]
    half = len(names) // 2
    for i, part in enumerate((names[:half], names[half:])):
        write_gguf(tmp_path / f"Multi-Q8_0-0000{i + 1}-of-00002.gguf", shape, "Q8_0", tensors_only=tuple(part))
    first = tmp_path / "Multi-Q8_0-00001-of-00002.gguf"
    result = inspect_file(first, Runtime(ctx=2048), report())
    (quant,) = result.quants
    assert quant.files == ("Multi-Q8_0-00001-of-00002.gguf", "Multi-Q8_0-00002-of-00002.gguf")
    assert quant.spec.weights_bytes == rebuild(shape, "Q8_0").weights_bytes  # both shards' tensors
    assert quant.file_bytes == sum(p.stat().st_size for p in tmp_path.glob("*.gguf"))
    cli_run = CliRunner().invoke(cli, ["inspect", str(first), "--json"])
    assert cli_run.exit_code == 0, cli_run.output
    (row,) = json.loads(cli_run.stdout)["estimates"]
    assert row["memory"]["weights_bytes"] == rebuild(shape, "Q8_0").weights_bytes
    (tmp_path / "Multi-Q8_0-00002-of-00002.gguf").unlink()
    missing = CliRunner().invoke(cli, ["inspect", str(first)])
    assert missing.exit_code == 8
    assert "00002-of-00002.gguf is missing" in missing.stderr
