"""Every role against a route of each minimum role: forbidden (403, no data) exactly when the role is too low."""

from __future__ import annotations

import pytest

from .conftest import Server

ROUTES = [  # (method, path, body, minimum role)
    ("POST", "/v1/ask", {"question": "How long are backups kept?"}, "reader"),
    ("POST", "/v1/search", {"query": "backups"}, "reader"),
    ("GET", "/v1/documents", None, "reader"),
    ("POST", "/v1/sync", None, "editor"),
    ("GET", "/v1/registry/models", None, "admin"),
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
    else:
        assert r.status_code < 400, r.text
