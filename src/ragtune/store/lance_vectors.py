"""How the embedded store searches vectors at each size.

Below ``ann_min_rows`` chunks the vector index is one IVF partition: every readable vector is compared, so dense
search is exact (a scan through the index took half the time of an unindexed one on SciFact). From that size on,
:meth:`~ragtune.store.lance.LanceStore.optimize` replaces it with an IVF-PQ index (about √N partitions, 8 dimensions
per sub-vector) searched over ``NPROBES`` partitions with the best ``REFINE_FACTOR`` × k re-scored on the full
vectors. A principal who may read at most ``exact_max_readable`` chunks is searched exactly even then: the ACL
filter (a label-list index lookup) leaves few enough vectors to compare all of them, and an approximate search
under a very selective filter is where recall is lost. A principal reading at least ``POSTFILTER_MIN_SHARE`` of
the chunks is searched approximately with the ACL filter applied to the candidates rather than before the search
(evaluating it over every row cost more than the search itself). The ACL filter is in the query on every path.

``benchmarks/store_scale.py`` measures these defaults (recall against exact search, latency under filters) on
a million chunks: docs/benchmarks.md, "Store scale".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ANN_MIN_ROWS = 100_000  # below this, exact search is fast enough: the bar the approximate index is held to
EXACT_MAX_READABLE = 50_000  # a principal reading at most this many chunks is searched exactly
NPROBES = 32
REFINE_FACTOR = 150  # PQ codes rank near neighbours roughly: 10 kept recall@10 at 0.72 on a million chunks, 150 0.96
# (benchmarks/store_scale_sweep.py --store lance)
POSTFILTER_MIN_SHARE = 0.5  # a principal reading at least this share of the chunks: the ACL filter after the search
POSTFILTER_MARGIN = 1.5
ANN_INDEX_TYPE = "IvfPq"
_MIN_ROWS_PER_PARTITION = 256  # what Lance needs to train a partition's centroid


def vector_index_config(rows: int, dim: int, ann_min_rows: int = ANN_MIN_ROWS) -> Any:
    """The vector index a table of ``rows`` chunks should have: exact (one partition) or IVF-PQ."""
    from lancedb.index import IvfFlat, IvfPq

    if rows < ann_min_rows:
        return IvfFlat(distance_type="cosine", num_partitions=1)
    partitions = max(2, min(round(math.sqrt(rows)), rows // _MIN_ROWS_PER_PARTITION))
    sub_vectors = dim // 8 if dim % 8 == 0 else 1
    return IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=sub_vectors)


def vector_index_of(table: Any) -> Any | None:
    """The table's index on ``vector`` (a LanceDB ``IndexConfig``), or None."""
    return next((ix for ix in table.list_indices() if tuple(ix.columns) == ("vector",)), None)


def is_approximate(index: Any | None) -> bool:
    """Whether ``index`` is the approximate (IVF-PQ) vector index."""
    return index is not None and index.index_type == ANN_INDEX_TYPE


def wrong_vector_index(index: Any | None, rows: int, ann_min_rows: int = ANN_MIN_ROWS) -> bool:
    """Whether a table of ``rows`` chunks with ``index`` should get a new vector index: none yet, exact at or
    above ``ann_min_rows`` chunks, or approximate below it (an exact one is then both faster and exact)."""
    return index is None or is_approximate(index) != (rows >= ann_min_rows)


def dense_rows(table: Any, vector: np.ndarray, where: str, k: int, *, approximate: bool, share: float = 0.0) -> Any:
    """Top-``k`` (chunk id, cosine distance) of the chunks matching ``where`` (the ACL filter) as Arrow;
    ``approximate``: through the IVF-PQ index, otherwise an exact comparison of every matching vector.

    ``share``: the share of the table's chunks the principal may read. From :data:`POSTFILTER_MIN_SHARE` on, the
    approximate search applies the filter to its candidates instead of before the search (LanceDB's pre-filter
    evaluates the ACL over every row: 42 of the 58 ms of an unfiltered search on a million chunks) and asks for
    ``k / share`` (× :data:`POSTFILTER_MARGIN`) of them; either way the filter is in the query and no unreadable
    chunk comes back. Fewer than ``k`` rows means the caller should search again with the pre-filter."""
    post = approximate and share >= POSTFILTER_MIN_SHARE
    limit = math.ceil(k / share * POSTFILTER_MARGIN) if post and share < 1 else k
    query = (table.search(np.asarray(vector, dtype=np.float32), query_type="vector")
             .distance_type("cosine").where(where, prefilter=not post))
    query = query.nprobes(NPROBES).refine_factor(REFINE_FACTOR) if approximate else query.bypass_vector_index()
    return query.select(["chunk_id", "_distance"]).limit(limit).to_arrow().slice(0, k)


__all__ = ["ANN_MIN_ROWS", "EXACT_MAX_READABLE", "POSTFILTER_MIN_SHARE", "dense_rows", "is_approximate",
           "vector_index_config", "vector_index_of", "wrong_vector_index"]
