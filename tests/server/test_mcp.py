"""The MCP server end to end with the official ``mcp`` SDK's streamable HTTP client against the real test server.

The tools answer under the caller's own credential: the ops key's ``ask`` cites the ops document, the hr key's
abstains, ``search`` returns only readable chunks, and a missing, bad or revoked key gets no data at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ragtune.server.deps import Service
from ragtune.server.mcp_server import router, tool_identity
from ragtune.service.identity import AuthError

from .conftest import Server

QUESTION = "How long are backups kept?"


def _client(server: Server, key: str | None, mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {server.keys.get(key, key)}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    return Client(streamable_http_client(f"{server.url}/mcp", http_client=http), mode=mode)


def _call(server: Server, key: str | None, tool: str, args: dict[str, Any], mode: str = "auto") -> Any:
    async def go() -> Any:
        async with _client(server, key, mode) as c:
            return await c.call_tool(tool, args)
    return asyncio.run(go())


def _result(r: Any) -> dict[str, Any]:
    assert not r.is_error, r.content
    return dict(r.structured_content) if r.structured_content else json.loads(r.content[0].text)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_tools_are_listed_with_their_parameters(server: Server, mode: str) -> None:
    async def go() -> Any:
        async with _client(server, "hr", mode) as c:
            return await c.list_tools()
    tools = {t.name: t for t in asyncio.run(go()).tools}
    assert set(tools) == {"search", "ask", "classify"}
    assert set(tools["ask"].input_schema["properties"]) == {"question"}
    assert set(tools["search"].input_schema["properties"]) == {"query", "top_k"}
    assert set(tools["classify"].input_schema["properties"]) == {"model", "texts"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_ask_cites_what_the_key_may_read_and_abstains_otherwise(server: Server, mode: str) -> None:
    ops = _result(_call(server, "ops", "ask", {"question": QUESTION}, mode))
    assert not ops["abstained"] and "ninety days" in ops["answer"]
    assert [c["path"].endswith("backups.md") for c in ops["citations"]] == [True]
    hr = _call(server, "hr", "ask", {"question": QUESTION}, mode)
    assert _result(hr)["abstained"] and _result(hr)["citations"] == [] and "ninety" not in str(hr)


def test_search_returns_only_readable_chunks(server: Server) -> None:
    for key, readable in (("hr", "leave.md"), ("ops", "backups.md")):
        hits = _result(_call(server, key, "search", {"query": "leave backups weeks days", "top_k": 10}))["hits"]
        assert hits and {h["path"].rsplit("/", 1)[-1] for h in hits} == {readable}


def test_classify_with_an_unknown_model_is_a_tool_error_naming_it(server: Server) -> None:
    r = _call(server, "ops", "classify", {"model": "no-such-model", "texts": ["hello"]})
    assert r.is_error and "no-such-model" in r.content[0].text


@pytest.mark.parametrize(("key", "code"), [(None, "missing_credentials"), ("rtk_bad", "malformed_credentials"),
                                           ("revoked", "revoked_key")])
def test_no_valid_key_gets_a_401_and_no_data(server: Server, key: str | None, code: str) -> None:
    with pytest.raises(BaseExceptionGroup) as info:  # the SDK surfaces the HTTP error as an MCPError
        _call(server, key, "ask", {"question": QUESTION})
    assert info.group_contains(MCPError) and "ninety" not in repr(info.value)
    headers = {"Authorization": f"Bearer {server.keys.get(key, key)}"} if key else {}
    r = httpx2.post(f"{server.url}/mcp", headers={**headers, "Accept": "application/json, text/event-stream"},
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == code
    assert "Bearer" in r.headers["www-authenticate"] and "ninety" not in r.text


def test_mcp_asks_are_audited_with_the_callers_role(server: Server) -> None:
    from ragtune.audit.export import read_records
    from ragtune.audit.log import log_path

    _result(_call(server, "editor", "ask", {"question": QUESTION}))
    last = list(read_records(log_path(server.project.settings)))[-1]
    assert (last["route"], last["principal"], last["role"], last["outcome"]) == ("mcp:ask", "eve", "editor",
                                                                                 "answered")


def test_each_tool_call_checks_its_own_credential_and_role(server: Server) -> None:
    service = Service(server.project)
    with pytest.raises(AuthError) as missing:
        tool_identity(service, {}, "ask")
    assert missing.value.code == "missing_credentials"
    with pytest.raises(AuthError) as forbidden:
        tool_identity(service, {"authorization": f"Bearer {server.keys['ops']}"}, "keys")
    assert (forbidden.value.code, forbidden.value.status) == ("forbidden", 403)
    service.ready.set()
    identity = tool_identity(service, {"authorization": f"Bearer {server.keys['ops']}"}, "ask")
    assert (identity.principal.user, identity.role.value) == ("otto", "reader")


def test_building_the_mcp_server_leaves_the_process_logging_alone(server: Server) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.handlers[:] = []  # as in `ragtune serve` before its own log setup: the SDK would basicConfig here
    try:
        root.setLevel(logging.WARNING)
        router(Service(server.project))
        assert root.handlers == [] and root.level == logging.WARNING
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
