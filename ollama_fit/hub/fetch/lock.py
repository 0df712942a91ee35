"""One ollama-fit at a time per file: an advisory lock (flock) on `.locks/<repo>/<sha256>.ollama-fit.lock`,
held for the whole download-verify-register, removed when released so no 0-byte file stays behind.

Removing a lock file is safe only with a check: after taking the lock, the holder makes sure the path still
names the file it locked (another holder may have removed it meanwhile); if not, it locks the new one.
Windows has no flock: there the partial file is still safe to resume, and no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold `path` exclusively; `on_wait` is called once if another process holds it, then we wait (an
    exception from `on_wait` gives up instead)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                if not waited:
                    on_wait()
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts the wait
            except BaseException:
                os.close(fd)
                raise
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder before us removed it: lock the file that is there now
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still holding it: whoever waits on this inode sees it gone and retries
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
