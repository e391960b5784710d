"""``ragtune serve``'s application: a versioned REST API over one :class:`~ragtune.project.Project`.

The server adds no wiring of its own: everything it answers with comes from the project (store, retriever,
answerer, registry, key store, OIDC verifier). Each route names the :mod:`ragtune.service.identity` action it
needs; the caller's identity comes only from the ``Authorization`` header (an API key or an OIDC bearer JWT),
never from the request body, and every error is ``{"error": {"code", "message"}}`` with a stable code.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which name local dependencies.

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from ragtune import __version__
from ragtune.errors import EmptyCorpusError, ModelNotFoundError, RagtuneError
from ragtune.project import Project
from ragtune.server import documents, limits, mcp_server, metrics_routes, openai_compat, operations, ui
from ragtune.server import schemas as S
from ragtune.server.deps import ApiError, Service, audited
from ragtune.server.deps import error_response as _error
from ragtune.server.streaming import run_streamed, sse
from ragtune.service.identity import AuthError, Identity

log = logging.getLogger("ragtune.server")
MAX_BODY_BYTES = 1_000_000
UPLOAD_PATHS = ("/v1/documents", "/ui/documents/upload")  # bodies up to the upload limit (service.max_upload_mb)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": S.ErrorOut} for code in (400, 401, 403, 404, 413, 422, 429, 500, 503, 504)
}


class BodyLimit:
    """Pure ASGI middleware: 413 before the route for a declared body over 1 MB (uploads: ``upload_bytes``, the
    upload limit plus room for the multipart envelope). Pure ASGI, as it runs on every request."""

    def __init__(self, app: Any, upload_bytes: int) -> None:
        self.app, self.upload_bytes = app, upload_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            upload = scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS
            limit = self.upload_bytes if upload else MAX_BODY_BYTES
            if length is not None and (not length.isdigit() or int(length) > limit):
                code = "upload_too_large" if upload else "body_too_large"
                await _error(413, code, f"the request body is over {limit} bytes; send less")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(project: Project, *, warm_up: bool = True) -> FastAPI:
    """The API over ``project``; with ``warm_up`` the model loads in the background and ``/readyz`` turns 200."""
    service = Service(project)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            threading.Thread(target=service.warm_up, name="ragtune-warm-up", daemon=True).start()
        else:
            service.ready.set()
        yield

    app = FastAPI(title="ragtune", version=__version__, lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="Permission-aware retrieval, answers with verified citations, and fine-tuned "
                              "classifiers. Authenticate with `Authorization: Bearer <API key or OIDC JWT>`.")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": exc.www_authenticate} if exc.status in (401, 403) else None
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RagtuneError)
    async def _ragtune_error(request: Request, exc: RagtuneError) -> JSONResponse:
        if isinstance(exc, ModelNotFoundError):
            return _error(404, "model_not_found", str(exc))
        if isinstance(exc, EmptyCorpusError):
            return _error(503, "empty_index", str(exc))
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "the request failed on the server; the server log has the details")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "extra_forbidden" and where.split(".")[-1] in {"user", "groups", "principal", "role"}:
            return _error(400, "principal_in_request", f"{where}: the caller's identity comes only from the "
                                                       "Authorization header; remove the field")
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return _error(422, "invalid_request", f"{where}: {message}" if where else message)

    app.add_middleware(BodyLimit, upload_bytes=int(project.settings.service.max_upload_mb * 1e6) + 64_000)

    caller, ready = service.caller, service.require_ready

    @app.get("/healthz", response_model=S.Health, tags=["operations"])
    def healthz() -> S.Health:
        """Liveness: the process answers."""
        return S.Health(status="ok")

    @app.get("/readyz", response_model=S.Health, tags=["operations"],
             responses={503: {"model": S.ErrorOut}})
    def readyz() -> S.Health:
        """Readiness: the embedder is loaded and the index is open."""
        ready()
        return S.Health(status="ok")

    @app.get("/v1/whoami", response_model=S.WhoAmI, tags=["identity"])
    def whoami(identity: Annotated[Identity, Depends(caller("ask"))]) -> S.WhoAmI:
        """The user, groups and role the credential resolves to."""
        p = identity.principal
        return S.WhoAmI(user=p.user, groups=sorted(p.groups), role=identity.role.value, credential=identity.kind)

    @app.post("/v1/search", response_model=S.SearchOut, tags=["retrieval"])
    def search(body: S.SearchRequest, identity: Annotated[Identity, Depends(caller("search"))]) -> S.SearchOut:
        """Hybrid search over the chunks the caller may read, best first."""
        ready()
        r = project.search(body.query, identity.principal, top_k=body.top_k)
        return S.SearchOut(query=body.query, hits=[S.HitOut.from_hit(h) for h in r.hits],
                           latency_ms={k: round(v, 2) for k, v in r.latency_ms.items()})

    @app.post("/v1/ask", response_model=S.AnswerOut, tags=["answers"],
              responses={200: {"content": {"text/event-stream": {}}}})
    def ask(body: S.AskRequest, identity: Annotated[Identity, Depends(caller("ask"))],
            accept: Annotated[str, Header()] = "application/json") -> Any:
        """Answer from what the caller may read, with numbered citations, or abstain.

        With ``Accept: text/event-stream`` the answer streams as server-sent events: ``token`` events while a
        generator writes, then one ``answer`` event (the JSON body below), then ``done``.
        """
        ready()
        if "text/event-stream" in accept:
            return StreamingResponse(_stream_answer(project, body.question, identity),
                                     media_type="text/event-stream")
        with audited(project, "api:ask", identity, body.question) as trail:
            answer = project.ask(body.question, identity.principal)
            trail.answered(answer)
        return S.AnswerOut.from_answer(answer)

    @app.post("/v1/classify", response_model=S.ClassifyOut, tags=["classifiers"])
    def classify(body: S.ClassifyRequest, identity: Annotated[Identity, Depends(caller("classify"))]
                 ) -> S.ClassifyOut:
        """Label texts with a registered classifier."""
        version = project.registry.resolve(body.model, body.version)
        clf = project.classifier(body.model, version)
        results = clf.predict_or_review(body.texts)  # below the model's threshold: "needs_review"
        return S.ClassifyOut(model=body.model, version=version, labels=[label for label, _ in results],
                             scores=[round(p, 4) for _, p in results])

    # Route modules (see ragtune.server.deps): one include per module.
    app.include_router(documents.router(service))
    app.include_router(operations.router(service))
    limits.install(app, service)  # rate limit and timeout (middleware)
    app.include_router(openai_compat.router(service))
    app.include_router(mcp_server.router(service))
    app.include_router(metrics_routes.router(service))
    metrics_routes.install(app, service)
    ui.install(app, service)
    return app


async def _stream_answer(project: Project, question: str, identity: Identity) -> AsyncIterator[str]:
    """Token events while the answer is generated (in a worker thread), then the answer, then done."""

    def work(on_token: Callable[[str], None]) -> dict[str, Any]:
        with audited(project, "api:ask", identity, question) as trail:
            answer = project.ask(question, identity.principal, on_token=on_token)
            trail.answered(answer)
        return S.AnswerOut.from_answer(answer).model_dump()

    async for event, data in run_streamed(work):
        yield sse({"result": "answer"}.get(event, event), data if event != "token" else {"text": data})
    yield sse("done", {})


def iter_sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs from server-sent event lines: what a client of ``/v1/ask`` reads."""
    event, data = "message", ""
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line.strip() and data:
            yield event, json.loads(data)
            event, data = "message", ""
