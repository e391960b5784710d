"""Limits of the REST API (issue 18): a per-credential rate limit (429 with Retry-After), a request timeout
(504), the upload size limit (413). Each on its own server with tiny limits, so the shared one is not throttled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from helpers import serve_project as serve

from ragtune.project import Project
from ragtune.server.documents import uploads_dir
from ragtune.server.limits import TokenBuckets, credential_key

from .conftest import Server
from .live import small_project


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_says_when_to_retry() -> None:
    clock = Clock()
    buckets = TokenBuckets(60, clock)  # one a second, bursts of 60
    assert [buckets.take("a") for _ in range(60)] == [0.0] * 60
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0  # another credential has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0


def test_the_key_is_the_whole_header_so_a_forged_secret_spends_its_own_budget() -> None:
    real = {"headers": [(b"authorization", b"Bearer rtk_abc_secret")], "client": ("1.2.3.4", 1)}
    forged = {"headers": [(b"authorization", b"Bearer rtk_abc_other")], "client": ("1.2.3.4", 1)}
    anon = {"headers": [], "client": ("1.2.3.4", 1)}
    assert len({credential_key(real), credential_key(forged), credential_key(anon)}) == 3
    assert credential_key(real) == credential_key(dict(real)) and b"secret" not in credential_key(real).encode()



def test_each_ui_session_has_its_own_bucket_behind_one_address() -> None:
    def ui(cookie: bytes) -> dict[str, object]:
        return {"headers": [(b"cookie", cookie)], "client": ("10.0.0.1", 1)}  # one proxy in front of everyone
    one, two = ui(b"theme=dark; ragtune_session=AAA"), ui(b"ragtune_session=BBB")
    assert len({credential_key(one), credential_key(two), credential_key(ui(b"theme=dark"))}) == 3
    assert credential_key(ui(b"x_ragtune_session=AAA")) == credential_key(ui(b""))  # only the real cookie counts
    assert b"AAA" not in credential_key(one).encode()


def test_static_files_spend_no_budget(tiny: tuple[str, dict[str, str], Project]) -> None:
    url, _, _ = tiny
    with httpx2.Client(base_url=url, timeout=60) as c:
        codes = [c.get("/ui/static/ui.css").status_code for _ in range(6)]  # twice the rate of 3 a minute
        assert codes == [200] * 6
        assert [c.get("/ui/login").status_code for _ in range(4)][-1] == 429  # pages do


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Project]]:
    project = small_project(tmp_path_factory.mktemp("limits"), {"rate_limit_per_minute": 3, "max_upload_mb": 0.001})
    keys = {name: project.key_store.create(user, ["ops"], role)[1]
            for name, user, role in [("a", "ann", "reader"), ("b", "bob", "reader"), ("editor", "eve", "editor")]}
    with serve(project) as url:
        yield url, keys, project


def _client(url: str, key: str) -> httpx2.Client:
    return httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_a_credential_past_its_rate_gets_429_with_retry_after(tiny: tuple[str, dict[str, str], Project]) -> None:
    url, keys, _ = tiny
    with _client(url, keys["a"]) as c:
        codes = [c.get("/v1/whoami").status_code for _ in range(4)]
        r = c.get("/v1/whoami")
        assert c.get("/healthz").status_code == 200  # probes are never throttled
    assert codes == [200, 200, 200, 429]
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 20  # 3 a minute: one token every 20 s
    with _client(url, keys["b"]) as c:  # another key is not affected
        assert c.get("/v1/whoami").status_code == 200


def test_an_upload_over_max_upload_mb_is_413_and_nothing_is_kept(tiny: tuple[str, dict[str, str], Project]
                                                                 ) -> None:
    url, keys, project = tiny
    before = project.store.count()
    with _client(url, keys["editor"]) as c:
        r = c.post("/v1/documents", files={"file": ("big.md", b"# Big\n\n" + b"word " * 400)},
                   data={"acl": "group:ops"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large", r.text
    assert "0.001 MB" in r.json()["error"]["message"]
    assert project.store.count() == before
    assert not uploads_dir(project).exists() or not any(uploads_dir(project).iterdir())


def test_a_request_past_the_timeout_gets_504(tmp_path: Path) -> None:
    project = small_project(tmp_path, {"request_timeout_s": 0.001})
    _, key = project.key_store.create("ann", ["ops"], "reader")
    with serve(project) as url, _client(url, key) as c:
        r = c.post("/v1/ask", json={"question": "How long are backups kept?"})
        assert c.get("/readyz").status_code == 200  # probes are exempt
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert "request_timeout_s" in r.json()["error"]["message"] and "ninety" not in r.text


def test_an_upload_may_be_larger_than_other_bodies(server: Server) -> None:
    """The 1 MB body limit does not cap uploads: a 1.2 MB file reaches the upload route (a damaged PDF, so the
    job fails it per file and nothing is embedded), while any other body of that size is refused at once."""
    body = b"%PDF-1.4\n" + b"0" * 1_200_000
    with server.client("editor") as c:
        r = c.post("/v1/documents", files={"file": ("big.pdf", body, "application/pdf")},
                   data={"acl": "group:nobody-reads-this"})
        other = c.post("/v1/search", content=b"{" + b" " * 1_100_000 + b"}",
                       headers={"Content-Type": "application/json"})
    assert r.status_code != 413 and r.status_code < 500, r.text
    assert other.status_code == 413 and other.json()["error"]["code"] == "body_too_large"
