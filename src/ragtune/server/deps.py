"""What every route module of the server shares: the :class:`Service` (the project, readiness and the
credential dependency) and :class:`ApiError`.

A route module is a function ``router(service: Service) -> APIRouter`` that ``create_app`` includes; it gets
everything from ``service.project`` (the composition root) and names the action each route needs::

    def router(service: Service) -> APIRouter:
        r = APIRouter()

        @r.get("/v1/things")
        def things(identity: Annotated[Identity, Depends(service.caller("search"))]) -> ...:
            service.require_ready()
            ...
        return r
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations at runtime.

import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Header
from fastapi.responses import JSONResponse

from ragtune.audit.trail import Trail, audit_trail
from ragtune.project import Project
from ragtune.service.credentials import authenticate_async
from ragtune.service.identity import AuthError, Identity, allowed


class ApiError(Exception):
    """An error the API reports as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error body: ``{"error": {"code": ..., "message": ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class Service:
    """The project a server answers for, whether it is ready, and who is calling."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.ready = threading.Event()
        self.failure = ""

    def warm_up(self) -> None:
        """Load the model and open the index; readiness turns on, or records why it failed."""
        try:
            self.project.warm_up()
            self.ready.set()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, the server keeps answering /healthz
            self.failure = f"{type(exc).__name__}: {exc}"

    def require_ready(self) -> None:
        """503 ``not_ready`` until :meth:`warm_up` has finished."""
        if not self.ready.is_set():
            raise ApiError(503, "not_ready", self.failure or "the server is still loading the model and index; "
                                                             "retry in a few seconds")

    def caller(self, action: str) -> Callable[..., Awaitable[Identity]]:
        """A dependency: the verified identity of the request, allowed to perform ``action`` (else 401/403).
        Async, so checking an API key costs no thread hop (see :func:`authenticate_async`)."""
        project = self.project

        async def dependency(authorization: Annotated[str | None, Header()] = None) -> Identity:
            identity = await authenticate_async(authorization, project.key_store, project.oidc_verifier)
            if not allowed(identity.role, action):
                raise AuthError("forbidden", f"role {identity.role.value} may not {action}; ask an admin for a "
                                             "key with a role that may", 403)
            return identity
        return dependency


def audited(project: Project, route: str, identity: Identity, question: str) -> AbstractContextManager[Trail]:
    """The audit record of one request as ``identity`` (its principal and role), written when the block ends."""
    return audit_trail(project, route=route, principal=identity.principal, question=question,
                       role=identity.role.value)
