"""``ragtune serve``: run the REST API with uvicorn (imported only here, so other commands start fast)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragtune.cli_common import ProjectOpt, err


def create_from_env() -> object:
    """The app for ``RAGTUNE_PROJECT_DIR`` (the factory uvicorn's workers call, each in its own process)."""
    from ragtune.project import Project
    from ragtune.security.egress import guard_from_settings
    from ragtune.server.app import create_app

    project = Project.open(None)
    guard_from_settings(project.settings)  # each worker process: egress only to the configured destinations
    return create_app(project)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default service.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default service.port, 8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes; each loads the model once.")] = 1,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="text, or json: one JSON object per log line with the request id (default "
                             "observability.log_format, text).")] = None,
    project: ProjectOpt = None,
) -> None:
    """Serve the REST API: ask (JSON or server-sent events), search, classify, whoami, /healthz, /readyz.

    Every /v1 route needs `Authorization: Bearer KEY` (an API key from `ragtune keys create`, or an OIDC JWT
    when service.oidc_issuer is set); the caller's user, groups and role come only from that credential.
    /readyz answers 503 until the embedder is loaded and the index is open. The OpenAPI document is at
    /openapi.json, the interactive one at /docs. Binds 127.0.0.1 unless told otherwise: put a TLS-terminating
    proxy in front of it before exposing it.

    Observability (docs/observability.md): GET /metrics is the Prometheus exposition (no credential, no user
    data); every response carries X-Request-ID (the caller's, else a new one); spans of every stage go over
    OTLP when observability.otlp_endpoint is set. Question and document text stay out of spans and logs.

    Deployment (docs/deployment.md): outbound connections go only to loopback, the generator, the OTLP and OIDC
    addresses and security.egress_allow (others are refused and logged; security.egress: off disables it); the
    generator's key may come from a file named by RAGTUNE_LLM_API_KEY_FILE.
    """
    import uvicorn

    from ragtune.config import load_settings

    if log_format is not None:
        if log_format not in ("text", "json"):
            err.print(f"--log-format must be text or json, not {escape(log_format)!r}")
            raise typer.Exit(2)
        os.environ["RAGTUNE_OBSERVABILITY__LOG_FORMAT"] = log_format  # the workers read it from their settings
    settings = load_settings(project)
    os.environ["RAGTUNE_PROJECT_DIR"] = str(Path(settings.project_dir).resolve())
    host = host or settings.service.host
    port = port or settings.service.port
    err.print(f"ragtune serving {settings.project_dir} on http://{host}:{port} ({workers} worker(s)); "
              "Ctrl-C stops it")
    uvicorn.run("ragtune.server.cli:create_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", timeout_graceful_shutdown=30)
