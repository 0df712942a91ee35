from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
# tests/ is not a package on sys.path under --import-mode=importlib; make `fakes` importable.
sys.path.insert(0, str(TESTS))


def pytest_configure(config: pytest.Config) -> None:
    import ollama_fit

    # The suite checks the installed wheel (profiles/ ships inside it); a source-tree import would hide that.
    if Path(ollama_fit.__file__).resolve().is_relative_to((TESTS.parent / "ollama_fit").resolve()):
        pytest.exit(
            "tests must run against the installed package: `pip install '.[test]'`, then `pytest` "
            "(not `python -m pytest`, which puts the source tree first on sys.path)",
            returncode=4,
        )
