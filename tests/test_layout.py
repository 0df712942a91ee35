"""The layout machinery: tables fitted to a width, prose wrapped with indented continuation lines, colors that
take no width, one-line progress bars for any width."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from ollama_fit.cli import cli
from ollama_fit.cli.bars import Rates, bar_line, clock_text
from ollama_fit.cli.render import memory_bar
from ollama_fit.cli.text import fit, table, visible, wrap

MiB = 1024**2
ROWS = [
    ["Mistral Small 3.2 24B Instruct (2506)", "Q4_K_M", "8192", "partly on the GPU, the rest on the CPU", "~6 tok/s"],
    ["Qwen3 14B", "Q4_K_M", "8192", "fully on one GPU", "~38 tok/s (25-50)"],
]
HEADER = ["model", "quant", "ctx", "where", "speed"]


def red(text: str, color: str) -> str:
    return f"\x1b[31m{text}\x1b[0m"


@pytest.mark.parametrize("width", [60, 80, 120])
def test_a_table_fits_its_width_without_splitting_header_words(width):
    text = table(ROWS, header=HEADER, indent=4, width=width)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    assert lines[0].split() == HEADER  # "speed" never becomes "s / peed"
    # every word of every cell is still there (cells wrap inside their column, rows interleave)
    assert sorted(" ".join(lines[1:]).split()) == sorted(" ".join(" ".join(r) for r in ROWS).split())


def test_a_table_that_fits_is_left_as_it_was():
    assert table(ROWS, header=HEADER, width=400) == table(ROWS, header=HEADER)


def test_colors_take_no_width_in_tables_and_wrapping():
    colored = table([["a", red("yes", "red")], ["bb", "no"]], header=["x", "fits"], width=80)
    assert [visible(line) for line in colored.splitlines()] == [
        len(x) for x in table([["a", "yes"], ["bb", "no"]], header=["x", "fits"]).splitlines()
    ]
    assert wrap(red("word " * 30, "red"), 40)[0].startswith("\x1b[31m")


def test_prose_wraps_with_indented_continuation_lines():
    reason = "  - next larger, gpt-oss 120B (MoE) at MXFP4: needs 49.7 GiB on RAM, 31.0 GiB usable (18.7 GiB short)"
    pick_line = "  Pick   Mistral Small 3.2 24B Instruct (2506)  Q4_K_M  ctx 8192  partly on the GPU"
    lines = fit([reason, pick_line], 50)
    out = lines.splitlines()
    assert max(map(len, out)) <= 50
    assert out[0].startswith("  - next")
    assert out[1].startswith("    ")
    assert not out[1].startswith("     ")
    pick = next(i for i, line in enumerate(out) if "Pick" in line)
    assert out[pick + 1].startswith(" " * 9)
    assert out[pick + 1][9] != " "
    assert lines.split() == f"{reason} {pick_line}".split()  # nothing lost or reordered


@given(st.text(alphabet="ab -", max_size=200), st.integers(min_value=1, max_value=100), st.integers(0, 20))
def test_wrapped_lines_never_exceed_the_width(text, width, indent):
    text = text.replace("\n", " ")
    for line in wrap(text, width, indent):
        assert visible(line) <= width
    assert "".join(wrap(text, width, indent)).replace(" ", "") == text.replace(" ", "")


def test_memory_bar_segments_are_colored_and_keep_their_width():
    bar = memory_bar([5, 3, 1, 1], 20, width=20, paint=red)
    assert visible(bar) == 22
    assert bar.count("\x1b[31m") == 4  # weights, KV, compute, overhead: one color run each; free stays plain
    assert memory_bar([30, 0, 0, 0], 20, width=20).endswith("]!")


@pytest.mark.parametrize("width", [200, 120, 100, 80, 60, 40, 30, 20, 10, 5, 2])
def test_a_progress_frame_fits_any_width(width):
    for rate in (None, 12.5 * MiB):
        for state in ("", "verifying"):
            line = bar_line("Qwen3-30B-A3B-Instruct-2507-UD-Q4_K_XL.gguf", 132 * MiB, 322 * MiB, width, rate, state)
            assert len(line) < width or width == 1
            assert "\n" not in line
            assert "\r" not in line
            if width >= 40:
                assert "132.0 MiB/322.0 MiB" in line


def test_the_fields_of_a_frame_stay_put_as_the_rate_appears():
    """At a given width the bar has the same length with and without a rate: frames do not jump."""
    unknown = bar_line("model.gguf", 10 * MiB, 322 * MiB, 80)
    known = bar_line("model.gguf", 11 * MiB, 322 * MiB, 80, rate=3 * MiB)
    assert "ETA --:--" in unknown
    assert re.search(r"ETA \d+:\d\d", known)
    assert unknown.index("]") == known.index("]")


def test_rates_wait_for_something_to_measure_and_ignore_the_bytes_already_on_disk():
    now = [100.0]
    rates = Rates(clock=lambda: now[0])
    rates.start("f", 132 * MiB)  # resumed: 132 MiB were there before
    assert rates.rate("f", 132 * MiB) is None
    now[0] += 0.1
    assert rates.rate("f", 133 * MiB) is None  # too early to tell
    now[0] += 1.9
    assert rates.rate("f", 152 * MiB) == pytest.approx(10 * MiB)
    assert clock_text(None) == "--:--"
    assert clock_text(75) == "1:15"
    assert clock_text(3725) == "1:02:05"


@pytest.mark.parametrize("width", ["60", "80", "120"])
def test_plan_fits_the_width_from_columns(monkeypatch, width):
    monkeypatch.setenv("COLUMNS", width)
    result = CliRunner().invoke(cli, ["plan", "--gpu", "RTX 4070", "--ram", "32GiB", "--offline"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # a 60-column memory bar keeps its 10 cells and may wrap its tail; everything else fits
    assert max(map(len, lines)) <= int(width)
    assert "\x1b[" not in result.stdout  # not a terminal: no color


def test_plan_without_a_terminal_fits_80_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(cli, ["plan", "--gpu", "RTX 4070", "--ram", "32GiB", "--offline"])
    assert max(map(len, result.stdout.splitlines())) <= 80


def _prepared(missing: int, name: str | None = "qwen3:8b-q4_k_m", keep: bool = False):
    from pathlib import Path

    from ollama_fit.hub.repos import HubFile, QuantFiles
    from ollama_fit.ollama.client import ServerInfo
    from ollama_fit.provision.auto import Prepared
    from ollama_fit.provision.pull import Target

    quant = QuantFiles("Q4_K_M", (HubFile("Qwen3-8B-Q4_K_M.gguf", 322 * MiB, "ab" * 32),))
    server = ServerInfo("http://127.0.0.1:11434", "0.30.1") if name else None
    ollama_dir = Path("/models") if name else None
    return Prepared(Target("unsloth/Qwen3-8B-GGUF", quant), missing, Path("/hf/hub"), keep, name, server, ollama_dir)


def test_the_question_states_the_download_its_destination_and_the_model():
    from ollama_fit.cli.render import render_confirmation

    block, question = render_confirmation(_prepared(322 * MiB), 80)
    assert "  download  322.0 MiB\n" in block + "\n"
    assert "into      /hf/hub (removed once Ollama has its own copy)" in block
    words = " ".join(block.split())  # the create line wraps at 80 columns
    assert "create qwen3:8b-q4_k_m in Ollama 0.30.1 at http://127.0.0.1:11434, its copy in /models" in words
    assert max(map(len, block.splitlines())) <= 80
    assert question == "Download 322.0 MiB and create qwen3:8b-q4_k_m in Ollama?"
    block, question = render_confirmation(_prepared(190 * MiB), 80)
    assert "download  190.0 MiB, the rest of 322.0 MiB (132.0 MiB is already on disk)" in block
    assert question.startswith("Download 190.0 MiB ")
    block, question = render_confirmation(_prepared(0), 80)
    assert "nothing: all 322.0 MiB are already in the cache" in block
    assert question == "Create qwen3:8b-q4_k_m in Ollama from the cached copy?"
    block, question = render_confirmation(_prepared(322 * MiB, name=None), 80)
    assert "(kept for llama-server)" in block
    assert "create" not in block
    assert question == "Download 322.0 MiB for llama-server?"
    assert _prepared(0, name=None).changes_nothing
    assert not _prepared(0).changes_nothing  # the model is still to be created
    from dataclasses import replace

    same = replace(_prepared(322 * MiB), registered=True)
    assert same.changes_nothing
    update = replace(same, updates=("num_ctx 8192 -> 32768",))
    assert not update.changes_nothing  # re-creating it with another context is a change to confirm
    block, question = render_confirmation(update, 80)
    assert "num_ctx 8192 -> 32768" in block
    assert "nothing to download" in " ".join(block.split())
    assert question == "Update qwen3:8b-q4_k_m in Ollama?"


def test_ram_weights_say_what_the_mapped_file_and_the_repacked_copy_are():
    """llama.cpp with mmap on the CPU: the file is mapped and some tensors repacked beside it; the file's pages
    of those tensors are page cache the OS may drop, so the bar counts them once and the text says why."""
    from ollama_fit.cli.render import _host_weights_text
    from ollama_fit.memory.estimate import DeviceMemory

    mapped = DeviceMemory("RAM", 6 * 1024 * MiB, 0, 0, 0, evictable_bytes=2 * 1024 * MiB)
    assert _host_weights_text(mapped) == (
        "weights 4.0 GiB mapped file + 2.0 GiB repacked copy (its 2.0 GiB of the file's pages are cache the OS "
        "may drop)"
    )
    read_in = DeviceMemory("RAM", 4 * 1024 * MiB, 0, 0, 0)  # Ollama on a CPU-only machine: no mmap
    assert _host_weights_text(read_in) == "weights 4.0 GiB"
    assert mapped.required_bytes == read_in.required_bytes  # what must fit is the same 4 GiB either way
