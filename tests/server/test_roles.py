"""Every role against every route: forbidden (403, no data) exactly when the role is below the route's."""

from __future__ import annotations

import pytest

from .conftest import Server

ROUTES = [  # (method, path, body, minimum role)
    ("POST", "/v1/ask", {"question": "How long are backups kept?"}, "reader"),
    ("POST", "/v1/search", {"query": "backups"}, "reader"),
    ("GET", "/v1/documents", None, "reader"),
    ("POST", "/v1/sync", None, "editor"),
    ("GET", "/v1/registry/models", None, "admin"),
    ("POST", "/v1/classify", {"model": "no-such-model", "texts": ["x"]}, "reader"),
    ("GET", "/v1/whoami", None, "reader"),
    ("GET", "/v1/models", None, "reader"),
    ("POST", "/v1/chat/completions", {"model": "ragtune", "messages": [{"role": "user", "content": "Backups?"}]},
     "reader"),
    ("POST", "/v1/pipelines/no-such-pipeline/run", {"text": "x"}, "reader"),
    ("GET", "/v1/documents/no-such-doc", None, "reader"),
    ("DELETE", "/v1/documents/no-such-doc", None, "editor"),
    ("POST", "/v1/documents", None, "editor"),
    ("GET", "/v1/jobs/no-such-job", None, "editor"),
    ("GET", "/v1/registry/models/no-such-model", None, "admin"),
]
RANK = {"reader": 0, "editor": 1, "admin": 2}
KEYS = {"ops": "reader", "editor": "editor", "admin": "admin"}


@pytest.mark.parametrize(("method", "path", "body", "minimum"), ROUTES)
@pytest.mark.parametrize("key", list(KEYS))
def test_a_route_is_forbidden_exactly_below_its_role(server: Server, key: str, method: str, path: str,
                                                    body: dict[str, object] | None, minimum: str) -> None:
    with server.client(key) as c:
        r = c.request(method, path, json=body)
    if RANK[KEYS[key]] < RANK[minimum]:
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        assert "ninety" not in r.text
    else:  # allowed: whatever the route then says (a 404 for a name that does not exist), never 401/403
        assert r.status_code not in (401, 403), r.text
