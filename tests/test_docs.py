from __future__ import annotations

import re
from pathlib import Path

from ollama_fit.errors import EXIT_CODES

ROOT = Path(__file__).parent.parent


def test_readme_documents_every_exit_code():
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.MULTILINE))
    assert {int(k) for k in table} == set(EXIT_CODES)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", setup, flags=re.DOTALL)
    assert len(commands) == 2
    install_run, install_test = commands
    assert install_run.endswith("ollama-fit auto")
    assert "pytest" in install_test
    assert install_test in (ROOT / ".ci/run").read_text()


def test_changelog_has_unreleased_section():
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
