"""The bake-offs' private index: a temporary project every question may read, filled within a time limit."""

from __future__ import annotations

import time
from pathlib import Path

from ragtune.core import Acl, Principal
from ragtune.evaluation import RetrievalEvaluator
from ragtune.project import Project

SANDBOX = Principal("advisor")  # the bake-off index is private and public to this principal only


class OutOfTime(Exception):
    """Raised from a progress callback to stop an ingestion at the budget (ingestion is resumable)."""


class _StopAt:
    """Sync progress that stops the ingestion after the file that passes ``until`` (``time.perf_counter``)."""

    def __init__(self, until: float) -> None:
        self.until = until

    def start(self, total_files: int) -> None:
        pass

    def file_done(self, path: Path, status: str) -> None:
        if time.perf_counter() > self.until:
            raise OutOfTime

    def chunks_embedded(self, n: int) -> None:
        pass


def ingest_public(sandbox: Project, docs: Path, until: float) -> bool:
    """Ingest ``docs`` into ``sandbox``, stopping after the file that passes ``until`` (``time.perf_counter``),
    and make every document readable by :data:`SANDBOX`; True when every file was ingested."""
    complete = True
    try:
        sandbox.ingest(Path(docs), Acl(public=True), progress=_StopAt(until))
    except OutOfTime:
        complete = False
    store = sandbox.store
    for d in store.documents():  # the sandbox must see everything: ACLs are audited, not applied, here
        if "public" not in d.acl:
            store.set_acl(d.doc_id, ["public"], time.time())
    store.optimize()
    return complete


def source_recall(qrels: dict[str, dict[str, int]], run: dict[str, list[str]], k: int) -> float:
    """recall@k of the gold source files: ``run`` maps a question id to the file names of its first k chunks."""
    evaluator = RetrievalEvaluator(qrels, k_values=(k,), primary_metric=f"recall@{k}")
    return evaluator.primary_score(evaluator(run))
