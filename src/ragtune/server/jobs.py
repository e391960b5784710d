"""Background write jobs of the server: one worker thread per project, so there is one writer at a time.

Uploads, syncs and deletes are queued as :class:`Job` records and run in order by :class:`JobQueue`'s single
worker (``Project.ingest``/``sync`` also take the index's file lock, so a CLI ingest in another process is
refused rather than interleaved). Reads never wait for a job: searches and answers see each batch as it commits.

Shutdown (:meth:`JobQueue.stop`) lets the running job finish the batch it is writing, then stops it before
the next batch (the syncer writes each batch as one atomic commit, so every document is old or new, never
half); queued jobs that never started are marked failed. ``POST /v1/sync`` after a restart finishes the work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragtune.core import Principal
from ragtune.errors import RagtuneError
from ragtune.ingest.sync import SyncReport
from ragtune.observability.metrics import record_ingestion_failure

log = logging.getLogger("ragtune.server.jobs")
JobStatus = Literal["queued", "running", "done", "failed"]
KEEP_JOBS = 500  # finished jobs kept for GET /v1/jobs/{id}; the oldest are forgotten first


class ShutdownRequested(Exception):  # noqa: N818 - a signal, not an error
    """Raised between batches when the server shuts down; the batches written so far are kept."""


@dataclass
class Job:
    """One queued write: its status, progress (files and chunks) and, when finished, its report."""

    id: str
    kind: str
    owner: Principal
    status: JobStatus = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    files_total: int = 0
    files_done: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class JobProgress:
    """The syncer's progress receiver for one job; it stops the sync before the next batch at shutdown."""

    def __init__(self, job: Job, stopping: threading.Event) -> None:
        self.job, self.stopping = job, stopping

    def start(self, total_files: int) -> None:
        """Files found by this sync (added up over the roots of a full sync)."""
        self.job.files_total += total_files

    def file_done(self, path: Path, status: str) -> None:
        """One more file read (or about to be written); raises :class:`ShutdownRequested` when stopping."""
        if self.stopping.is_set():
            raise ShutdownRequested("the server shut down before this batch was written")
        self.job.files_done += 1

    def chunks_total(self, n: int) -> None:
        """The chunks this sync will embed, as far as known."""
        self.job.chunks_total = max(self.job.chunks_total, self.job.chunks_embedded + n)

    def chunks_embedded(self, n: int) -> None:
        """One batch of ``n`` chunks committed."""
        self.job.chunks_embedded += n


def report_dict(report: SyncReport) -> dict[str, Any]:
    """A sync report as the API shows it."""
    return {"ingested": report.ingested, "updated": report.updated, "unchanged": report.unchanged,
            "reacl": report.reacl, "deleted": report.deleted, "chunks_embedded": report.chunks_embedded,
            "failed": len(report.failed), "skipped": len(report.skipped), "seconds": round(report.seconds, 3)}


def add_report(job: Job, report: SyncReport) -> None:
    """Fold one sync report into the job (a full sync has one per root)."""
    for key, value in report_dict(report).items():
        job.report[key] = round(job.report.get(key, 0) + value, 3)
    job.failures += [{"path": path, "error": error} for path, error in report.failed]
    record_ingestion_failure(len(report.failed))  # the server's /metrics counts them


Work = Callable[[Job, JobProgress], None]


class JobQueue:
    """A single-worker queue of write jobs for one project."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ragtune-jobs", daemon=True)
            self._thread.start()

    def submit(self, kind: str, owner: Principal, work: Work) -> Job:
        """Queue ``work`` as a new job; it runs after the jobs queued before it."""
        if self.stopping.is_set():
            raise RagtuneError("the server is shutting down and takes no new jobs; retry once it is back")
        job = Job(id=uuid.uuid4().hex, kind=kind, owner=owner)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished is not None]
            for old in finished[: max(0, len(self._jobs) - KEEP_JOBS)]:
                del self._jobs[old.id]
        self.start()
        self._queue.put((job, work))
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job has finished (for tests and scripts); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while (job := self._jobs[job_id]).finished is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            time.sleep(0.05)
        return job

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the batch being written, stop the running job before its next batch, fail the queued ones."""
        self.stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            job, work = item
            if self.stopping.is_set():
                self._finish(job, "failed", "the server shut down before the job started; submit it again")
                continue
            job.status, job.started = "running", time.time()
            try:
                work(job, JobProgress(job, self.stopping))
            except ShutdownRequested:
                self._finish(job, "failed", "the server shut down before the job finished: the batches written "
                                            "before are kept, the rest was not written; submit it again "
                                            "(POST /v1/sync for a sync)")
            except RagtuneError as exc:
                self._finish(job, "failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - a job failure is reported in its status, the worker goes on
                log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
                self._finish(job, "failed", f"{type(exc).__name__}: the job failed on the server; see the log")
            else:
                self._finish(job, "done", "")
        while not self._queue.empty():  # jobs queued behind the stop signal
            item = self._queue.get_nowait()
            if item is not None:
                self._finish(item[0], "failed", "the server shut down before the job started; submit it again")

    @staticmethod
    def _finish(job: Job, status: JobStatus, error: str) -> None:
        job.status, job.error, job.finished = status, error, time.time()
