"""`auto` at a real terminal: the installed console script in a pseudo-terminal (pexpect) of 80 and 120
columns, against the fake Hub and the fake Ollama. Asserts the layout and the flow (widths, the one-line bar,
the phases, the sizes in the question, exit codes), not which model the planner picks."""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from fakes.ollama import FakeOllama
from ggufs import write_gguf

from ollama_fit.hardware.model import Cpu, Hardware
from ollama_fit.hardware.simulate import Simulation, hardware_report
from ollama_fit.hub.fetch import PARTIAL
from ollama_fit.model.catalog import catalog, find_model
from ollama_fit.plan.exact import exact_plan
from ollama_fit.plan.planner import PlanRequest
from ollama_fit.units import human

if sys.platform == "win32":
    pytest.skip("pseudo-terminals are POSIX", allow_module_level=True)
pexpect = pytest.importorskip("pexpect", reason="pexpect drives the pseudo-terminal")

TIMEOUT = 180  # seconds for any one wait: generous, nothing is timed
MODEL = "qwen3:0.6b"
GPU_ARGS = ["--model", MODEL, "--vram", "3GiB", "--ram", "16GiB", "--ctx", "2048"]
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colors
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # any control sequence (colors, clear to end of line)


def picked_quant() -> str:
    """The quant the planner picks today for GPU_ARGS (the tests follow it, whatever it is)."""
    here = Hardware(gpus=(), ram_total_bytes=16 * 1024**3, ram_available_bytes=16 * 1024**3, cpu=Cpu("x", 2, 2))
    report = hardware_report(Simulation(vram=("3GiB",), ram="16GiB"), lambda: here)
    return exact_plan(report, PlanRequest(ctx=2048, model=MODEL), catalog(), None).choice.quant


@pytest.fixture(scope="module")
def gguf(fake_hub, tmp_path_factory):
    """The one file these runs download, at the quant the planner picks for GPU_ARGS today."""
    model = find_model(MODEL)
    quant = picked_quant()
    name = model.file_for(quant)
    path = write_gguf(tmp_path_factory.mktemp("term") / name, model.shape, quant, name="Qwen3 0.6B")
    fake_hub.repo(model.repo).add(name, path).sha256()
    return path


@pytest.fixture
def terminal_env(fake_hub, gguf, tmp_path):
    ollama = FakeOllama(version="0.30.1").start()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    env |= {
        "HF_ENDPOINT": fake_hub.endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "OLLAMA_HOST": ollama.host,
        "OLLAMA_MODELS": str(tmp_path / "ollama"),
        "OLLAMA_FIT_STATE_DIR": str(tmp_path / "state"),
        "OLLAMA_FIT_CACHE_DIR": str(tmp_path / "cache"),
        "TERM": "xterm-256color",
        "LC_ALL": "C.UTF-8",
    }
    yield env, ollama
    ollama.stop()
    fake_hub.delay = 0.0


class Run:
    """One `ollama-fit auto` in a pseudo-terminal `width` columns wide; `raw` is everything it wrote."""

    def __init__(self, env: dict[str, str], width: int, *args: str) -> None:
        exe = shutil.which("ollama-fit", path=os.path.dirname(sys.executable))
        assert exe, "the console script is installed next to the interpreter"
        self.width = width
        self.log = io.StringIO()
        self.child = pexpect.spawn(
            exe,
            ["auto", *GPU_ARGS, *args],
            env=env,
            dimensions=(24, width),
            encoding="utf-8",
            codec_errors="replace",
            timeout=TIMEOUT,
        )
        self.child.logfile_read = self.log

    def expect(self, pattern: str) -> str:
        self.child.expect(pattern)
        return str(self.child.after)

    def answer(self, text: str) -> None:
        self.child.sendline(text)

    def end(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else 128 + self.child.signalstatus)

    @property
    def raw(self) -> str:
        return self.log.getvalue()

    def widest(self) -> int:
        """The widest thing shown: every line, and every frame a carriage return redrew within a line."""
        pieces = (CSI.sub("", frame) for line in self.raw.split("\n") for frame in line.split("\r"))
        return max(len(p) for p in pieces)


def asked_size(run: Run) -> str:
    """The download the question states: `download  <size>` in the summary and `Download <size>` in it."""
    block = run.expect(r"Download [^\r\n]*\[y/N\] ")
    stated = re.search(r"  download  (\d+\.\d+ [KMGT]?i?B|\d+ B)", CSI.sub("", run.raw)).group(1)
    assert f"Download {stated} " in CSI.sub("", block)
    return stated


def partial_file(env: dict[str, str]) -> Path | None:
    found = list(Path(env["HF_HOME"]).rglob(f"*{PARTIAL}"))
    return found[0] if found else None


@pytest.mark.parametrize("width", [80, 120])
def test_auto_at_a_terminal_declined_interrupted_resumed_registered(fake_hub, gguf, terminal_env, width):
    env, ollama = terminal_env
    size = gguf.stat().st_size
    repo = find_model(MODEL).repo
    served = lambda: fake_hub.served(repo, gguf.name)  # noqa: E731

    # 1. the question states the whole file; a wrong answer says what is accepted; "n" is declined (13)
    first = Run(env, width)
    assert asked_size(first) == human(size)
    assert re.search(r"create +qwen3:0\.6b-\S+ in Ollama 0\.30\.1", CSI.sub("", first.raw))
    assert env["HF_HOME"] in first.raw.replace("\r\n", "")  # where the bytes go
    first.answer("perhaps")
    first.expect("type y to go ahead")
    first.expect(r"\[y/N\] ")
    first.answer("n")
    assert first.end() == 13
    assert not list(Path(env["HF_HOME"]).rglob("blobs/*"))  # nothing downloaded (the plan read the header)
    assert first.widest() <= width

    # 2. "y", then Ctrl-C mid-download (16 MiB in, by the fake Hub's count): 130, nothing registered
    fake_hub.delay = 0.002
    second = Run(env, width)
    asked_size(second)
    start = served()
    second.answer("y")
    deadline = time.monotonic() + TIMEOUT
    while served() - start < 16 * 1024**2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partial_file(env) is not None
    second.child.sendintr()
    second.expect("Interrupted: run the same command again to resume")
    assert second.end() == 130
    fake_hub.delay = 0.0
    assert ollama.models == {}

    # 3. the question states what is missing; the resume is announced; one-line bars; a status per phase
    third = Run(env, width)
    missing = asked_size(third)
    served_before = served()
    third.answer("y")
    assert third.end() == 0
    got = served() - served_before
    kept = size - got
    assert 0 < got < size
    assert missing == human(got)  # the question's size is what came over the network
    raw = third.raw
    resume = f"resuming {gguf.name} at {human(kept)} of {human(size)}"
    assert resume in raw
    bar = raw[raw.index(resume) + len(resume) :].split("\n", 1)[1]
    frames, verified = bar.split(f"{gguf.name}: {human(size)}, sha256 verified", 1)
    assert frames.startswith("\r")
    assert frames.endswith("\r\x1b[K")
    assert "\n" not in frames  # one line: every frame returns to its start, none scrolls
    assert frames.count("\r") >= 3  # the first frame, at least one more, the clearing
    first_frame = CSI.sub("", frames.split("\r")[1])
    assert "--:--" in first_frame  # no rate yet: no ETA invented
    assert all(f.rstrip().endswith("\x1b[K") for f in frames.split("\r")[1:-1])  # each frame clears its tail
    upload = verified.index("uploading to Ollama")
    upload_frames, after_upload = verified[upload:].split("\n", 1)[1].split("uploaded to Ollama", 1)
    assert "\n" not in upload_frames.rsplit("\r\x1b[K", 1)[0]
    assert upload_frames.startswith("\r")
    name = re.search(r"creating (qwen3:0\.6b-\S+) in Ollama", after_upload).group(1)
    assert f"loading {name} in Ollama for a smoke test" in after_upload
    shown = re.sub(r"\s+", " ", CSI.sub("", raw))  # wrapped lines joined again
    assert f"downloaded {human(got)} of {human(size)} ({human(kept)} were already on disk), sha256 verified" in shown
    assert "Done:" in shown
    assert third.widest() <= width
    assert name in ollama.models

    # 4. already registered: said before any question, nothing downloaded
    fourth = Run(env, width)
    assert fourth.end() == 0
    assert "[y/N]" not in fourth.raw
    assert f"{name} is already registered from these files: nothing to do" in CSI.sub("", fourth.raw)
    assert served() - served_before == got


def test_exit_codes_and_colors_at_the_question(gguf, terminal_env):
    env, ollama = terminal_env
    # Ctrl-D: no answer is no (13)
    eof = Run(env, 80)
    asked_size(eof)
    eof.child.sendeof()
    assert eof.end() == 13
    # Ctrl-C at the question: 130, as anywhere else
    intr = Run(env, 80)
    asked_size(intr)
    intr.child.sendintr()
    intr.expect("Interrupted at the question: nothing downloaded")
    assert intr.end() == 130
    # Enter alone is no; --json reports the status
    enter = Run(env, 80, "--json")
    asked_size(enter)
    enter.answer("")
    assert enter.end() == 13
    assert '"status": "declined"' in enter.raw
    assert ollama.models == {}
    # colors on a terminal; none with NO_COLOR (only the clearing of the bar line stays)
    assert SGR.search(eof.raw)
    plain = Run(env | {"NO_COLOR": "1"}, 80, "--dry-run", "--kv-type", "q8_0")
    assert plain.end() == 0
    assert "Dry run" in plain.raw
    assert not SGR.search(plain.raw)
    # a long warning wraps under its text, like the rest
    assert "Warning: Ollama uses the KV cache type its server runs with" in re.sub(r"\s+", " ", plain.raw)
    assert plain.widest() <= 80
