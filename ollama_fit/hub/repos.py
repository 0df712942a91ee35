"""The Hugging Face adapter: list a repository's GGUF files, group quants and shards, read byte ranges.

huggingface_hub is imported inside the methods (it is slow to import); its errors become `HubError` with a
hint. The constructor stores settings only: no network, no environment reads beyond what it is given.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ollama_fit import config
from ollama_fit.errors import HubError, InvalidInput
from ollama_fit.hub.backoff import RETRIES, Policy

# huggingface.js parseGGUFQuantLabel, applied to the upper-cased name; the last match wins
_QUANTS = (
    "F32|BF16|F16|Q8_K|Q8_0|Q6_K|Q5_K_M|Q5_K_S|Q5_K|Q5_0|Q5_1|Q4_K_M|Q4_K_S|Q4_K|Q4_0|Q4_1|Q3_K_L|Q3_K_M|Q3_K_S"
    "|Q3_K|Q2_K_S|Q2_K|IQ4_NL|IQ4_XS|IQ3_XXS|IQ3_XS|IQ3_S|IQ3_M|IQ2_XXS|IQ2_XS|IQ2_S|IQ2_M|IQ1_S|IQ1_M"
    "|TQ1_0|TQ2_0|MXFP4_MOE|MXFP4"
)
LABEL = re.compile(rf"(?<![A-Z0-9])(UD-)?({_QUANTS})(?:_(L|XL|XXL))?(?![A-Z0-9])")
SHARD = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
REF = re.compile(
    r"^(?:https?://)?(?:hf\.co/|huggingface\.co/)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?::(?P<quant>[\w.-]+))?/?$"
)
# the Hub's published order, largest first (hf-hub.md section 6), for listing quants
SIZE_ORDER = [
    "F32",
    "BF16",
    "F16",
    "Q8_K_XL",
    "Q8_0",
    "Q6_K_XL",
    "Q6_K_L",
    "Q6_K",
    "Q5_K_XL",
    "Q5_K_L",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_0",
    "Q5_1",
    "Q4_K_XL",
    "Q4_K_L",
    "Q4_K_M",
    "Q4_K_S",
    "IQ4_NL",
    "IQ4_XS",
    "Q4_0",
    "Q4_1",
    "MXFP4_MOE",
    "MXFP4",
    "Q3_K_XL",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "IQ3_M",
    "IQ3_S",
    "IQ3_XS",
    "IQ3_XXS",
    "Q2_K_XL",
    "Q2_K_L",
    "Q2_K",
    "Q2_K_S",
    "IQ2_M",
    "IQ2_S",
    "IQ2_XS",
    "IQ2_XXS",
    "IQ1_M",
    "IQ1_S",
    "TQ2_0",
    "TQ1_0",
]


def check_repo_id(repo: str) -> None:
    """The Hub's own rule for repository ids (huggingface_hub's validate_repo_id), and exactly one '/':
    checked before any request because an id like `a/..` would be collapsed into another URL by the HTTP
    client."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
        valid = repo.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise InvalidInput(
            f"invalid Hugging Face repository id {repo!r}",
            hint="write ORG/NAME: letters, digits, '-', '_' and '.', at most 96 each, no '--' or '..'",
        )


@dataclass(frozen=True)
class HubRef:
    repo: str
    quant: str | None = None

    @classmethod
    def parse(cls, text: str) -> HubRef:
        m = REF.match(text.strip())
        if not m:
            raise InvalidInput(
                f"not a Hugging Face reference: {text!r}", hint="write hf.co/ORG/REPO or hf.co/ORG/REPO:QUANT"
            )
        check_repo_id(m["repo"])
        return cls(m["repo"], m["quant"])

    def __str__(self) -> str:
        return f"hf.co/{self.repo}" + (f":{self.quant}" if self.quant else "")


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    sha256: str | None = None  # LFS files: the sha256 the Hub publishes

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class QuantFiles:
    """One quant of a repository: a single file, or every shard of a split file, in order."""

    label: str  # as published: Q4_K_M, UD-Q4_K_XL, Q6_K_L, ...
    files: tuple[HubFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def first(self) -> HubFile:
        return self.files[0]

    @property
    def split(self) -> bool:
        return len(self.files) > 1


def quant_label(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    matches = list(LABEL.finditer(name.upper()))
    if not matches:
        return None
    m = matches[-1]
    return (m.group(1) or "") + m.group(2) + (f"_{m.group(3)}" if m.group(3) else "")


def is_model_file(path: str) -> bool:
    """GGUF weights a user would load: not vision projectors, imatrix data or raw byte splits."""
    low = path.lower()
    name = low.rsplit("/", 1)[-1]
    return name.endswith(".gguf") and not name.startswith("mmproj") and "imatrix" not in low


# the projector precision Ollama and llama.cpp expect first: mmproj files are small and usually published
# as F16 (BF16 and Q8_0 where F16 is missing; F32 last, at twice the memory)
PROJECTOR_ORDER = ("F16", "BF16", "Q8_0", "F32")


def projector(files: Iterable[HubFile]) -> HubFile | None:
    """The vision projector (mmproj*.gguf) of a repository to load beside its model, F16 first; None when it
    publishes none (a text-only model)."""
    found = [f for f in files if f.name.lower().startswith("mmproj") and f.name.lower().endswith(".gguf")]

    def rank(f: HubFile) -> tuple[int, str]:
        words = set(re.split(r"[-_.]", f.name.upper()))  # whole words: F16 is not BF16
        return next((i for i, p in enumerate(PROJECTOR_ORDER) if p in words), len(PROJECTOR_ORDER)), f.name

    return min(found, key=rank, default=None)


def group_quants(files: Iterable[HubFile]) -> list[QuantFiles]:
    """Group a repository's files into quants: shards by prefix (all of 1..N present), singles as they are."""
    singles: list[QuantFiles] = []
    shards: dict[tuple[str, int], dict[int, HubFile]] = {}
    for f in files:
        if not is_model_file(f.path):
            continue
        m = SHARD.match(f.path)
        if m:
            shards.setdefault((m["prefix"], int(m["count"])), {})[int(m["no"])] = f
            continue
        label = quant_label(f.path)
        if label:
            singles.append(QuantFiles(label, (f,)))
    groups = list(singles)
    for (prefix, count), parts in shards.items():
        label = quant_label(prefix + ".gguf")
        if label and sorted(parts) == list(range(1, count + 1)):
            groups.append(QuantFiles(label, tuple(parts[i] for i in range(1, count + 1))))
    rank = {label: i for i, label in enumerate(SIZE_ORDER)}
    return sorted(groups, key=lambda q: (rank.get(q.label.removeprefix("UD-"), len(rank)), q.label, q.first.path))


def select(groups: list[QuantFiles], quant: str) -> QuantFiles:
    wanted = quant.upper()
    for g in groups:
        if g.label.upper() == wanted or g.first.name.upper() == wanted:
            return g
    known = ", ".join(g.label for g in groups) or "none"
    raise HubError(f"no {quant} GGUF in this repository", hint=f"available: {known}")


class Hub:
    """Hub access with explicit settings (huggingface_hub reads the environment at import; we do not rely on it).
    Every request is retried on 408/429/5xx and lost connections, honouring Retry-After (backoff.py); `sleep`
    is injectable for tests."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        offline: bool = False,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        retries: int = RETRIES,
    ) -> None:
        self.endpoint = (endpoint or config.DEFAULT_HF_ENDPOINT).rstrip("/")
        self.token = token
        self.offline = offline
        self.timeout = timeout
        self.policy = Policy(sleep, retries)

    @classmethod
    def from_env(cls) -> Hub:
        return cls(config.hf_endpoint(), config.hf_token(), config.hf_offline(), config.hub_timeout(10.0))

    def _online(self, repo: str) -> None:
        if self.offline:
            raise HubError(f"cannot reach {repo}: HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to use the Hub")

    def list_files(self, repo: str, revision: str = "main") -> list[HubFile]:
        """Every file with its size and LFS sha256: the tree API, paginated, each page retried on its own
        (huggingface_hub's own retries are not used: they take ~23 s to give up on an unreachable Hub)."""
        self._online(repo)
        from huggingface_hub.utils import get_session, hf_raise_for_status

        def page(url: str) -> Any:
            response = get_session().get(url, headers=self.headers(), timeout=self.timeout)
            hf_raise_for_status(response)
            return response

        url: str | None = f"{self.endpoint}/api/models/{repo}/tree/{quote(revision, safe='')}?recursive=true"
        out: list[HubFile] = []
        for _ in range(1000):  # pages of 1000 entries: a million files is more than any repository has
            if url is None:
                return out
            try:
                response = self.policy.run(functools.partial(page, url))
                entries = response.json()
            except Exception as exc:
                raise hub_error(exc, repo) from exc
            out += [_hub_file(e) for e in entries if isinstance(e, dict) and e.get("type") == "file"]
            url = response.links.get("next", {}).get("url")
        raise HubError(f"the file list of {repo} does not end", hint="try again later")

    def file_metadata(self, repo: str, path: str, revision: str = "main") -> tuple[str | None, str | None]:
        """(etag, commit) of one file from a HEAD on /resolve/ (for LFS files the etag is the sha256)."""
        self._online(repo)
        from huggingface_hub import get_hf_file_metadata

        def head() -> Any:
            return get_hf_file_metadata(
                self.url(repo, path, revision), token=self.token or False, timeout=self.timeout, endpoint=self.endpoint
            )

        try:
            meta = self.policy.run(head)
        except Exception as exc:
            raise hub_error(exc, repo, path) from exc
        return meta.etag, meta.commit_hash

    def url(self, repo: str, path: str, revision: str = "main") -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo, path, revision=revision, endpoint=self.endpoint)

    def headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        return dict(build_hf_headers(token=self.token or False))

    def read_range(self, repo: str, path: str, start: int, end: int, revision: str = "main") -> bytes:
        """Bytes [start, end) of a file; a server that ignores Range is cut off after end - start bytes."""
        self._online(repo)
        try:
            return self.policy.run(lambda: self._read_range(repo, path, start, end, revision))
        except HubError:
            raise
        except Exception as exc:
            raise hub_error(exc, repo, path) from exc

    def _read_range(self, repo: str, path: str, start: int, end: int, revision: str) -> bytes:
        from huggingface_hub.utils import get_session, hf_raise_for_status

        headers = self.headers() | {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        with get_session().stream(
            "GET", self.url(repo, path, revision), headers=headers, follow_redirects=True, timeout=self.timeout
        ) as response:
            hf_raise_for_status(response)
            skip = start if response.status_code == 200 else 0  # Range ignored: drop what we did not ask for
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= skip + (end - start):
                    break
            return bytes(data[skip : skip + (end - start)])


def _hub_file(entry: dict[str, Any]) -> HubFile:
    lfs = entry.get("lfs") or {}
    return HubFile(str(entry["path"]), int(entry.get("size", 0)), lfs.get("oid") or lfs.get("sha256"))


def hub_error(exc: BaseException, repo: str, path: str | None = None) -> HubError:
    """huggingface_hub / httpx errors -> one HubError with a hint. Tokens never appear in messages."""
    from huggingface_hub import errors

    where = f"{repo}/{path}" if path else repo
    page = f"https://huggingface.co/{repo}"
    token_sent = _token_sent(exc)
    if isinstance(exc, errors.GatedRepoError):
        if token_sent:
            return HubError(
                f"{repo} is gated and HF_TOKEN has no access to it",
                hint=f"accept the license on {page} with the token's account, or use a token with read access",
            )
        return HubError(f"{repo} is gated", hint=f"accept the license on {page} and set HF_TOKEN")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"repository {repo} not found", hint="check the name; private repositories need HF_TOKEN")
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(f"revision not found in {repo}", hint="check the branch or commit")
    if isinstance(exc, errors.EntryNotFoundError):
        return HubError(f"{where} not found", hint=f"see the files on {page}")
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubError(f"cannot reach {repo}: HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to use the Hub")
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        return _status_error(exc.response.status_code, where, token_sent)
    return HubError(
        f"cannot reach Hugging Face for {where} ({type(exc).__name__})",
        hint="check the network connection, or HF_ENDPOINT if you use a mirror",
    )


def _token_sent(exc: BaseException) -> bool:
    """Whether the failed request carried a token (never its value): a 401/403 then means the token lacks
    access, and "set HF_TOKEN" would be wrong advice."""
    response = getattr(exc, "response", None)
    if response is None:
        return False
    try:  # a redirect to the CDN drops the header: look at the first request too
        return any(r.request.headers.get("authorization") for r in (*getattr(response, "history", ()), response))
    except (AttributeError, RuntimeError):  # no request attached to the response
        return False


def _status_error(status: int, where: str, token_sent: bool = False) -> HubError:
    if status == 429:
        return HubError(
            f"Hugging Face rate-limited the request for {where}", hint="wait a minute; HF_TOKEN raises limits"
        )
    if status in (401, 403) and token_sent:
        return HubError(
            f"access to {where} denied ({status}): the token in HF_TOKEN has no access to it",
            hint="accept the repository's license with the token's account, or use a token with read access",
        )
    if status in (401, 403):
        return HubError(f"access to {where} denied ({status})", hint="set HF_TOKEN to a token with read access")
    if status >= 500:
        return HubError(f"Hugging Face failed with {status} for {where}", hint="try again later")
    return HubError(f"Hugging Face answered {status} for {where}", hint="check the repository and file name")
