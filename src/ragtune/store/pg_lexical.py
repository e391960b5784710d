"""BM25 in one SQL statement over the chunks' ``tsvector`` (English stemming and stop words).

PostgreSQL's own ``ts_rank`` is not BM25 (no document frequencies, no length normalisation against the
average), so hybrid ranking would change when a team moves from the embedded store. This computes Lucene's
BM25 as the embedded store does (:mod:`ragtune.store.isolated_bm25`: k1 = 1.2, b = 0.75, scores scaled by
k1 + 1, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), a term repeated in the query counts each time, chunks with
no term count in neither N nor the average length):

- query terms: the lexemes of ``to_tsvector('english', query)``, each with its count in the query;
- candidates: chunks matching any term (``tsv @@ 'a' | 'b'``, the GIN index) *and* the principal's ACL
  filter, in the same query, so ranking and ``LIMIT`` only ever see readable chunks;
- tf: the number of positions of the term in the chunk's tsvector; document length: all its positions
  (``doc_len``, a stored column);
- statistics: for ``isolated=False`` N and the average length come from ``lexical_stats`` (kept by triggers
  in every write's transaction) and df counts every chunk; for ``isolated=True`` N, the average length and
  df count only the chunks the principal may read, so no score depends on unreadable text.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from ragtune.store.isolated_bm25 import K1, B

# The query's terms; each becomes a one-lexeme tsquery (quotes and backslashes doubled, as tsquery input wants).
_TERMS = """
terms AS MATERIALIZED (
    SELECT lexeme AS term, cardinality(positions)::float8 AS qtf,
           ('''' || replace(replace(lexeme, '\\', '\\\\'), '''', '''''') || '''')::tsquery AS tq
    FROM unnest(to_tsvector('english'::regconfig, %(query)s::text))
)"""

_GLOBAL_STATS = """
stats AS MATERIALIZED (
    SELECT n::float8 AS n, CASE WHEN n > 0 THEN total_len::float8 / n ELSE 1 END AS avgdl FROM lexical_stats
)"""

_ISOLATED_STATS = """
stats AS MATERIALIZED (
    SELECT count(*)::float8 AS n, coalesce(avg(doc_len), 1)::float8 AS avgdl
    FROM chunks WHERE doc_len > 0 AND acl && %(tokens)s::text[]
)"""

_DF_FILTER_ISOLATED = "AND c.acl && %(tokens)s::text[]"

_REST = """
weighted AS MATERIALIZED (
    SELECT t.term, t.qtf * ln(1 + (s.n - d.df + 0.5) / (d.df + 0.5)) AS weight
    FROM terms t CROSS JOIN stats s
    CROSS JOIN LATERAL (SELECT count(*)::float8 AS df FROM chunks c WHERE c.tsv @@ t.tq {df_filter}) d
),
candidates AS MATERIALIZED (
    SELECT chunk_id, tsv, doc_len FROM chunks
    WHERE tsv @@ (SELECT string_agg(tq::text, ' | ')::tsquery FROM terms)
      AND acl && %(tokens)s::text[]
)
SELECT c.chunk_id,
       sum(w.weight * (u.tf * {k1_plus_1}) / (u.tf + {k1} * (1 - {b} + {b} * c.doc_len / s.avgdl))) AS score
FROM candidates c
CROSS JOIN stats s
CROSS JOIN LATERAL (SELECT lexeme, cardinality(positions)::float8 AS tf FROM unnest(c.tsv)) u
JOIN weighted w ON w.term = u.lexeme
GROUP BY c.chunk_id
ORDER BY score DESC, c.chunk_id COLLATE "C"
LIMIT %(k)s
"""


def bm25_query(*, isolated: bool) -> sql.Composed:
    """The BM25 statement; parameters ``query`` (text), ``tokens`` (the principal's ACL tokens) and ``k``."""
    stats = _ISOLATED_STATS if isolated else _GLOBAL_STATS
    rest = sql.SQL(_REST).format(
        df_filter=sql.SQL(_DF_FILTER_ISOLATED if isolated else ""),
        k1=sql.Literal(K1), b=sql.Literal(B), k1_plus_1=sql.Literal(K1 + 1.0),
    )
    return sql.Composed([sql.SQL("WITH" + _TERMS + "," + stats + ","), rest])


def bm25_params(query: str, tokens: list[str], k: int) -> dict[str, Any]:
    """The parameters of :func:`bm25_query`."""
    return {"query": query, "tokens": tokens, "k": k}


__all__ = ["bm25_params", "bm25_query"]
