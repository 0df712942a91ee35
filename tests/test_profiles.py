from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import ollama_fit
from ollama_fit.hardware.known import apple_chips, find_gpu, known_gpus
from ollama_fit.profiles import load_profile, profile_names

SOURCE = Path(__file__).resolve().parent.parent
FROM_SOURCE = Path(ollama_fit.__file__).resolve().is_relative_to(SOURCE / "ollama_fit")


@pytest.mark.skipif(FROM_SOURCE, reason="ollama_fit is imported from the source tree (editable or python -m pytest)")
@pytest.mark.parametrize("name", profile_names())
def test_every_profile_loads_from_the_installed_package(name):
    resource = resources.files("ollama_fit").joinpath("profiles", f"{name}.toml")
    assert resource.is_file()
    # the installed copy, not the source tree: the wheel must carry the data
    assert "site-packages" in str(resource) or "dist-packages" in str(resource)
    assert load_profile(name)


@pytest.mark.parametrize("name", profile_names())
def test_every_profile_loads_wherever_the_package_comes_from(name):
    assert load_profile(name)


def test_a_source_tree_finds_the_top_level_profiles():
    """An editable install or `python -m ...` in the clone imports the package from the source tree, where
    profiles/ sits at the top level, not inside the package."""
    code = (
        "import ollama_fit, sys\n"
        "from ollama_fit.profiles import load_profile, profile_names\n"
        "assert all(load_profile(n) for n in profile_names())\n"
        "print(ollama_fit.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    done = subprocess.run([sys.executable, "-c", code], cwd=SOURCE, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve().is_relative_to(SOURCE / "ollama_fit")
    probe = [sys.executable, "-m", "ollama_fit", "probe", "--vram", "24GiB", "--ram", "32GiB", "--json"]
    done = subprocess.run(probe, cwd=SOURCE, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_known_gpu_table_is_sane():
    gpus = known_gpus()
    names = [g.name for g in gpus]
    assert len(names) == len(set(names))
    assert {g.vendor for g in gpus} == {"nvidia", "amd", "intel"}
    assert {"desktop", "laptop", "workstation", "datacenter"} <= {g.segment for g in gpus}
    for g in gpus:
        assert 2 * 1024**3 <= g.memory_bytes <= 256 * 1024**3, g.name
        assert 50 <= g.bandwidth_gbs <= 10_000, g.name
    assert find_gpu("rtx4090") is find_gpu("NVIDIA GeForce RTX 4090")
    # every alias resolves to one card only
    aliases = [a.lower() for g in gpus for a in g.aliases]
    assert len(aliases) == len(set(aliases))


def test_apple_chip_table_covers_m1_to_m5():
    chips = {c.chip for c in apple_chips()}
    for gen in range(1, 6):
        assert f"M{gen}" in chips
        assert f"M{gen} Max" in chips


def test_a_profile_is_read_back_from_its_parsed_copy(tmp_path, monkeypatch):
    """The JSON copy in the cache folder gives the TOML's data; an edited text gets a copy of its own (and the
    old one goes), a damaged copy is parsed afresh, an unwritable folder only costs the parse."""
    import tomllib

    from ollama_fit import profiles

    monkeypatch.setenv("OLLAMA_FIT_CACHE_DIR", str(tmp_path / "cache"))
    text = profiles._profile_text("quants")
    first = profiles._parsed("quants", text)
    assert first == tomllib.loads(text)
    (copy,) = (tmp_path / "cache" / "profiles").glob("quants-*.json")
    assert profiles._parsed("quants", text) == first  # read back from the copy
    copy.write_text('{"quant": []}')  # a copy that says otherwise is what a second run reads: it is the cache
    assert profiles._parsed("quants", text) == {"quant": []}
    copy.write_text("{not json")
    assert profiles._parsed("quants", text) == first  # damaged: parsed again and rewritten
    assert profiles._parsed("quants", text + "\n# edited\n") == first
    assert [p.name for p in copy.parent.glob("quants-*.json")] != [copy.name]  # the edited text's copy only
    assert len(list(copy.parent.glob("quants-*.json"))) == 1
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("OLLAMA_FIT_CACHE_DIR", str(blocked))
    assert profiles._parsed("quants", text) == first
