"""Fixtures of the store tests: one throwaway PostgreSQL + pgvector cluster per session (tests/store/pg_cluster.py),
started only when a test asks for it, and a fresh schema per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ragtune.store.postgres import PostgresStore
from store.pg_cluster import ClusterError, PgCluster, start_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A running cluster; PostgreSQL or pgvector missing fails the tests (never skips), naming the setup script."""
    try:
        cluster = start_cluster()
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_schema(pg_cluster: PgCluster) -> Iterator[str]:
    """A schema name no other test uses, dropped after the test."""
    name = "t_" + uuid.uuid4().hex[:16]
    yield name
    pg_cluster.drop_schema(name)


@pytest.fixture
def make_pg_store(pg_cluster: PgCluster, pg_schema: str) -> Iterator[Callable[..., PostgresStore]]:
    """Opens PostgresStores (on this test's schema unless told otherwise), all closed after the test."""
    opened: list[PostgresStore] = []

    def make(dsn: str | None = None, **kwargs: Any) -> PostgresStore:
        kwargs.setdefault("schema", pg_schema)
        kwargs.setdefault("pool_size", 2)
        store = PostgresStore(dsn or pg_cluster.dsn, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def pg_store(make_pg_store: Callable[..., PostgresStore]) -> PostgresStore:
    """An empty PostgresStore in a fresh schema."""
    return make_pg_store()
