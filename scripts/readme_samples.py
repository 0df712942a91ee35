"""Regenerate the sample sessions of README.md from the current code (prints them; README.md is edited by hand).

    python scripts/readme_samples.py [auto] [plan] [inspect]   (all three when none is named)

- `plan`: `ollama-fit plan --gpu "RTX 4090" --ram 64GiB --offline` at 120 columns.
- `inspect`: `ollama-fit inspect hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M --gpu "RTX 4060 Laptop"` at
  120 columns, against the test suite's fake Hub serving a file with Llama 3.2 1B's tensor table and a synthetic
  tokenizer (as the `llama1b_gguf` fixture of tests/conftest.py writes it).
- `auto`: `ollama-fit auto --gpu "RTX 4070" --ram 32GiB` in an 80-column pseudo-terminal (pexpect), answering
  `y`, against the fake Hub serving the pick's file (its real header shape, data sparse, found by planning until
  the pick's figures are exact) and a fake Ollama 0.32.15 on 127.0.0.1:11434. The Hugging Face cache and
  Ollama's folder are given as the relative paths `~/.cache/huggingface` and `~/.ollama/models` inside a
  scratch folder, so the session prints (and wraps) them as their defaults. The download is a real one of the
  whole (sparse) file over loopback: a few GB of scratch disk for a minute or two.

Every command runs with OLLAMA_FIT_RAM_BANDWIDTH_GBS=60 (a measured bandwidth would make the speeds depend on
this machine) and NO_COLOR. The progress frames of the auto session are left out of it and printed apart (the
one nearest 40% of the download).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

EXE = str(Path(sys.executable).parent / "ollama-fit")
AUTO_ARGS = ["auto", "--gpu", "RTX 4070", "--ram", "32GiB"]
PLAN_ARGS = ["plan", "--gpu", "RTX 4090", "--ram", "64GiB", "--offline"]
INSPECT_REF = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
INSPECT_ARGS = ["inspect", INSPECT_REF, "--gpu", "RTX 4060 Laptop"]
OLLAMA_VERSION = "0.32.15"
OLLAMA_PORT = 11434


def shell(args: list[str]) -> str:
    """The command line as README.md writes it (double quotes around an argument with a space)."""
    return "$ ollama-fit " + " ".join(f'"{a}"' if " " in a else a for a in args)


def base_env(scratch: Path, columns: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OLLAMA", "HUGGING"))}
    return env | {
        "HOME": str(scratch),  # huggingface_hub expands HF_HOME's ~ at import: keep it in the scratch folder
        "COLUMNS": str(columns),
        "NO_COLOR": "1",
        "OLLAMA_FIT_RAM_BANDWIDTH_GBS": "60",
        "OLLAMA_FIT_STATE_DIR": str(scratch / "state"),
        "OLLAMA_FIT_CACHE_DIR": str(scratch / "cache"),
        "HF_HOME": "~/.cache/huggingface",  # relative to the scratch folder (the cwd): printed as the default
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "120",
        "OLLAMA_HOST": "http://127.0.0.1:9",  # closed: nothing may reach a real server
    }


def run_plain(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([EXE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shell(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    if done.stderr.strip():
        print(f"[stderr of {args[0]}]\n{done.stderr}", file=sys.stderr)
    return done.stdout.rstrip("\n")


def sample_plan(scratch: Path) -> str:
    return shell(PLAN_ARGS) + "\n" + run_plain(PLAN_ARGS, base_env(scratch, 120), scratch)


def sample_inspect(scratch: Path, hub) -> str:
    from ggufs import write_gguf

    from ollama_fit.model.catalog import find_model

    folder = scratch / "gguf"
    folder.mkdir(exist_ok=True)
    name = "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    path = write_gguf(
        folder / name, find_model("llama3.2:1b").shape, "Q4_K_M", merges=280_147, name="Llama 3.2 1B Instruct"
    )
    hub.repo("bartowski/Llama-3.2-1B-Instruct-GGUF").add(name, path)
    env = base_env(scratch, 120) | {"HF_ENDPOINT": hub.endpoint}
    return shell(INSPECT_ARGS) + "\n" + run_plain(INSPECT_ARGS, env, scratch)


def write_pick(folder: Path, model_id: str, quant: str) -> Path:
    """The catalog model's file at `quant`: the architecture's keys as its converter writes them
    (tests/hybrid_ggufs.py), the vocabulary at its real size, a chat template; tensor data sparse."""
    from hybrid_ggufs import write_hybrid

    from ollama_fit.model.catalog import find_model

    model = find_model(model_id)
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    return write_hybrid(folder / model.file_for(quant), model.shape, quant, name=model.name, chat_template=template)


def start_ollama():
    from fakes.ollama import FakeOllama, _handler

    ollama = FakeOllama(version=OLLAMA_VERSION)
    server = ThreadingHTTPServer(("127.0.0.1", OLLAMA_PORT), _handler(ollama))  # the default address, as shown
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    ollama.server = server
    ollama.host = f"http://127.0.0.1:{OLLAMA_PORT}"
    return ollama


def sample_auto(scratch: Path, hub) -> tuple[str, str]:
    import pexpect

    ollama = start_ollama()
    try:
        env = base_env(scratch, 80) | {
            "HF_ENDPOINT": hub.endpoint,
            "OLLAMA_HOST": ollama.host,
            "OLLAMA_MODELS": "~/.ollama/models",  # relative to the scratch folder: printed as the default
            "TERM": "xterm",
        }
        folder = scratch / "auto"
        folder.mkdir(exist_ok=True)
        # serve the pick's file until the plan's pick is exact (an exact header may move the pick)
        for _ in range(6):
            dry = subprocess.run(
                [EXE, *AUTO_ARGS, "--dry-run", "--json"], env=env, cwd=scratch, capture_output=True, text=True,
                timeout=1800, check=False,
            )  # fmt: skip
            choice = json.loads(dry.stdout)["plan"]["choice"]
            if choice.get("exact"):
                break
            model_id, quant = choice["model"]["id"], choice["quant"]
            print(f"serving {model_id} {quant} on the fake Hub", file=sys.stderr)
            path = write_pick(folder, model_id, quant)
            from ollama_fit.model.catalog import find_model

            hub.repo(find_model(model_id).repo).add(path.name, path)
        else:
            raise SystemExit("the pick never became exact")
        child = pexpect.spawn(
            EXE, AUTO_ARGS, env=env, cwd=str(scratch), dimensions=(50, 80), encoding="utf-8", timeout=1800
        )
        raw: list[str] = []

        class Log:
            def write(self, s: str) -> None:
                raw.append(s)

            def flush(self) -> None:
                pass

        child.logfile_read = Log()
        child.expect(r"\[y/N\] ")
        child.sendline("y")
        child.expect(pexpect.EOF)
        child.close()
        if child.exitstatus != 0:
            raise SystemExit(f"auto exited {child.exitstatus}:\n{''.join(raw)}")
    finally:
        ollama.stop()
    text = "".join(raw)
    (scratch / "auto-raw.txt").write_text(text)
    return screen(text)


def screen(text: str) -> tuple[str, str]:
    """The final lines of a terminal session (each line as its last redraw left it), and the progress frame
    nearest 40% of the download."""
    lines, frames = [], []
    for line in text.replace("\r\n", "\n").split("\n"):
        parts = [p.replace("\x1b[K", "") for p in line.split("\r")]
        frames += [p for p in parts if p.startswith("[")]
        final = parts[-1]
        for p in reversed(parts):  # a frame cleared, then a line written over it
            if p:
                final = p
                break
        lines.append(final.rstrip())
    out = [ln for ln in lines if not ln.startswith("[")]
    while out and not out[-1]:
        out.pop()

    def percent(f: str) -> int:
        m = re.search(r"(\d+)%", f)
        return int(m.group(1)) if m else -1

    download = [f for f in frames if "/s" in f and percent(f) >= 0]
    best = min(download, key=lambda f: abs(percent(f) - 40), default="")
    return shell(AUTO_ARGS) + "\n" + "\n".join(out), best.rstrip()


def main() -> None:
    which = set(sys.argv[1:]) or {"auto", "plan", "inspect"}
    from fakes.hub import FakeHub

    scratch = Path(tempfile.mkdtemp(prefix="readme-samples-"))
    hub = FakeHub().start()
    try:
        if "plan" in which:
            print(sample_plan(scratch), end="\n\n")
        if "inspect" in which:
            print(sample_inspect(scratch, hub), end="\n\n")
        if "auto" in which:
            session, frame = sample_auto(scratch, hub)
            print(session, end="\n\n")
            print(frame)
    finally:
        hub.stop()
        if not os.environ.get("KEEP_SCRATCH"):
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch kept: {scratch}", file=sys.stderr)


if __name__ == "__main__":
    main()
