"""Documents over HTTP: upload a file to ingest, list, show, delete, sync, and the jobs those writes run as.

An upload is saved as ``<project>/uploads/<upload id>/<file name>``, and that folder is ingested as its own
root with the ACL of the form field ``acl`` (``public`` or ``group:NAME,user:NAME``, as ``ragtune ingest
--acl``; required: an upload without one is refused, never readable by a default). The ingest runs as a
background job (:mod:`ragtune.server.jobs`); a file that fails to parse is a per-file failure in the job and
its upload is removed again, so the index is unchanged. Listing and showing documents return only what the
caller may read; a document it may not read is a 404 exactly like one that does not exist.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import re
import shutil
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, UploadFile
from pydantic import BaseModel

from ragtune.core import Acl, Principal
from ragtune.errors import AclError
from ragtune.ingest.acl import parse_acl_option
from ragtune.ingest.parsers import PARSERS
from ragtune.ingest.roots import source_prefix_matches
from ragtune.project import Project
from ragtune.server.deps import ApiError, Service
from ragtune.server.jobs import Job, JobProgress, JobQueue, Work, add_report
from ragtune.server.upload_zip import unpack_zip
from ragtune.service.identity import Identity, Role
from ragtune.store.base import DocRecord

UPLOADS = "uploads"
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_READ_CHUNK = 1 << 20
_JOBS: "weakref.WeakKeyDictionary[Service, JobQueue]" = weakref.WeakKeyDictionary()


class DocumentOut(BaseModel):
    """One ingested document the caller may read (its ACL is shown to editors and admins only)."""

    doc_id: str
    path: str
    title: str
    chunks: int
    modified: float
    synced_at: float
    uploaded: bool
    acl: list[str] | None = None


class DocumentsOut(BaseModel):
    """The documents the caller may read."""

    documents: list[DocumentOut]


class JobOut(BaseModel):
    """A background write: ``queued``, ``running``, ``done`` or ``failed``, its progress and per-file failures."""

    id: str
    kind: str
    status: str
    created: float
    started: float | None
    finished: float | None
    files_total: int
    files_done: int
    chunks_total: int
    chunks_embedded: int
    failures: list[dict[str, str]]
    report: dict[str, Any]
    error: str

    @classmethod
    def from_job(cls, job: Job) -> "JobOut":
        """The job as the API shows it."""
        return cls(id=job.id, kind=job.kind, status=job.status, created=job.created, started=job.started,
                   finished=job.finished, files_total=job.files_total, files_done=job.files_done,
                   chunks_total=job.chunks_total, chunks_embedded=job.chunks_embedded,
                   failures=list(job.failures), report=dict(job.report), error=job.error)


def uploads_dir(project: Project) -> Path:
    """The server-managed folder uploads are saved in."""
    return project.settings.project_dir / UPLOADS


def safe_name(filename: str | None) -> str:
    """The file name an upload is saved under: no folders, no leading dots, only plain characters."""
    name = _UNSAFE.sub("_", Path(filename or "").name).strip().lstrip(".")
    if not name:
        raise ApiError(422, "invalid_request", "file: the upload has no file name; send it as a multipart "
                                               "file with a name such as policy.md")
    return name[-200:]


def check_format(name: str) -> None:
    """415 unless a ragtune parser reads this extension, or it is a zip of such files."""
    suffix = Path(name).suffix.lower()
    if suffix not in PARSERS and suffix != ".zip":
        raise ApiError(415, "unsupported_format", f"{name}: unsupported format '{suffix or '(no extension)'}'; "
                                                  f"supported: {', '.join(sorted(PARSERS))}, or a .zip of them")


def parse_upload_acl(spec: str | None) -> Acl:
    """The upload's ACL from the form field ``acl``; an upload without one is refused (fail closed)."""
    if spec is None or not spec.strip():
        raise ApiError(422, "acl_required", "acl: say who may read the document, e.g. acl=group:ops,user:ann "
                                            "or acl=public; an upload without an ACL is not ingested")
    try:
        return parse_acl_option(spec)
    except AclError as exc:
        raise ApiError(422, "invalid_acl", str(exc).replace("--acl", "acl")) from exc


async def save_upload(file: UploadFile, folder: Path, name: str, max_bytes: int) -> Path:
    """Write the upload to ``folder/name`` (a ``.zip`` is unpacked there: :func:`upload_zip.unpack_zip`); 413
    past ``max_bytes``, 422 when empty (nothing is kept then)."""
    folder.mkdir(parents=True, exist_ok=False)
    target, size = folder / name, 0
    try:
        with target.open("wb") as out:
            while chunk := await file.read(_READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, "upload_too_large", f"{name} is over the upload limit of "
                                                            f"{max_bytes / 1e6:g} MB (service.max_upload_mb)")
                out.write(chunk)
        if size == 0:
            raise ApiError(422, "empty_upload", f"{name} is empty; upload a file with content")
        if target.suffix.lower() == ".zip":
            unpack_zip(target, max_bytes)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return target


def _is_uploaded(project: Project, doc: DocRecord) -> bool:
    return source_prefix_matches(doc.source_path, uploads_dir(project).resolve())


def _readable(project: Project, principal: Principal, doc_id: str) -> DocRecord:
    """The document if the caller may read it; else 404, the same as for one that does not exist."""
    for doc in project.sources(principal):
        if doc.doc_id == doc_id:
            return doc
    raise ApiError(404, "document_not_found", f"no document {doc_id!r} that you may read; GET /v1/documents "
                                              "lists yours")


def _doc_out(project: Project, doc: DocRecord, identity: Identity) -> DocumentOut:
    return DocumentOut(doc_id=doc.doc_id, path=doc.source_path, title=doc.title, chunks=doc.chunks,
                       modified=doc.mtime, synced_at=doc.synced_at, uploaded=_is_uploaded(project, doc),
                       acl=list(doc.acl) if identity.role >= Role.EDITOR else None)


def ingest_upload(project: Project, folder: Path, acl: Acl) -> Work:
    """The job work that ingests one saved upload folder with ``acl`` (a file that fails is a per-file failure
    and its folder is removed again); shared by ``POST /v1/documents`` and the web UI's upload form."""
    def work(job: Job, progress: JobProgress) -> None:
        try:
            report = project.ingest(folder, acl, progress)
        except BaseException:
            _discard(project, folder)
            raise
        add_report(job, report)
        if not (report.ingested or report.updated or report.unchanged):  # the file failed: keep nothing
            _discard(project, folder)
    return work


def sync_work(project: Project) -> Work:
    """The job work of a full sync (every ingested folder); shared by ``POST /v1/sync`` and the web UI."""
    def work(job: Job, progress: JobProgress) -> None:
        for _, report in project.sync(progress):
            add_report(job, report)
    return work


def jobs_of(service: Service) -> JobQueue:
    """The one job queue of ``service``'s project (made on first use), shared by the REST API and the web UI, so
    there is one writer per project."""
    if service not in _JOBS:
        _JOBS[service] = JobQueue()
    return _JOBS[service]


def _discard(project: Project, folder: Path) -> None:
    """Forget an upload's root (if it was recorded) and delete its folder."""
    if folder.resolve() in project.roots():
        project.remove_root(folder)
    shutil.rmtree(folder, ignore_errors=True)


def router(service: Service) -> APIRouter:
    """``/v1/documents``, ``/v1/sync`` and ``/v1/jobs/{id}``, with one job worker for the project."""
    project, jobs = service.project, jobs_of(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        yield
        jobs.stop()  # the running job finishes its batch, then stops (ragtune.server.jobs)

    r = APIRouter(lifespan=lifespan, tags=["documents"])
    max_bytes = int(project.settings.service.max_upload_mb * 1e6)

    @r.post("/v1/documents", status_code=202, response_model=JobOut)
    async def upload(identity: Annotated[Identity, Depends(service.caller("documents"))],
                     file: Annotated[UploadFile, File(description="The document (md, txt, html, pdf, docx, csv, "
                                                                  "jsonl).")],
                     acl: Annotated[str | None, Form(description="Who may read it: public, or group:NAME,"
                                                                 "user:NAME (required).")] = None) -> JobOut:
        """Upload one document to ingest; returns the job (``GET /v1/jobs/{id}``) that ingests it."""
        service.require_ready()
        parsed_acl = parse_upload_acl(acl)
        name = safe_name(file.filename)
        check_format(name)
        folder = uploads_dir(project) / uuid.uuid4().hex
        await save_upload(file, folder, name, max_bytes)
        return JobOut.from_job(jobs.submit("upload", identity.principal,
                                           ingest_upload(project, folder, parsed_acl)))

    @r.get("/v1/documents", response_model=DocumentsOut)
    def documents(identity: Annotated[Identity, Depends(service.caller("search"))]) -> DocumentsOut:
        """The documents the caller may read."""
        service.require_ready()
        return DocumentsOut(documents=[_doc_out(project, d, identity) for d in project.sources(identity.principal)])

    @r.get("/v1/documents/{doc_id}", response_model=DocumentOut)
    def document(doc_id: str, identity: Annotated[Identity, Depends(service.caller("search"))]) -> DocumentOut:
        """One document the caller may read (404 otherwise, whether or not it exists)."""
        service.require_ready()
        return _doc_out(project, _readable(project, identity.principal, doc_id), identity)

    @r.delete("/v1/documents/{doc_id}", status_code=202, response_model=JobOut)
    def delete(doc_id: str, identity: Annotated[Identity, Depends(service.caller("documents"))]) -> JobOut:
        """Delete an uploaded document (and its file); returns the job that removes it from the index."""
        service.require_ready()
        doc = _readable(project, identity.principal, doc_id)
        path, root = Path(doc.source_path), uploads_dir(project).resolve()
        if not _is_uploaded(project, doc) or path.parent == root:
            raise ApiError(409, "not_uploaded", "only documents uploaded over the API can be deleted here; remove "
                                                "the file from its folder, then POST /v1/sync")
        upload_root = root / path.relative_to(root).parts[0]  # uploads/<upload id>/: the upload's own root

        def work(job: Job, progress: JobProgress) -> None:
            if path.parent != upload_root:  # one member of a zip: that file only, then the upload if it is empty
                path.unlink(missing_ok=True)
                project.remove_sources(path)
            if path.parent == upload_root or not any(p.is_file() for p in upload_root.rglob("*")):
                _discard(project, upload_root)
            job.report["deleted"] = 1
        return JobOut.from_job(jobs.submit("delete", identity.principal, work))

    @r.post("/v1/sync", status_code=202, response_model=JobOut)
    def sync(identity: Annotated[Identity, Depends(service.caller("sync"))]) -> JobOut:
        """Re-sync every ingested folder (new, changed and deleted files) as a background job."""
        service.require_ready()
        return JobOut.from_job(jobs.submit("sync", identity.principal, sync_work(project)))

    @r.get("/v1/jobs/{job_id}", response_model=JobOut)
    def job(job_id: str, identity: Annotated[Identity, Depends(service.caller("documents"))]) -> JobOut:
        """A job's status and progress: only its submitter's, or any for an admin."""
        found = jobs.get(job_id)
        if found is None or (found.owner != identity.principal and identity.role < Role.ADMIN):
            raise ApiError(404, "job_not_found", f"no job {job_id!r} of yours; the id is in the 202 response of "
                                                 "the upload, delete or sync that started it")
        return JobOut.from_job(found)

    return r
