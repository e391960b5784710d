"""The MCP server (Model Context Protocol, streamable HTTP) at ``/mcp``: ``search``, ``ask`` and ``classify`` as tools.

Agent frameworks connect with an MCP client and the same credential as the REST API (``Authorization: Bearer
<API key or OIDC token>``). Every HTTP request to ``/mcp`` is authenticated before the MCP SDK sees it (401
``{"error": {"code", "message"}}`` otherwise), and each tool call authenticates the call's own header again
and checks the tool's action against the caller's role, so a tool answers only from what the caller may read.
The transport is stateless (JSON responses, no session kept), so it works the same under ``--workers N``.
"""

# No `from __future__ import annotations`: the MCP SDK reads the tools' annotations (the Context parameter).

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ragtune.errors import RagtuneError
from ragtune.server.deps import ApiError, Service, audited, error_response
from ragtune.server.schemas import MAX_QUESTION_CHARS, AnswerOut, HitOut
from ragtune.service.credentials import authenticate
from ragtune.service.identity import AuthError, Identity, allowed

MCP_PATH = "/mcp"
MAX_TEXTS = 256


class _RequireCredential:
    """ASGI wrapper: the MCP app only for requests whose ``Authorization`` header proves an identity."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import anyio.to_thread

        if scope["type"] == "http":
            header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            p = self.service.project
            try:
                await anyio.to_thread.run_sync(authenticate, header, p.key_store, p.oidc_verifier)
            except AuthError as exc:
                response = error_response(exc.status, exc.code, exc.message,
                                          {"WWW-Authenticate": exc.www_authenticate})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def tool_identity(service: Service, headers: Mapping[str, str] | None, action: str) -> Identity:
    """The identity of one tool call from its request's ``Authorization`` header, allowed to do ``action``."""
    p = service.project
    identity = authenticate((headers or {}).get("authorization"), p.key_store, p.oidc_verifier)
    if not allowed(identity.role, action):
        raise AuthError("forbidden", f"role {identity.role.value} may not {action}; ask an admin for a key with a "
                                     "role that may", 403)
    service.require_ready()
    return identity


def router(service: Service) -> APIRouter:
    """``/mcp``: the MCP server over ``service.project`` (tools ``search``, ``ask``, ``classify``)."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.transport_security import TransportSecuritySettings

    from ragtune import __version__

    project = service.project
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    mcp = MCPServer("ragtune", version=__version__, instructions=(
        "Permission-aware knowledge: search and ask answer only from documents the caller may read, with "
        "numbered citations; ask abstains when nothing readable supports an answer."))
    root.setLevel(level)  # MCPServer calls logging.basicConfig: the server's own log setup must stay as it was
    root.handlers[:] = handlers

    def identity_or_error(ctx: Context, action: str) -> Identity:
        try:
            return tool_identity(service, ctx.headers, action)
        except AuthError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from exc
        except ApiError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from exc

    def checked(text: str, what: str) -> str:
        if not text.strip() or len(text) > MAX_QUESTION_CHARS:
            raise ToolError(f"{what}: give 1 to {MAX_QUESTION_CHARS} characters")
        return text

    @mcp.tool()
    def search(query: str, ctx: Context, top_k: int = 5) -> dict[str, Any]:
        """Hybrid search over the chunks the caller may read, best first: path, section, page, text, score."""
        identity = identity_or_error(ctx, "search")
        if not 1 <= top_k <= 100:
            raise ToolError("top_k: give 1 to 100")
        try:
            r = project.search(checked(query, "query"), identity.principal, top_k=top_k)
        except RagtuneError as exc:
            raise ToolError(str(exc)) from exc
        return {"query": query, "hits": [HitOut.from_hit(h).model_dump() for h in r.hits]}

    @mcp.tool()
    def ask(question: str, ctx: Context) -> dict[str, Any]:
        """Answer from what the caller may read, with numbered [n] citations (path, section, page, snippet), or
        abstain (``abstained: true``) when nothing readable supports an answer."""
        identity = identity_or_error(ctx, "ask")
        checked(question, "question")
        try:
            with audited(project, "mcp:ask", identity, question) as trail:
                answer = project.ask(question, identity.principal)
                trail.answered(answer)
        except RagtuneError as exc:
            raise ToolError(str(exc)) from exc
        return AnswerOut.from_answer(answer).model_dump()

    @mcp.tool()
    def classify(model: str, texts: list[str], ctx: Context) -> dict[str, Any]:
        """Label texts with a registered classifier (its promoted or latest version); ``needs_review`` below the
        model's threshold."""
        identity_or_error(ctx, "classify")
        if not 1 <= len(texts) <= MAX_TEXTS:
            raise ToolError(f"texts: give 1 to {MAX_TEXTS} texts")
        try:
            version = project.registry.resolve(model, None)
            results = project.classifier(model, version).predict_or_review(texts)
        except RagtuneError as exc:
            raise ToolError(str(exc)) from exc
        return {"model": model, "version": version, "labels": [label for label, _ in results],
                "scores": [round(p, 4) for _, p in results]}

    # Bearer credentials, not cookies, guard /mcp, so the SDK's Host/Origin allow-list (DNS rebinding protection,
    # localhost only by default) would only break deployments behind a real host name.
    starlette_app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    mcp_asgi = next(r.endpoint for r in starlette_app.routes if isinstance(r, Route) and r.path == MCP_PATH)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with mcp.session_manager.run():
            yield

    r = APIRouter(lifespan=lifespan)
    r.routes.append(Route(MCP_PATH, endpoint=_RequireCredential(mcp_asgi, service), methods=["GET", "POST", "DELETE"],
                          include_in_schema=False))
    return r
