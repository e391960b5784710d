"""A ragtune project: its settings and the components they configure, built lazily on first use.

This is the Python entry point the CLI (and later the server) drives::

    project = Project.open("path/to/project")
    project.ingest(Path("docs"))
    answer = project.ask("How long are backups kept?", Principal("alice", frozenset({"legal"})))
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ragtune.answer.base import Answerer
from ragtune.answer.extractive import ExtractiveAnswerer
from ragtune.answer.generative import GenerativeAnswerer
from ragtune.config import Settings, load_settings
from ragtune.core import Acl, Answer, Chunk, Principal
from ragtune.errors import ConfigError, EmptyCorpusError, RagtuneError
from ragtune.ingest.check import CheckReport, check_index
from ragtune.ingest.executor import IngestExecutor
from ragtune.ingest.roots import RootSet, load_roots, place_root, save_roots, source_prefix_matches
from ragtune.ingest.sync import Syncer, SyncProgress, SyncReport, record_sync
from ragtune.models.embedder import Embedder, make_embedder
from ragtune.models.generator import Generator, make_generator
from ragtune.retrieval.hybrid import HybridRetriever, Retrieval
from ragtune.retrieval.rerank import Reranker, make_reranker
from ragtune.store.base import DocRecord, Store

if TYPE_CHECKING:
    from ragtune.audit.log import AuditLog
    from ragtune.cache.answer_cache import AnswerCache
    from ragtune.server.ui.store import UiStore
    from ragtune.service.keys import KeyStore
    from ragtune.service.oidc import OidcVerifier
    from ragtune.tuning.base import TextClassifier
    from ragtune.tuning.registry import Registry
    from ragtune.verify.default import LexicalOverlapChecker
    from ragtune.verify.groundedness import GroundednessChecker


class Project:
    """Settings plus every component they configure, each built once on first use.

    Components can be handed in (``embedder=``) to share an already loaded model, e.g. between a project and
    the throwaway project an advisor bake-off runs in; everything else is built here and nowhere else.
    """

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        if embedder is not None:
            self.__dict__["embedder"] = embedder  # fills the cached property
        self._classifiers: dict[tuple[str, int | None], Any] = {}
        self._checkers: dict[str, Any] = {}
        self._generators: dict[str, Any] = {}
        self._embedder_checked = False  # searches read the index's fingerprint once, not on every query

    @classmethod
    def open(cls, project_dir: Path | str | None = None) -> Project:
        """Open the project at ``project_dir``, or the one found from the current folder."""
        return cls(load_settings(Path(project_dir) if project_dir is not None else None))

    @classmethod
    @contextmanager
    def temporary(cls, *, embedder: Embedder | None = None, **sections: dict[str, Any]) -> Iterator[Project]:
        """A throwaway project in a temporary folder (removed afterwards), e.g. for a bake-off.

        ``sections`` override settings sections: ``Project.temporary(retrieval={"top_k": 5})``.
        """
        with tempfile.TemporaryDirectory(prefix="ragtune-tmp-") as tmp:
            settings = Settings(project_dir=Path(tmp))
            if sections:
                settings = settings.model_copy(update={
                    name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()})
            yield cls(settings, embedder=embedder)

    @cached_property
    def embedder(self) -> Embedder:
        """The configured embedder (model weights load on first embed): ``minilm``, or ``registry:NAME[@VERSION]``,
        a bi-encoder from this project's registry (``ragtune tune retriever``)."""
        e = self.settings.embedder
        return make_embedder(e.model, batch_size=e.batch_size, threads=e.threads, runtime=e.runtime,
                             models_dir=self.settings.models_dir)

    @cached_property
    def store(self) -> Store:
        """The project's store (``store.kind``; ``lance``: LanceDB in ``store_path``; ``postgres``: PostgreSQL +
        pgvector, the DSN from ``RAGTUNE_STORE_DSN``, the secrets file or ``store.dsn``)."""
        kind = self.settings.store.kind
        if kind == "lance":
            from ragtune.store.lance import LanceStore

            return LanceStore(self.settings.index_dir, dim=self.embedder.dim)
        if kind == "postgres":
            from ragtune.store.pg_dsn import resolve_dsn
            from ragtune.store.postgres import PostgresStore

            s = self.settings.store
            return PostgresStore(resolve_dsn(s.dsn), dim=self.embedder.dim, schema=s.schema_name,
                                 pool_size=s.pool_size, index_build_memory=s.index_build_memory,
                                 ef_search=s.ef_search)
        raise ConfigError(f"store.kind {kind!r} is not available")  # pragma: no cover - Literal-checked

    @cached_property
    def reranker(self) -> Reranker | None:
        """The reranking stage ``rerank.kind`` names (``registry:NAME``: a cross-encoder from this project's
        registry, ``ragtune tune reranker``), or None."""
        r = self.settings.rerank
        return make_reranker(r.kind, self.settings.models_dir, threads=self.settings.embedder.threads,
                             max_length=r.max_length)

    @cached_property
    def retriever(self) -> HybridRetriever:
        """Hybrid retriever configured from ``retrieval`` and ``rerank`` settings."""
        r = self.settings.retrieval
        return HybridRetriever(
            self.store, self.embedder, top_k=r.top_k, lexical_k=r.lexical_k, dense_k=r.dense_k,
            rrf_k=r.rrf_k, lexical_weight=r.lexical_weight, dense_weight=r.dense_weight,
            lexical_isolation=r.lexical_isolation, reranker=self.reranker,
            rerank_candidates=self.settings.rerank.candidates, rerank_fused_weight=self.settings.rerank.fused_weight,
            rerank_skip_when_agree=self.settings.rerank.skip_when_agree,
        )

    def retriever_variant(self, *, rerank: bool = True, **retrieval: Any) -> HybridRetriever:
        """A new retriever over this project's store and embedder with ``retrieval`` settings overridden, e.g.
        ``retriever_variant(dense_weight=0.0)`` for BM25 only; ``rerank=False`` leaves the configured reranker
        out. The overrides are checked like the ``retrieval`` section of ragtune.yaml (an unknown key or a value
        out of range is a ``ConfigError``). ``ragtune eval retrieval`` compares configurations with it."""
        from pydantic import ValidationError

        from ragtune.config import RetrievalSettings

        try:
            r = RetrievalSettings(**{**self.settings.retrieval.model_dump(), **retrieval})
        except ValidationError as exc:
            raise ConfigError(f"retrieval overrides {retrieval}: {exc.errors()[0]['msg']}") from exc
        return HybridRetriever(
            self.store, self.embedder, top_k=r.top_k, lexical_k=r.lexical_k, dense_k=r.dense_k,
            rrf_k=r.rrf_k, lexical_weight=r.lexical_weight, dense_weight=r.dense_weight,
            lexical_isolation=r.lexical_isolation, reranker=self.reranker if rerank else None,
            rerank_candidates=self.settings.rerank.candidates, rerank_fused_weight=self.settings.rerank.fused_weight,
            rerank_skip_when_agree=self.settings.rerank.skip_when_agree,
        )

    @cached_property
    def generator(self) -> Generator | None:
        """The configured generator (``generator.kind``), or None for extractive answers."""
        g = self.settings.generator
        if g.kind == "tuned":
            return cast(Generator, self.tuned_generator(g.model))
        return make_generator(g.kind, g.base_url, g.model, g.api_key_env, threads=self.settings.embedder.threads)

    @cached_property
    def extractive_answerer(self) -> ExtractiveAnswerer:
        """The answerer that quotes the sources (``answer`` settings), whatever the generator."""
        a = self.settings.answer
        return ExtractiveAnswerer(self.embedder, min_relevance=a.min_relevance, max_sentences=a.max_sentences,
                                  context_chunks=a.context_chunks, min_sentence_score=a.min_sentence_score,
                                  support_margin=a.support_margin)

    @cached_property
    def answerer(self) -> Answerer:
        """The span reader's answerer when ``answer.kind`` is ``reader``; else the extractive answerer, or a
        generative one when ``generator.kind`` names a model."""
        a, g = self.settings.answer, self.settings.generator
        if a.kind == "reader":
            from ragtune.answer.reader import ReaderAnswerer
            from ragtune.config import reader_spec
            from ragtune.tuning.reader.served import SpanReader

            reader = SpanReader(self.settings.models_dir, reader_spec(a.reader), threads=self.settings.embedder.threads)
            return ReaderAnswerer(reader, self.embedder, min_relevance=a.min_relevance,
                                  context_chunks=a.context_chunks, min_score=a.reader_min_score)
        if self.generator is not None:
            return GenerativeAnswerer(self.generator, self.embedder, min_relevance=a.min_relevance,
                                      context_chunks=a.context_chunks, max_tokens=g.max_tokens)
        return self.extractive_answerer

    @cached_property
    def key_store(self) -> KeyStore:
        """The service's API keys (``service.keys_path``), hashed in SQLite."""
        from ragtune.service.keys import KeyStore

        return KeyStore.from_settings(self.settings)

    @cached_property
    def ui_store(self) -> UiStore:
        """The web UI's sessions, chat history and feedback (``service.ui_path``)."""
        from ragtune.server.ui.store import UiStore

        path = self.settings.service.ui_path
        return UiStore(path if path.is_absolute() else self.settings.project_dir / path)

    @cached_property
    def oidc_verifier(self) -> OidcVerifier | None:
        """The OIDC bearer-token verifier, or None when ``service.oidc_issuer`` is not set."""
        from ragtune.service.oidc import OidcVerifier

        return OidcVerifier.from_settings(self.settings)

    @cached_property
    def audit_log(self) -> AuditLog | None:
        """The hash-chained audit log every answer and pipeline run is recorded in (None: ``audit.enabled`` off)."""
        from ragtune.audit.log import AuditLog, log_path

        return AuditLog(log_path(self.settings)) if self.settings.audit.enabled else None

    @cached_property
    def answer_cache(self) -> AnswerCache | None:
        """The permission-aware answer cache ``ask`` consults (``cache`` settings), or None when it is off."""
        if not self.settings.cache.enabled:
            return None
        from ragtune.cache.answer_cache import AnswerCache

        return AnswerCache.from_settings(self.settings, self.store, self.embedder)

    def warm_up(self) -> None:
        """Open the index and load the embedder (and a local generator) now, as a server does before it is
        ready, so the first request pays no start-up."""
        self._require_corpus()
        self.embedder.warm_up()
        self._warm_answer_model()

    def _warm_answer_model(self) -> None:
        """Load the model that writes answers, if any: the span reader (``answer.kind: reader``), else a
        generator. Loading it is start-up, not answer latency."""
        if self.settings.answer.kind == "reader":
            cast(Any, self.answerer).warm_up()
        elif self.generator is not None:
            self.generator.warm_up()

    @cached_property
    def registry(self) -> Registry:
        """The project's model registry (``models_path``)."""
        from ragtune.tuning.registry import Registry

        return Registry(self.settings.models_dir)

    def classifier(self, name: str, version: int | None = None) -> TextClassifier:
        """A registered classifier, loaded once per (name, version)."""
        key = (name, version)
        if key not in self._classifiers:
            self._classifiers[key] = self.registry.load(name, version)
        return cast("TextClassifier", self._classifiers[key])

    def tuned_generator(self, model: str) -> Any:
        """A generator fine-tuned by ``ragtune tune generator`` (``model``: NAME or NAME@VERSION), served by
        llama.cpp, one server per name; its ``schema`` is the output schema it was trained with."""
        if model not in self._generators:
            from ragtune.tuning.generator.served import tuned_generator

            self._generators[model] = tuned_generator(self.settings.models_dir, model,
                                                      threads=self.settings.embedder.threads)
        return self._generators[model]

    def groundedness_checker(self, model: str) -> GroundednessChecker | LexicalOverlapChecker:
        """The groundedness checker a model name selects, loaded once per name: the registered one, or lexical
        overlap (no training) when no checker is registered under the default name ``groundedness``."""
        if model not in self._checkers:
            from ragtune.verify.default import load_checker

            self._checkers[model] = load_checker(self.registry, model)
        return cast("GroundednessChecker | LexicalOverlapChecker", self._checkers[model])

    def _syncer(self, executor: IngestExecutor | None = None) -> Syncer:
        c, i = self.settings.chunking, self.settings.ingest
        return Syncer(
            self.store, self.embedder, max_tokens=c.max_tokens, overlap_tokens=c.overlap_tokens,
            max_file_mb=i.max_file_mb, follow_external_links=i.follow_external_links, executor=executor,
        )

    def _executor(self, ray: str | None) -> AbstractContextManager[IngestExecutor | None]:
        """Where a sync parses, chunks and embeds: this process (None), or the Ray cluster ``ray`` names."""
        if ray is None:
            return nullcontext(None)
        from ragtune.ingest.ray_exec import ray_executor

        return ray_executor(ray, self.settings, self.embedder.fingerprint)

    def roots(self) -> RootSet:
        """The folders (and files) ingested so far, with their ``--acl`` defaults."""
        return load_roots(self.store.state)

    def ingest(self, path: Path, acl: Acl | None = None, progress: SyncProgress | None = None,
               ray: str | None = None) -> SyncReport:
        """Sync one folder (or file) into the index; ``acl`` applies to files with no ACL of their own.

        A path inside an ingested root syncs that part of the root (with the root's default ACL); a folder
        holding ingested roots absorbs them. Either way each file has one root and one default. ``ray``
        (``auto`` or a cluster address) parses, chunks and embeds on Ray (docs/ray.md); it is connected before
        the index is touched.
        """
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise RagtuneError(f"{path} does not exist; pass a folder or file to ingest")
        with self._executor(ray) as executor:
            index_dir = self.settings.index_dir
            state = self.store.state
            with state.write_lock(f"ingest {real}"):
                self._check_embedder(record=True)
                roots = load_roots(state)
                place_root(roots, real, acl)
                save_roots(state, roots)  # before the first batch, so a killed first ingest can be resumed
                report = self._syncer(executor).sync(real, progress=progress, exclude=(index_dir,), roots=roots)
                record_sync(state, real, report)
        return report

    def sync(self, progress: SyncProgress | None = None, ray: str | None = None) -> list[tuple[Path, SyncReport]]:
        """Re-sync every root. A missing root is reported and, unless ``ingest.keep_missing_roots``, loses its
        documents; the other roots are synced all the same. Documents under no root are removed. ``ray``: as
        for :meth:`ingest`."""
        with self._executor(ray) as executor:
            return self._sync(progress, executor)

    def _sync(self, progress: SyncProgress | None, executor: IngestExecutor | None) -> list[tuple[Path, SyncReport]]:
        index_dir = self.settings.index_dir
        state = self.store.state
        with state.write_lock("sync"):
            self._check_embedder(record=True)
            roots = load_roots(state)
            if not roots:
                if self.store.count() == 0:
                    raise EmptyCorpusError("nothing ingested yet: run `ragtune ingest PATH` first")
                # Never "sync" an index whose roots were lost into an empty one: say so, remove nothing.
                raise RagtuneError(f"the index holds documents but no ingested folders are recorded in "
                                   f"{self.settings.index_dir}: run `ragtune ingest FOLDER` for each folder, or "
                                   "`ragtune check --repair` to drop documents under no folder")
            out = []
            syncer = self._syncer(executor)
            for root in roots:
                if not root.exists():
                    report = self._missing_root(root)
                else:
                    report = syncer.sync(root, progress=progress, exclude=(index_dir,), roots=roots)
                record_sync(state, root, report)
                out.append((root, report))
            orphans = [d.doc_id for d in self.store.documents()
                       if not any(source_prefix_matches(d.source_path, r) for r in roots)]
            if orphans:
                self.store.delete_documents(orphans)
                report = SyncReport(deleted=len(orphans))
                out.append((Path("(documents under no ingested root)"), report))
        return out

    def _doc_ids_under(self, root: Path) -> list[str]:
        return [d.doc_id for d in self.store.documents() if source_prefix_matches(d.source_path, root)]

    def _missing_root(self, root: Path) -> SyncReport:
        docs = self._doc_ids_under(root)
        report = SyncReport()
        if self.settings.ingest.keep_missing_roots:
            report.failed.append((str(root), f"{root} is missing; its {len(docs)} document(s) are kept and still "
                                  "searchable (ingest.keep_missing_roots); `ragtune roots remove` drops them"))
            return report
        if docs:
            self.store.delete_documents(docs)
        report.deleted = len(docs)
        report.failed.append((str(root), f"{root} is missing: its {len(docs)} document(s) were removed; it is "
                              "synced again if it comes back (`ragtune roots remove` forgets it)"))
        return report

    def remove_root(self, path: Path) -> int:
        """Forget an ingested root and remove its documents; returns how many were removed."""
        state = self.store.state
        with state.write_lock("roots remove"):
            roots = load_roots(state)
            real = Path(os.path.realpath(path))
            root = real if real in roots else Path(os.path.abspath(path))
            if root not in roots:
                listed = ", ".join(map(str, roots)) or "none"
                raise RagtuneError(f"{path} is not an ingested root (roots: {listed}); see `ragtune roots list`")
            docs = self._doc_ids_under(root)
            self.store.delete_documents(docs)
            del roots.roots[root]
            save_roots(state, roots)
        return len(docs)

    def remove_sources(self, path: Path) -> list[DocRecord]:
        """Remove the documents stored at or under ``path`` (as listed by ``sources``); returns them."""
        with self.store.state.write_lock("sources --remove"):
            target = Path(os.path.abspath(path))
            real = Path(os.path.realpath(path))
            docs = [d for d in self.store.documents()
                    if source_prefix_matches(d.source_path, target) or source_prefix_matches(d.source_path, real)]
            self.store.delete_documents([d.doc_id for d in docs])
        return docs

    def check(self, repair: bool = False, progress: SyncProgress | None = None) -> CheckReport:
        """Find duplicate chunk ids, inconsistent or orphan documents and documents whose files are gone;
        with ``repair``, remove them and re-sync every root (which re-ingests those still on disk)."""
        keep = self.settings.ingest.keep_missing_roots
        report = check_index(self.store, self.roots(), keep)
        if repair and not report.ok:
            with self.store.state.write_lock("check --repair"):
                report = check_index(self.store, self.roots(), keep)
                self.store.delete_documents(report.damaged)
            if self.roots():
                self.sync(progress)
        return report

    def _require_corpus(self) -> None:
        if self.store.count() == 0:
            raise EmptyCorpusError("the index is empty: run `ragtune ingest PATH` first")
        if not self._embedder_checked:
            self._check_embedder(record=False)

    def _check_embedder(self, record: bool) -> None:
        """Refuse to mix vectors of two models: the index records the fingerprint of the embedder that filled it."""
        state, current = self.store.state, self.embedder.fingerprint
        stored = state.meta().get("embedder")
        if stored is None:
            if record:
                state.set_meta("embedder", current)
                self._embedder_checked = True
            return
        if stored != current:
            from ragtune.index_reembed import MARKER_KEY

            if state.meta().get(MARKER_KEY):
                raise ConfigError(f"the index in {self.settings.index_dir} is being switched to another embedder "
                                  f"{stored}; it cannot be searched or synced until then")
            from ragtune.store.migrate import UNFINISHED

            if stored == UNFINISHED:  # the marker of a copy that has not finished
                raise ConfigError(f"the index in {self.settings.index_dir} holds an unfinished `ragtune migrate`: "
                                  "run the same `ragtune migrate --to ...` again with --replace in the source project "
                                  "to finish the copy; it cannot be searched or synced until then")
            raise ConfigError(
                f"the index in {self.settings.index_dir} was built with embedder {stored}, but the project now uses "
                f"{current}: vectors of two models cannot be searched together. Re-embed it with `ragtune reindex "
                f"--embedder {self.settings.embedder.model}`, or move that folder away and ingest every root again "
                "(`ragtune roots list` shows them), or set embedder back in ragtune.yaml"
            )
        self._embedder_checked = True

    def _ready(self, query: str) -> dict[str, float]:
        """Check the query, open the index, load the embedder; returns ``open_index`` and ``model_load`` in ms."""
        if not query.strip():
            raise RagtuneError("the query is empty")
        t0 = time.perf_counter()
        self._require_corpus()
        t1 = time.perf_counter()
        self.embedder.warm_up()  # opening the index and loading the model are start-up, not query latency
        return {"open_index": (t1 - t0) * 1000, "model_load": (time.perf_counter() - t1) * 1000}

    def search(self, query: str, principal: Principal, top_k: int | None = None) -> Retrieval:
        """Hybrid search as ``principal``."""
        self._ready(query)
        return self.retriever.retrieve(query, principal, top_k)

    def ask(self, question: str, principal: Principal, on_token: Callable[[str], None] | None = None) -> Answer:
        """Retrieve as ``principal`` and answer with citations, or abstain; latency per stage in ms.

        With a generator, ``on_token`` receives the answer as it is generated (before citations are checked).
        ``latency_ms`` starts with ``open_index`` and ``model_load`` (the embedder's and generator's warm-up;
        both near 0 once done in this process), which ``total`` (retrieval and answer) does not include.
        With ``cache.enabled``, a cached answer for the same effective ACL tokens, index version, settings and
        models is served instead; its ``latency_ms`` has ``cache_hit`` (the lookup) in place of the stages.
        """
        load = self._ready(question)
        cache = self.answer_cache
        lookup = cache.lookup(question, principal) if cache is not None else None
        if lookup is not None and lookup.hit:
            return lookup.served(load, on_token)
        answerer = self.answerer
        t_load = time.perf_counter()
        self._warm_answer_model()
        load["model_load"] += (time.perf_counter() - t_load) * 1000
        t0 = time.perf_counter()
        retrieval = self.retriever.retrieve(question, principal)
        answer = answerer.answer(question, retrieval, principal, on_token=on_token)
        latency = {**load, **retrieval.latency_ms, **answer.latency_ms, "total": (time.perf_counter() - t0) * 1000}
        answer = replace(answer, latency_ms=latency)
        if lookup is not None:
            lookup.store(answer)
        return answer

    def document_chunks(self, doc_id: str, principal: Principal) -> list[Chunk]:
        """The chunks of one document that ``principal`` may read, in document order (none: unknown or not
        readable). Fetched by id (``chunk_id_for(doc_id, ordinal)``, ordinals 0, 1, ...) in batches, with the
        ACL filter inside the store query, so no scan of the index."""
        from ragtune.ingest.chunking import chunk_id_for

        out: list[Chunk] = []
        batch = 64
        while True:
            ids = [chunk_id_for(doc_id, i) for i in range(len(out), len(out) + batch)]
            found = self.store.get_chunks(ids, principal)
            out.extend(found[i] for i in ids if i in found)
            if len(found) < batch:
                return out

    def sources(self, principal: Principal | None = None) -> list[DocRecord]:
        """Ingested documents with chunk count, ACL, modification and sync times: every one (the admin
        view) or, with ``principal``, only those it may read."""
        docs = self.store.documents()
        return docs if principal is None else [d for d in docs if principal.can_read(d.acl)]
