from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

TESTS = Path(__file__).parent
SCRIPTS = TESTS.parent / "scripts"
# tests/ is not a package on sys.path under --import-mode=importlib; make `fakes` importable.
sys.path.insert(0, str(TESTS))


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py, executed afresh as the module NAME and registered in sys.modules under that name
    (dataclasses look their module up there while a class is built)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def real_required() -> bool:
    """CI (`.ci/run`) prepares the real parts (tests/real_assets.py) and sets OLLAMA_FIT_REAL_REQUIRED=1."""
    return bool(os.environ.get("OLLAMA_FIT_REAL_REQUIRED"))


def need(found: tuple[Path | None, str]) -> Path:
    """A real part found by tests/real_assets.py, as (path or None, why): skip with the reason when it is
    absent, or fail when OLLAMA_FIT_REAL_REQUIRED is set (a missing part is then an error, not a skip)."""
    path, why = found
    if path is None:
        if real_required():
            pytest.fail(why)
        pytest.skip(why)
    return path


def want(found: tuple[Path | None, str]) -> Path | None:
    """Like `need`, for a part a test can do without: None when absent, a failure when it is required."""
    path, why = found
    if path is None and real_required():
        pytest.fail(why)
    return path


@pytest.fixture(scope="session")
def real_gemma_found() -> tuple[Path | None, str]:
    """real_assets.gemma_gguf() once per session (it checks the file's sha256)."""
    import real_assets

    return real_assets.gemma_gguf()


@pytest.fixture(scope="session")
def real_gemma(real_gemma_found) -> Path:
    """The published Gemma 3 270M Q4_K_M file (tests/real_assets.py)."""
    return need(real_gemma_found)


@pytest.fixture(scope="session")
def real_llama_server() -> Path:
    """The real llama-server (scripts/build_llama_cpp.sh, or $LLAMA_SERVER)."""
    import real_assets

    return need(real_assets.llama_server())


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child `python` that must import the same ollama_fit as this test run (the
    installed wheel, or the source tree under an editable install or `python -m pytest`)."""
    import ollama_fit

    package_root = str(Path(ollama_fit.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": package_root, **extra}


@pytest.fixture(scope="session")
def fake_hub():
    from fakes.hub import FakeHub

    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def gguf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="session")
def llama1b_gguf(gguf_dir):
    """Llama 3.2 1B at Q4_K_M with a real-size tokenizer (128k tokens, 280k merges), data left sparse."""
    from ggufs import write_gguf

    from ollama_fit.model.catalog import find_model

    return write_gguf(
        gguf_dir / "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        find_model("llama3.2:1b").shape,
        "Q4_K_M",
        merges=280_147,
        name="Llama 3.2 1B Instruct",
    )


TINY = None


def tiny_shape(**kw):
    from ollama_fit.model.spec import ModelShape

    base = dict(
        arch="llama",
        n_layer=4,
        n_embd=256,
        n_head=4,
        n_head_kv=(2,) * 4,
        key_length=64,
        value_length=64,
        n_ff=512,
        n_vocab=1000,
        context_length=4096,
    )
    return ModelShape(**(base | kw))


@pytest.fixture(autouse=True)
def _hf_env(monkeypatch, tmp_path):
    """No test may reach the real Hub: telemetry and Xet off, caches in tmp."""
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: a forgotten fake fails fast
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "120")  # generous: the fakes answer at once, however busy the machine
    monkeypatch.setenv("OLLAMA_FIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("OLLAMA_FIT_CACHE_DIR", str(tmp_path / "cache"))
    # plans must not depend on how fast this machine's RAM is: no measurement in tests
    monkeypatch.setenv("OLLAMA_FIT_RAM_BANDWIDTH_GBS", "50")
