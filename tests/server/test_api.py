"""The REST API end to end: a real uvicorn server, real API keys, a real index with two departments.

Every /v1 route needs a credential; the principal comes only from it (a body naming a user is refused); what a
caller gets — hits, answers, citations, streamed events — is only what its groups may read; errors are JSON with
a stable code and never a stack trace.
"""

from __future__ import annotations

import json

import httpx2
import pytest

from ragtune.server.app import iter_sse

from .conftest import Server

QUESTION = "How long are backups kept?"
ROUTES = [("POST", "/v1/ask", {"question": QUESTION}), ("POST", "/v1/search", {"query": QUESTION}),
          ("POST", "/v1/classify", {"model": "nope", "texts": ["x"]}), ("GET", "/v1/whoami", None)]


def test_health_and_readiness_need_no_credential(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok", "detail": ""}
        assert c.get("/readyz").status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(("header", "code"), [
    (None, "missing_credentials"), ("Basic abc", "malformed_credentials"), ("Bearer rtk_bad", "malformed_credentials"),
    ("revoked", "revoked_key"), ("forged", "invalid_key")])
def test_every_route_refuses_a_bad_credential_with_no_data(server: Server, method: str, path: str,
                                                           body: dict[str, object] | None, header: str | None,
                                                           code: str) -> None:
    if header == "revoked":
        header = f"Bearer {server.keys['revoked']}"
    elif header == "forged":  # a real key's id with another secret
        header = "Bearer " + "_".join(server.keys["hr"].split("_", 2)[:2]) + "_" + "A" * 43  # the secret may hold "_"
    with server.client() as c:
        r = c.request(method, path, json=body, headers={"Authorization": header} if header else {})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == code and set(r.json()) == {"error"}
    assert "Bearer" in r.headers["www-authenticate"]
    assert "ninety" not in r.text and "sixteen" not in r.text


def test_answers_and_citations_follow_the_credential(server: Server) -> None:
    with server.client("ops") as c:
        ops = c.post("/v1/ask", json={"question": QUESTION}).json()
    with server.client("hr") as c:
        hr = c.post("/v1/ask", json={"question": QUESTION}).json()
    assert not ops["abstained"] and "ninety days" in ops["answer"]
    assert [cit["path"].endswith("backups.md") for cit in ops["citations"]] == [True]
    assert hr["abstained"] and hr["citations"] == [] and "ninety" not in json.dumps(hr)
    assert ops["latency_ms"]["total"] > 0


def test_search_returns_only_readable_chunks(server: Server) -> None:
    for key, readable in (("hr", "leave.md"), ("ops", "backups.md")):
        with server.client(key) as c:
            hits = c.post("/v1/search", json={"query": "leave backups weeks days", "top_k": 10}).json()["hits"]
        assert hits and {h["path"].rsplit("/", 1)[-1] for h in hits} == {readable}


@pytest.mark.parametrize("field", ["user", "groups", "principal", "role"])
def test_no_request_field_can_set_the_principal(server: Server, field: str) -> None:
    with server.client("hr") as c:
        r = c.post("/v1/ask", json={"question": QUESTION, field: ["ops"] if field == "groups" else "otto"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "principal_in_request"
    assert "ninety" not in r.text


def test_whoami_reports_the_credentials_identity(server: Server) -> None:
    for key, (user, groups, role) in {"hr": ("hana", ["hr"], "reader"), "editor": ("eve", ["ops"], "editor"),
                                      "admin": ("ada", ["hr", "ops"], "admin")}.items():
        with server.client(key) as c:
            assert c.get("/v1/whoami").json() == {"user": user, "groups": groups, "role": role,
                                                   "credential": "api_key"}


def test_a_request_records_the_keys_last_use(server: Server) -> None:
    project = server.project
    _, key = project.key_store.create("lu", ["hr"], "reader")
    key_id = project.key_store.verify(key)[0].credential_id
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        assert c.get("/v1/whoami").status_code == 200
    assert project.key_store.get(key_id).last_used_at is not None  # type: ignore[union-attr]


def test_streamed_answer_is_events_then_done(server: Server) -> None:
    with server.client("ops") as c, c.stream("POST", "/v1/ask", json={"question": QUESTION},
                                             headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(iter_sse(r.iter_lines()))
    kinds = [e for e, _ in events]
    assert kinds[-2:] == ["answer", "done"]
    answer = dict(events)["answer"]
    assert "ninety days" in answer["answer"] and answer["citations"][0]["path"].endswith("backups.md")


def test_errors_are_json_with_a_stable_code(server: Server) -> None:
    with server.client("hr") as c:
        empty = c.post("/v1/ask", json={"question": ""})
        unknown = c.post("/v1/classify", json={"model": "no-such-model", "texts": ["hello"]})
        long = c.post("/v1/ask", json={"question": "x" * 5000})
        big = c.post("/v1/ask", content=b"{" + b" " * 1_100_000 + b"}", headers={"Content-Type": "application/json"})
        not_json = c.post("/v1/search", content=b"nope", headers={"Content-Type": "application/json"})
    assert (empty.status_code, empty.json()["error"]["code"]) == (422, "invalid_request")
    assert "question" in empty.json()["error"]["message"]
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
    assert long.status_code == 422 and "2000" in long.json()["error"]["message"]
    assert (big.status_code, big.json()["error"]["code"]) == (413, "body_too_large")
    assert not_json.status_code == 422 and "Traceback" not in not_json.text


def test_the_openapi_document_lists_the_routes_and_the_error_shape(server: Server) -> None:
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    assert {"/v1/ask", "/v1/search", "/v1/classify", "/v1/whoami", "/healthz", "/readyz"} <= set(doc["paths"])
    assert "ErrorOut" in doc["components"]["schemas"]
    assert set(doc["components"]["schemas"]["AskRequest"]["properties"]) == {"question"}


def test_asks_are_audited_with_the_callers_role(server: Server) -> None:
    from ragtune.audit.export import read_records
    from ragtune.audit.log import log_path
    from ragtune.audit.verify import verify

    with server.client("editor") as c:
        assert c.post("/v1/ask", json={"question": "Where are backups kept?"}).status_code == 200
    log = log_path(server.project.settings)
    last = list(read_records(log))[-1]
    assert (last["route"], last["principal"], last["role"], last["outcome"]) == ("api:ask", "eve", "editor",
                                                                                 "answered")
    assert verify(log).ok and b"ninety" not in log.read_bytes()


def test_wait_ready_gives_up_at_once_when_the_server_process_is_gone() -> None:
    import time

    from ragtune.server.local import free_port, wait_ready

    t0 = time.monotonic()
    assert not wait_ready(f"http://127.0.0.1:{free_port()}", 60, alive=lambda: False)
    assert not wait_ready(f"http://127.0.0.1:{free_port()}", 0.5)  # nothing listens: False after the timeout
    assert time.monotonic() - t0 < 10


def test_wait_ready_sees_the_running_server(server: Server) -> None:
    from ragtune.server.local import wait_ready

    assert wait_ready(server.url, 5)
