from __future__ import annotations

import pytest
from conftest import tiny_shape
from fakes.hub import Fault
from ggufs import write_gguf

from ollama_fit.errors import HubError, InvalidInput
from ollama_fit.hub.repos import Hub, HubFile, HubRef, group_quants, quant_label, select

GB = 1000**3


def files(*paths: str) -> list[HubFile]:
    return [HubFile(p, 5 * GB) for p in paths]


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("Qwen2.5-7B-Instruct-Q4_K_M.gguf", "Q4_K_M"),  # bartowski / lmstudio-community
        ("gemma-2-9b-it-Q6_K_L.gguf", "Q6_K_L"),
        ("nvidia_AceReason-Nemotron-1.1-7B-Q6_K_L.gguf", "Q6_K_L"),
        ("Qwen3-4B-UD-Q2_K_XL.gguf", "UD-Q2_K_XL"),  # unsloth dynamic
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),  # Qwen official, lowercase
        ("qwen2.5-coder-1.5b-q8_0.gguf", "Q8_0"),  # ggml-org
        ("llama-2-7b-chat.Q4_K_M.gguf", "Q4_K_M"),  # TheBloke
        ("model.i1-IQ3_M.gguf", "IQ3_M"),  # mradermacher imatrix quants
        ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
        ("Qwen3-Embedding-0.6B-f16.gguf", "F16"),
        ("Meta-Llama-3.1-8B-Instruct-BF16.gguf", "BF16"),
        ("README.md", None),
    ],
)
def test_quant_labels_of_every_publisher_style(path, label):
    assert quant_label(path) == label


def test_grouping_excludes_non_models_and_groups_shards():
    groups = group_quants(
        files(
            "Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf",
            "Meta-Llama-3.1-70B-Instruct-Q8_0/Meta-Llama-3.1-70B-Instruct-Q8_0-00001-of-00002.gguf",
            "Meta-Llama-3.1-70B-Instruct-Q8_0/Meta-Llama-3.1-70B-Instruct-Q8_0-00002-of-00002.gguf",
            "UD-Q3_K_XL/Kimi-K2-UD-Q3_K_XL-00001-of-00003.gguf",
            "UD-Q3_K_XL/Kimi-K2-UD-Q3_K_XL-00002-of-00003.gguf",  # shard 3 missing: incomplete, left out
            "mmproj-F16.gguf",
            "Meta-Llama-3.1-70B-Instruct.imatrix",
            "llama-2-70b.Q8_0.gguf-split-a",
            "llama-2-70b.Q8_0.gguf-split-b",
            "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf",
            "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf",
        )
    )
    by_label = {(g.label, g.first.path): g for g in groups}
    assert [g.label for g in groups] == ["Q8_0", "Q4_K_M", "Q4_K_M"]  # largest first
    q8 = next(g for g in groups if g.label == "Q8_0")
    assert q8.split
    assert q8.total_bytes == 10 * GB
    assert q8.first.name.endswith("-00001-of-00002.gguf")
    qwen = next(g for (label, first), g in by_label.items() if first.startswith("qwen"))
    assert [f.path[-20:] for f in qwen.files] == ["-00001-of-00002.gguf", "-00002-of-00002.gguf"]


def test_select_by_label_or_file_name():
    groups = group_quants(files("X-Q4_K_M.gguf", "X-Q8_0.gguf"))
    assert select(groups, "q4_k_m").label == "Q4_K_M"
    assert select(groups, "X-Q8_0.gguf").label == "Q8_0"
    with pytest.raises(HubError, match="no Q2_K GGUF") as info:
        select(groups, "Q2_K")
    assert "Q8_0, Q4_K_M" in info.value.hint


@pytest.mark.parametrize(
    ("text", "repo", "quant"),
    [
        ("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF", "bartowski/Qwen2.5-7B-Instruct-GGUF", None),
        ("hf.co/unsloth/Qwen3-8B-GGUF:UD-Q4_K_XL", "unsloth/Qwen3-8B-GGUF", "UD-Q4_K_XL"),
        ("https://huggingface.co/ggml-org/gpt-oss-20b-GGUF", "ggml-org/gpt-oss-20b-GGUF", None),  # parsing only
        ("Qwen/Qwen3-8B-GGUF:Q8_0", "Qwen/Qwen3-8B-GGUF", "Q8_0"),
    ],
)
def test_refs(text, repo, quant):
    ref = HubRef.parse(text)
    assert (ref.repo, ref.quant) == (repo, quant)


def test_bad_ref():
    with pytest.raises(InvalidInput, match="not a Hugging Face reference"):
        HubRef.parse("just-a-name")


# ----- against the fake Hub, through the real huggingface_hub client -----


@pytest.fixture(scope="module")
def tiny_repo(fake_hub, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    repo = fake_hub.repo("acme/Tiny-GGUF")
    for quant in ("Q4_K_M", "Q8_0"):
        repo.add(f"Tiny-{quant}.gguf", write_gguf(folder / f"Tiny-{quant}.gguf", tiny_shape(), quant))
    readme = folder / "README.md"
    readme.write_text("# tiny\n")
    repo.add("README.md", readme, lfs=False)
    gated = fake_hub.repo("acme/Gated-GGUF", gated=True)
    gated.add("Gated-Q8_0.gguf", folder / "Tiny-Q8_0.gguf")
    return repo


def test_list_files_with_sizes_and_sha256(fake_hub, tiny_repo):
    listed = {f.path: f for f in Hub(fake_hub.endpoint).list_files("acme/Tiny-GGUF")}
    q4 = tiny_repo.files["Tiny-Q4_K_M.gguf"]
    assert listed["Tiny-Q4_K_M.gguf"].size == q4.size
    assert listed["Tiny-Q4_K_M.gguf"].sha256 == q4.sha256()
    assert listed["README.md"].sha256 is None


def test_range_read_follows_the_cdn_redirect(fake_hub, tiny_repo):
    data = tiny_repo.files["Tiny-Q8_0.gguf"].source.read_bytes()
    got = Hub(fake_hub.endpoint).read_range("acme/Tiny-GGUF", "Tiny-Q8_0.gguf", 100, 1100)
    assert got == data[100:1100]


@pytest.mark.parametrize(
    ("repo", "path", "message", "hint"),
    [
        ("acme/Nope-GGUF", None, "repository acme/Nope-GGUF not found", "HF_TOKEN"),
        ("acme/Gated-GGUF", "Gated-Q8_0.gguf", "is gated", "accept the license"),
        ("acme/Tiny-GGUF", "Missing-Q2_K.gguf", "not found", "see the files"),
    ],
)
def test_error_answers_become_hub_errors(fake_hub, tiny_repo, repo, path, message, hint):
    hub = Hub(fake_hub.endpoint)
    with pytest.raises(HubError, match=message) as info:
        hub.read_range(repo, path, 0, 10) if path else hub.list_files(repo)
    assert hint in info.value.hint


def test_gated_repo_opens_with_a_token_that_is_never_shown(fake_hub, tiny_repo):
    hub = Hub(fake_hub.endpoint, token=fake_hub.token)
    assert hub.read_range("acme/Gated-GGUF", "Gated-Q8_0.gguf", 0, 4) == b"GGUF"
    cdn_requests = [h for method, path, h in fake_hub.requests if path.startswith("/cdn/")]
    assert all("authorization" not in {k.lower() for k in h} for h in cdn_requests)  # not leaked to the CDN


@pytest.mark.parametrize(
    ("fault", "count", "message"),
    [
        (Fault(status=429, retry_after=1), 6, "rate-limited"),  # retried 5 times, then given up
        (Fault(status=503), 6, "failed with 503"),
        (Fault(status=403), 1, "access to acme/Tiny-GGUF/Tiny-Q4_K_M.gguf denied"),  # not retried
        (Fault(status=401), 1, "access to acme/Tiny-GGUF/Tiny-Q4_K_M.gguf denied"),
    ],
)
def test_server_errors(fake_hub, tiny_repo, fault, count, message):
    fake_hub.fail("acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf", *[fault] * count)
    slept: list[float] = []
    with pytest.raises(HubError, match=message):
        Hub(fake_hub.endpoint, sleep=slept.append).read_range("acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf", 0, 10)
    assert len(slept) == count - 1
    assert not fake_hub.faults.get("acme/Tiny-GGUF/Tiny-Q4_K_M.gguf")


@pytest.mark.parametrize("route", ["api", "resolve"])
@pytest.mark.parametrize("status", [429, 503])
def test_every_hub_request_is_retried_honouring_retry_after(fake_hub, tiny_repo, route, status):
    """The file listing (API) and the resolve HEAD/GET get the same back-off as the download."""
    fake_hub.fail_route(route, Fault(status=status, retry_after=3), Fault(status=status))
    slept: list[float] = []
    hub = Hub(fake_hub.endpoint, sleep=slept.append)
    assert any(f.path == "Tiny-Q4_K_M.gguf" for f in hub.list_files("acme/Tiny-GGUF"))
    etag, commit = hub.file_metadata("acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf")
    assert etag == tiny_repo.files["Tiny-Q4_K_M.gguf"].sha256()
    assert commit == tiny_repo.commit
    assert slept == [3.0, 2.0]  # Retry-After, then the doubling back-off
    assert not fake_hub.route_faults[route]


def test_a_hub_that_keeps_failing_is_given_up_on(fake_hub, tiny_repo):
    fake_hub.fail_route("api", *[Fault(status=503, retry_after=1)] * 6)
    slept: list[float] = []
    with pytest.raises(HubError, match="failed with 503"):
        Hub(fake_hub.endpoint, sleep=slept.append).list_files("acme/Tiny-GGUF")
    assert slept == [1.0] * 5


def test_offline_and_unreachable():
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        Hub("http://127.0.0.1:9", offline=True).list_files("acme/Tiny-GGUF")
    with pytest.raises(HubError, match="cannot reach Hugging Face"):
        Hub("http://127.0.0.1:9", timeout=2).read_range("acme/Tiny-GGUF", "x.gguf", 0, 10)


def test_a_connection_lost_mid_answer_is_retried(fake_hub, tiny_repo):
    fake_hub.fail("acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf", Fault(drop_after=3))
    slept: list[float] = []
    data = Hub(fake_hub.endpoint, sleep=slept.append).read_range("acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf", 0, 10)
    assert data == tiny_repo.files["Tiny-Q4_K_M.gguf"].source.read_bytes()[:10]
    assert slept == [1.0]


def test_an_unanswered_hub_is_not_waited_for():
    slept: list[float] = []
    with pytest.raises(HubError, match="cannot reach Hugging Face"):
        Hub("http://127.0.0.1:9", sleep=slept.append).list_files("acme/Tiny-GGUF")
    assert slept == []  # refused: the plan falls back to the catalog at once


@pytest.mark.parametrize(
    ("token", "status"),
    [
        ("hf_other_account", 403),  # a real account that has not accepted the license
        ("hf_unknown_token", 401),  # a token the Hub does not know
    ],
)
def test_a_gated_repo_refusing_the_token_does_not_ask_to_set_it(fake_hub, tiny_repo, token, status):
    fake_hub.accounts.add("hf_other_account")
    since = len(fake_hub.answers)
    with pytest.raises(HubError, match="HF_TOKEN has no access") as info:
        Hub(fake_hub.endpoint, token=token).read_range("acme/Gated-GGUF", "Gated-Q8_0.gguf", 0, 4)
    assert [a for _, p, a in fake_hub.answers[since:] if "/resolve/" in p] == [status]  # GatedRepo, not retried
    assert str(info.value) == "acme/Gated-GGUF is gated and HF_TOKEN has no access to it"
    assert "set HF_TOKEN" not in info.value.hint
    assert "accept the license" in info.value.hint
    assert token not in str(info.value) + info.value.hint


def test_cli_pull_of_a_gated_repo_with_a_token_without_access_exits_7(fake_hub, tiny_repo, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ollama_fit.cli import cli

    fake_hub.accounts.add("hf_other_account")
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_other_account")
    since = len(fake_hub.answers)
    result = CliRunner().invoke(cli, ["pull", "hf.co/acme/Gated-GGUF:Q8_0", "--no-register"])
    assert result.exit_code == 7, result.output
    assert ("HEAD", "/acme/Gated-GGUF/resolve/main/Gated-Q8_0.gguf", 403) in fake_hub.answers[since:]
    assert "acme/Gated-GGUF is gated and HF_TOKEN has no access to it" in result.stderr
    assert "hf_other_account" not in result.output
    assert not [p for _, p, _ in fake_hub.answers[since:] if p.startswith("/cdn/")]  # not a byte sent


def test_resolve_refuses_an_unknown_revision(fake_hub, tiny_repo):
    hub = Hub(fake_hub.endpoint)
    with pytest.raises(HubError, match="revision not found in acme/Tiny-GGUF"):
        hub.read_range("acme/Tiny-GGUF", "Tiny-Q8_0.gguf", 0, 4, revision="no-such-branch")
    assert hub.read_range("acme/Tiny-GGUF", "Tiny-Q8_0.gguf", 0, 4, revision=tiny_repo.commit) == b"GGUF"


def test_a_403_with_a_token_says_the_token_lacks_access(fake_hub, tiny_repo):
    from fakes.hub import Fault

    fake_hub.fail("acme/Tiny-GGUF", "Tiny-Q8_0.gguf", Fault(status=403), Fault(status=403))
    with pytest.raises(HubError, match="denied") as info:
        Hub(fake_hub.endpoint, token="hf_no_access").read_range("acme/Tiny-GGUF", "Tiny-Q8_0.gguf", 0, 4)
    assert "token in HF_TOKEN has no access" in info.value.message
    assert "set HF_TOKEN" not in info.value.hint
    with pytest.raises(HubError, match="denied") as anonymous:
        Hub(fake_hub.endpoint).read_range("acme/Tiny-GGUF", "Tiny-Q8_0.gguf", 0, 4)
    assert "set HF_TOKEN" in anonymous.value.hint


@pytest.mark.parametrize(
    ("header", "status", "first", "last"),
    [
        ("bytes=10-19", 206, 10, 19),
        ("bytes=10-", 206, 10, None),
        ("bytes=0-99999999", 206, 0, None),  # an end past the file is the last byte
        ("bytes=-10", 206, -10, None),  # suffix: the last 10 bytes
        ("bytes=-99999999", 206, 0, None),  # a suffix longer than the file is the whole file
        ("bytes=20-10", 416, None, None),  # inverted
        ("bytes=99999999-", 416, None, None),  # starts past the end
        ("bytes=-0", 416, None, None),  # an empty suffix
        ("bytes=0-1,5-6", 416, None, None),  # several ranges: not served by the fake
        ("items=0-5", 200, 0, None),  # not a byte range: ignored
    ],
)
def test_the_fake_cdn_answers_range_headers_as_rfc_9110(fake_hub, tiny_repo, header, status, first, last):
    """What the fake Hub's CDN does with each form of Range (the fetch tests rely on the first three)."""
    import http.client
    from urllib.parse import urlsplit

    data = tiny_repo.files["Tiny-Q8_0.gguf"].source.read_bytes()
    size = len(data)
    cdn = urlsplit(fake_hub.cdn)
    conn = http.client.HTTPConnection(cdn.hostname, cdn.port, timeout=10)
    try:
        conn.request("GET", "/cdn/acme/Tiny-GGUF/Tiny-Q8_0.gguf", headers={"Range": header})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == status
    if status == 416:
        assert response.getheader("Content-Range") == f"bytes */{size}"
        assert body == b""
        return
    start = first % size if first is not None else 0
    end = last if last is not None else size - 1
    assert body == data[start : end + 1]
    if status == 206:
        assert response.getheader("Content-Range") == f"bytes {start}-{end}/{size}"
    else:
        assert response.getheader("Content-Range") is None
