"""The documents page: what the user may read, and for editors and admins the upload form and "Sync now".

Both start the same background jobs as ``POST /v1/documents`` and ``POST /v1/sync``, on the same queue (one
writer per project, :func:`ragtune.server.documents.jobs_of`): each uploaded file is saved in its own upload
folder and ingested with the form's ACL (empty: the uploader's own groups, never public). The job's progress is
a fragment that htmx polls every second until it ends with ``p.job-done`` or ``p.job-failed`` (each failed file
and its reason).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from ragtune.core import Acl, Principal
from ragtune.errors import RagtuneError
from ragtune.ingest.parsers import PARSERS
from ragtune.project import Project
from ragtune.server import documents as D
from ragtune.server.deps import ApiError, Service
from ragtune.server.jobs import Job, JobProgress, Work
from ragtune.server.ui.pages import FormError, respond, ui_errors
from ragtune.server.ui.render import page
from ragtune.server.ui.session import UiContext, UiError, context, posted
from ragtune.service.identity import Action, Role

MAX_FILES = 20  # files per upload form


def default_acl(principal: Principal) -> str:
    """The ACL of an upload whose form left it empty: the uploader's own groups, else the uploader alone."""
    if principal.groups:
        return ",".join(f"group:{g}" for g in sorted(principal.groups))
    return f"user:{principal.user}"


def ingest_uploads(project: Project, uploads: list[tuple[str, Path]], acl: Acl) -> Work:
    """One job for a form's files, each in its own upload folder, ingested in turn like a REST upload; a file
    that cannot be ingested at all (an error rather than a parse failure) is one more per-file failure."""
    def work(job: Job, progress: JobProgress) -> None:
        for i, (name, folder) in enumerate(uploads):
            try:
                D.ingest_upload(project, folder, acl)(job, progress)
            except RagtuneError as exc:
                job.failures.append({"path": str(folder / name), "error": str(exc)})
            except BaseException:
                for _, rest in uploads[i + 1:]:  # never started: nothing of them is kept
                    shutil.rmtree(rest, ignore_errors=True)
                raise
    return work


def job_view(project: Project, job: Job) -> dict[str, Any]:
    """What the job fragment shows; an uploaded file's failure is named by its file name, not its server path."""
    uploads = D.uploads_dir(project).resolve()

    def shown(path: str) -> str:
        p = Path(path)
        return p.name if p.resolve().is_relative_to(uploads) else path

    def reason(path: str, error: str) -> str:  # the parsers' messages start with the file they are about
        for prefix in (f"{path}: ", f"{Path(path).name}: "):
            error = error.removeprefix(prefix)
        return error

    failed = job.status == "failed" or bool(job.failures)
    return {"id": job.id, "kind": job.kind, "status": job.status, "finished": job.finished is not None,
            "failed": failed, "files_total": job.files_total, "files_done": job.files_done,
            "chunks_total": job.chunks_total, "chunks_embedded": job.chunks_embedded, "error": job.error,
            "report": {k.replace("_", " "): v for k, v in job.report.items()},
            "failures": [{"path": shown(f["path"]), "error": reason(f["path"], f["error"])} for f in job.failures]}


def router(service: Service) -> APIRouter:
    """``/ui/documents`` (list), ``/ui/documents/upload``, ``/ui/documents/sync`` and ``/ui/jobs/{id}``."""
    r = APIRouter(include_in_schema=False)
    project, jobs = service.project, D.jobs_of(service)
    max_bytes = int(project.settings.service.max_upload_mb * 1e6)

    def documents_page(request: Request, ctx: UiContext, job: Job | None = None, error: str = "",
                       status: int = 200, fragment: bool = True) -> Response:
        """The page (or, for htmx, the job fragment) with the documents ``ctx`` may read."""
        with ui_errors():
            service.require_ready()
        principal = ctx.identity.principal
        docs = [{"doc_id": d.doc_id, "title": d.title, "path": d.source_path, "acl": ", ".join(d.acl),
                 "chunks": d.chunks, "modified": d.mtime, "synced": d.synced_at} for d in project.sources(principal)]
        values: dict[str, Any] = {"title": "Documents", "docs": docs, "show_acl": ctx.identity.role >= Role.EDITOR,
                  "can_upload": ctx.can(Action.DOCUMENTS), "can_sync": ctx.can(Action.SYNC),
                  "default_acl": default_acl(principal), "formats": sorted(PARSERS),
                  "max_mb": f"{project.settings.service.max_upload_mb:g}", "max_files": MAX_FILES,
                  "job": job_view(project, job) if job else None, "error": error, "job_error": error}
        if not fragment:
            return page("documents.html", ctx, status=status, **values)
        return respond(request, ctx, "documents.html", "job.html", status, **values)

    @r.get("/ui/documents")
    def documents(request: Request) -> Response:
        return documents_page(request, context(service, request), fragment=False)

    async def save_all(files: list[UploadFile]) -> list[tuple[str, Path]]:
        chosen = [f for f in files if f.filename]
        if not chosen:
            raise ApiError(422, "no_files", "Files: choose one or more files to upload")
        if len(chosen) > MAX_FILES:
            raise ApiError(422, "too_many_files", f"Files: {len(chosen)} files chosen; upload at most {MAX_FILES} "
                                                  "at a time")
        names = [D.safe_name(f.filename) for f in chosen]
        for name in names:
            D.check_format(name)
        saved: list[tuple[str, Path]] = []
        try:
            for file, name in zip(chosen, names, strict=True):
                folder = D.uploads_dir(project) / uuid.uuid4().hex
                await D.save_upload(file, folder, name, max_bytes)
                saved.append((name, folder))
        except BaseException:
            for _, folder in saved:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return saved

    @r.post("/ui/documents/upload")
    async def upload(request: Request, files: Annotated[list[UploadFile] | None, File()] = None,
                     acl: Annotated[str, Form(max_length=2000)] = "",
                     csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf, Action.DOCUMENTS)
        try:
            with ui_errors():
                service.require_ready()
                parsed = D.parse_upload_acl(acl.strip() or default_acl(ctx.identity.principal))
                saved = await save_all(files or [])
                job = jobs.submit("upload", ctx.identity.principal, ingest_uploads(project, saved, parsed))
        except FormError as exc:
            return documents_page(request, ctx, error=exc.message, status=exc.status)
        return documents_page(request, ctx, job=job)

    @r.post("/ui/documents/sync")
    def sync(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        ctx = posted(service, request, csrf, Action.SYNC)
        try:
            with ui_errors():
                service.require_ready()
                job = jobs.submit("sync", ctx.identity.principal, D.sync_work(project))
        except FormError as exc:
            return documents_page(request, ctx, error=exc.message, status=exc.status)
        return documents_page(request, ctx, job=job)

    @r.get("/ui/jobs/{job_id}")
    def job(request: Request, job_id: str) -> Response:
        ctx = context(service, request)
        ctx.require(Action.DOCUMENTS)
        found = jobs.get(job_id)
        if found is None or (found.owner != ctx.identity.principal and ctx.identity.role < Role.ADMIN):
            raise UiError(404, "Not found", "no such job of yours; start one from the documents page")
        return respond(request, ctx, "job_page.html", "job.html", title="Job", job=job_view(project, found),
                       job_error="")

    return r
