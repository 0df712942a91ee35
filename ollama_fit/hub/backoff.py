"""When and how long to wait before asking a server again: one policy for every Hub request and download.

Retried: 408, 429 and 5xx answers and lost connections. `Retry-After` (seconds) is honoured up to MAX_WAIT;
otherwise the waits double from 1 s. A Hub API request that is refused or times out is not retried: nothing
answers there, and an offline machine should hear so at once (plans then fall back to the catalog); the
download itself retries those too (transfer.py), since it has bytes to keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

RETRIES = 6  # attempts in a row without progress before giving up
MAX_WAIT = 60.0  # seconds: the longest back-off or Retry-After honoured
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
SLOW_DOWN = frozenset({429, 503})  # the server is overloaded: fewer connections, not only a wait

T = TypeVar("T")


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After: N` header (an HTTP date is not used by the Hub; it counts as absent)."""
    try:
        return min(MAX_WAIT, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def wait_for(failures: int, hinted: float | None) -> float:
    """The wait before attempt `failures + 1`: the server's hint, else 1, 2, 4, ... seconds."""
    return hinted if hinted is not None else min(MAX_WAIT, 2.0 ** (failures - 1))


def is_network(exc: BaseException) -> bool:
    from huggingface_hub.utils import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


def is_unanswered(exc: BaseException) -> bool:
    """Refused or timed out: no server answering, rather than a connection lost on the way."""
    from huggingface_hub.utils import httpx

    return isinstance(exc, (httpx.ConnectError, httpx.TimeoutException, ConnectionRefusedError, TimeoutError))


def status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


@dataclass
class Policy:
    """Retries for one request: `call()` again after a retryable failure, at most `retries` times in all."""

    sleep: Callable[[float], None] = time.sleep
    retries: int = RETRIES
    on_retry: Callable[[str, float], None] = field(default=lambda reason, wait: None)

    def run(self, call: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return call()
            except Exception as exc:
                reason, hinted = _retryable(exc)
                failures += 1
                if reason is None or failures >= self.retries:
                    raise
                wait = wait_for(failures, hinted)
                self.on_retry(reason, wait)
                self.sleep(wait)


def _retryable(exc: BaseException) -> tuple[str | None, float | None]:
    status = status_of(exc)
    if status is not None:
        if status not in RETRY_STATUS:
            return None, None
        response: Any = getattr(exc, "response", None)
        return f"HTTP {status}", retry_after(response.headers.get("retry-after"))
    if is_network(exc) and not is_unanswered(exc):
        return type(exc).__name__, None
    return None, None
