"""Property-based API tests with schemathesis against the real running server (tests/server/conftest.py).

Every operation of the served OpenAPI document gets generated requests (valid and invalid bodies, paths and
headers); each response must not be a 5xx, must use a status code the document declares, and must match the
declared schema. Operations that change the shared index (upload, delete, sync) are excluded: they would
change what the other tests of the package see. The SSE stream of ``/v1/ask`` is checked end to end below.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from ragtune.server import schemas as S
from ragtune.server.app import iter_sse

from .conftest import Server

pytestmark = pytest.mark.integration
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    """The served OpenAPI document, without the operations that change the shared index."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)
    return (schema.exclude(method="DELETE", path_regex="^/v1/documents")
            .exclude(method="POST", path="/v1/documents")
            .exclude(method="POST", path="/v1/sync"))


@pytest.mark.parametrize("key", ["ops", "admin"])
def test_every_operation_keeps_to_its_schema(api_schema: Any, server: Server, key: str) -> None:
    # A reader's key (403 on the admin routes) and an admin's (every action, past authentication).
    headers = {"Authorization": f"Bearer {server.keys[key]}"}
    checked, calls = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case: Any) -> None:
            response = case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS, timeout=60)
            calls.append(response.status_code)

        check()
        checked.append(operation.label)
    assert len(checked) >= 12, checked
    assert len(calls) >= 5 * len(checked) and max(calls) < 500  # examples really ran
    if key == "admin":
        assert 200 in calls
    else:
        assert 403 in calls  # the admin routes refused the reader


def test_the_schema_covers_the_api_and_leaves_out_the_destructive_operations(api_schema: Any) -> None:
    labels = {op.ok().label for op in api_schema.get_all_operations()}
    assert {"POST /v1/search", "POST /v1/ask", "POST /v1/chat/completions", "GET /v1/whoami"} <= labels
    assert not labels & {"POST /v1/documents", "DELETE /v1/documents/{doc_id}", "POST /v1/sync"}


def test_unauthenticated_requests_get_declared_errors_not_server_errors(api_schema: Any, server: Server) -> None:
    # Without a credential every protected operation answers 401 with the error schema (declared), never 5xx.
    for result in api_schema.get_all_operations():
        op = result.ok()
        if op.path in {"/healthz", "/readyz", "/metrics", "/openapi.json"}:
            continue
        with httpx2.Client(base_url=server.url, timeout=30) as client:
            path = op.path.replace("{doc_id}", "d").replace("{job_id}", "j").replace("{name}", "n")
            response = client.request(op.method.upper(), path, json={} if op.method.upper() == "POST" else None)
        assert response.status_code == 401, (op.label, response.status_code, response.text)
        S.ErrorOut.model_validate(response.json())


def test_ask_streams_tokens_then_the_answer_then_done_end_to_end(server: Server) -> None:
    with server.client("ops") as client, client.stream(
            "POST", "/v1/ask", json={"question": "How long are backups kept?"},
            headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(iter_sse(response.iter_lines()))
    names = [name for name, _ in events]
    assert names[-2:] == ["answer", "done"], names
    assert set(names[:-2]) <= {"token"}
    answer = S.AnswerOut.model_validate(events[-2][1])  # the same schema as the JSON response
    assert answer.citations and all("ops" in c.path for c in answer.citations)
    assert "ninety days" in answer.answer


def test_the_conformance_check_catches_a_response_that_breaks_its_schema(server: Server) -> None:
    # The same served document, but whoami's role declared an integer: the real response must now fail, so a
    # drift between the models and the responses would fail the property test above.
    import copy

    document = copy.deepcopy(httpx2.get(f"{server.url}/openapi.json", timeout=30).json())
    document["components"]["schemas"]["WhoAmI"]["properties"]["role"] = {"type": "integer"}
    broken = schemathesis.openapi.from_dict(document)
    case = broken["/v1/whoami"]["GET"].Case()
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {server.keys['ops']}"})
    assert response.status_code == 200
    with pytest.raises(BaseExceptionGroup) as failures:
        case.validate_response(response, checks=[response_schema_conformance])
    assert [type(e).__name__ for e in failures.value.exceptions] == ["JsonSchemaError"]
