"""The answer cache's invalidation on sync, semantic mode, bounds, counters and settings (issue #18)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write

from cache.cache_corpus import PRINCIPALS, make_projects, readable_only, view
from ragtune.cache.answer_cache import AnswerCache
from ragtune.config import init_project
from ragtune.errors import ConfigError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.project import Project

ANN, BOB, HANK, LENA = PRINCIPALS[0], PRINCIPALS[1], PRINCIPALS[2], PRINCIPALS[3]
VACATION = "How many vacation days do employees get?"


def _hit(answer: object) -> bool:
    return "cache_hit" in answer.latency_ms  # type: ignore[attr-defined]


def _fresh(project: Project, embedder: MiniLMEmbedder) -> Project:
    """An uncached project opened now (a LanceDB table opened earlier keeps reading its old version)."""
    return Project(project.settings, embedder=embedder)


def test_a_sync_that_narrows_an_acl_or_adds_a_document_invalidates(tmp_path: Path, embedder: MiniLMEmbedder
                                                                    ) -> None:
    cached, plain = make_projects(tmp_path, embedder)
    first = cached.ask(VACATION, ANN)
    assert any("handbook" in c.chunk.source_path for c in first.citations)
    assert _hit(cached.ask(VACATION, ANN))
    # The handbook becomes hr-only: ann's cached answer quoting it must never be served again.
    write(tmp_path / "docs" / "handbook.md", "---\nacl: {groups: [hr]}\n---\n# Employee handbook\n\n"
          "Employees get 25 days of paid vacation per year. Remote work is allowed two days a week.\n")
    cached.sync()
    after = cached.ask(VACATION, ANN)
    assert not _hit(after) and readable_only(after, ANN)
    assert not any("handbook" in c.chunk.source_path for c in after.citations)
    assert view(after) == view(_fresh(plain, embedder).ask(VACATION, ANN))
    # A new document (same ACL tokens as before): the old entries are unreachable, the answer is fresh.
    bob_before = cached.ask(VACATION, BOB)
    write(tmp_path / "docs" / "hr" / "leave.md", "---\nacl: {groups: [hr]}\n---\n# Leave\n\n"
          "Employees get 30 days of paid vacation per year from 2027 on.\n")
    cached.ingest(tmp_path / "docs")
    bob_after = cached.ask(VACATION, BOB)
    assert not _hit(bob_after) and view(bob_after) == view(_fresh(plain, embedder).ask(VACATION, BOB))
    assert view(bob_after) != view(bob_before)
    stats = cached.answer_cache.stats()  # type: ignore[union-attr]
    assert stats.invalidations >= 2 and stats.hits == 1


def test_semantic_hits_stay_within_one_key(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    cached, plain = make_projects(tmp_path, embedder, semantic=True, semantic_threshold=0.9)
    asked = cached.ask(VACATION, BOB)
    close = "how many vacation days do employees get"
    same_key = cached.ask(close, HANK)  # hank reads what bob reads
    assert _hit(same_key) and same_key.question == close
    assert same_key.citations == asked.citations and any("semantic cache hit" in f for f in same_key.flags)
    other_key = cached.ask(close, LENA)
    assert not _hit(other_key) and view(other_key) == view(plain.ask(close, LENA))
    unrelated = cached.ask("Who reviews vendor contracts?", HANK)
    assert not _hit(unrelated)
    stats = cached.answer_cache.stats()  # type: ignore[union-attr]
    assert (stats.semantic_hits, stats.misses) == (1, 3)


def test_lru_bound_ttl_stats_and_hooks(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    _, plain = make_projects(tmp_path, embedder)
    now = [0.0]
    cache = AnswerCache(plain.store, embedder, plain.settings, max_entries=2, ttl_s=10, clock=lambda: now[0])
    seen: list[bool] = []
    cache.hooks.append(seen.append)

    def ask(question: str) -> bool:
        lookup = cache.lookup(question, ANN)
        assert lookup is not None
        if not lookup.hit:
            lookup.store(plain.ask(question, ANN))
        return lookup.hit

    assert [ask("a one"), ask("a one"), ask("b two"), ask("c three")] == [False, True, False, False]
    assert ask("b two") and not ask("a one")  # "a one" was the least recently used: evicted
    now[0] = 11.0
    assert not ask("b two")  # expired
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.expirations) == (2, 5, 2, 1)
    assert stats.entries == 2 and stats.hit_ratio == pytest.approx(2 / 7)
    assert seen == [False, True, False, False, True, False, False]
    cache.clear()
    assert cache.stats().entries == 0


def test_a_hit_streams_its_text_and_reports_its_latency(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    cached, _ = make_projects(tmp_path, embedder)
    cached.ask(VACATION, ANN)
    tokens: list[str] = []
    hit = cached.ask(VACATION, ANN, on_token=tokens.append)
    assert tokens == [hit.text] and set(hit.latency_ms) == {"open_index", "model_load", "cache_hit", "total"}


def test_the_cache_is_off_by_default_and_bad_settings_name_the_key(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path / "p")
    project = Project.open(tmp_path / "p")
    assert project.settings.cache.enabled is False and project.answer_cache is None
    assert "cache:\n  enabled: false" in (tmp_path / "p" / "ragtune.yaml").read_text()
    monkeypatch.setenv("RAGTUNE_CACHE__SEMANTIC_THRESHOLD", "1.5")
    with pytest.raises(ConfigError, match="RAGTUNE_CACHE__SEMANTIC_THRESHOLD: .*less than or equal to 1"):
        Project.open(tmp_path / "p")


def test_the_metrics_counter_is_a_default_hook_when_that_module_exists() -> None:
    from ragtune.cache.answer_cache import _default_hooks

    metrics = pytest.importorskip("ragtune.observability.metrics")
    assert metrics.record_cache in _default_hooks()
