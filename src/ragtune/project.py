"""A ragtune project: its settings and the components they configure, built lazily on first use.

This is the Python entry point the CLI (and later the server) drives::

    project = Project.open("path/to/project")
    project.ingest(Path("docs"))
    answer = project.ask("How long are backups kept?", Principal("alice", frozenset({"legal"})))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from ragtune.answer.extractive import ExtractiveAnswerer
from ragtune.answer.generative import GenerativeAnswerer
from ragtune.config import Settings, load_settings
from ragtune.core import Acl, Answer, Principal
from ragtune.errors import EmptyCorpusError, RagtuneError
from ragtune.ingest.sync import Syncer, SyncProgress, SyncReport, load_roots, record_sync, remember_root
from ragtune.models.embedder import Embedder, make_embedder
from ragtune.models.generator import make_generator
from ragtune.retrieval.hybrid import HybridRetriever, Retrieval
from ragtune.store.base import DocRecord
from ragtune.store.lance import LanceStore


class Project:
    """Settings plus lazily built store, embedder, retriever and answerer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def open(cls, project_dir: Path | str | None = None) -> Project:
        """Open the project at ``project_dir``, or the one found from the current folder."""
        return cls(load_settings(Path(project_dir) if project_dir is not None else None))

    @cached_property
    def embedder(self) -> Embedder:
        """The configured embedder (model weights load on first embed)."""
        e = self.settings.embedder
        return make_embedder(e.model, batch_size=e.batch_size, threads=e.threads, runtime=e.runtime)

    @cached_property
    def store(self) -> LanceStore:
        """The project's LanceDB store."""
        return LanceStore(self.settings.index_dir, dim=self.embedder.dim)

    @cached_property
    def retriever(self) -> HybridRetriever:
        """Hybrid retriever configured from ``retrieval`` settings."""
        r = self.settings.retrieval
        return HybridRetriever(
            self.store, self.embedder, top_k=r.top_k, lexical_k=r.lexical_k, dense_k=r.dense_k,
            rrf_k=r.rrf_k, lexical_weight=r.lexical_weight, dense_weight=r.dense_weight,
        )

    @cached_property
    def answerer(self) -> ExtractiveAnswerer | GenerativeAnswerer:
        """The extractive answerer, or a generative one when ``generator.kind`` names a model."""
        a, g = self.settings.answer, self.settings.generator
        generator = make_generator(g.kind, g.base_url, g.model, g.api_key_env, threads=self.settings.embedder.threads)
        if generator is not None:
            return GenerativeAnswerer(generator, self.embedder, min_relevance=a.min_relevance,
                                      context_chunks=a.context_chunks, max_tokens=g.max_tokens)
        return ExtractiveAnswerer(
            self.embedder, min_relevance=a.min_relevance, max_sentences=a.max_sentences,
            context_chunks=a.context_chunks,
        )

    def _syncer(self) -> Syncer:
        c = self.settings.chunking
        return Syncer(
            self.store, self.embedder, max_tokens=c.max_tokens, overlap_tokens=c.overlap_tokens,
            max_file_mb=self.settings.ingest.max_file_mb,
        )

    def ingest(self, path: Path, acl: Acl | None = None, progress: SyncProgress | None = None) -> SyncReport:
        """Sync one folder (or file) into the index; ``acl`` applies to files with no ACL of their own."""
        path = path.resolve()
        if not path.exists():
            raise RagtuneError(f"{path} does not exist; pass a folder or file to ingest")
        report = self._syncer().sync(path, acl, progress, exclude=(self.settings.index_dir,))
        remember_root(self.settings.index_dir, path, acl)
        record_sync(self.settings.index_dir, path, report)
        return report

    def sync(self, progress: SyncProgress | None = None) -> list[tuple[Path, SyncReport]]:
        """Re-sync every folder ingested before, with the ``--acl`` it was ingested with."""
        roots = load_roots(self.settings.index_dir)
        if not roots:
            raise EmptyCorpusError("nothing ingested yet: run `ragtune ingest PATH` first")
        out = []
        for root, tokens in roots.items():
            acl = Acl.from_tokens(tokens) if tokens else None
            report = self._syncer().sync(Path(root), acl, progress, exclude=(self.settings.index_dir,))
            record_sync(self.settings.index_dir, Path(root), report)
            out.append((Path(root), report))
        return out

    def _require_corpus(self) -> None:
        if self.store.count() == 0:
            raise EmptyCorpusError("the index is empty: run `ragtune ingest PATH` first")

    def _ready(self, query: str) -> None:
        if not query.strip():
            raise RagtuneError("the query is empty")
        self._require_corpus()
        self.embedder.warm_up()  # opening the index and loading the model are start-up, not query latency

    def search(self, query: str, principal: Principal, top_k: int | None = None) -> Retrieval:
        """Hybrid search as ``principal``."""
        self._ready(query)
        return self.retriever.retrieve(query, principal, top_k)

    def ask(self, question: str, principal: Principal, on_token: Callable[[str], None] | None = None) -> Answer:
        """Retrieve as ``principal`` and answer with citations, or abstain; latency per stage in ms.

        With a generator, ``on_token`` receives the answer as it is generated (before citations are checked).
        """
        self._ready(question)
        answerer = self.answerer
        if isinstance(answerer, GenerativeAnswerer):
            answerer.generator.warm_up()  # loading a local model is start-up, not answer latency
        t0 = time.perf_counter()
        retrieval = self.retriever.retrieve(question, principal)
        if isinstance(answerer, GenerativeAnswerer):
            answer = answerer.answer(question, retrieval.hits, principal, retrieval.query_vector, on_token=on_token)
        else:
            answer = answerer.answer(question, retrieval.hits, principal, retrieval.query_vector)
        latency = {**retrieval.latency_ms, **answer.latency_ms, "total": (time.perf_counter() - t0) * 1000}
        return replace(answer, latency_ms=latency)

    def sources(self) -> list[DocRecord]:
        """Every ingested document with its chunk count, ACL, modification and sync times."""
        return self.store.documents()
