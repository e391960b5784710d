"""BM25 in SQL over the chunks' terms, analysed exactly as the embedded store's full-text index analyses them.

PostgreSQL's own ``ts_rank`` is not BM25 (no document frequencies, no length normalisation against the
average), and ``to_tsvector('english', ...)`` is not Lance's analysis: its parser keeps hyphenated compounds,
URLs and file names whole besides their parts, and PostgreSQL's Snowball English stemmer is older than the one
Lance uses (PostgreSQL 15 stems *university* and *universe* alike, Lance does not). So the store does not let
PostgreSQL analyse text at all. Every chunk's ``search_text`` is analysed in Python by
:func:`ragtune.store.isolated_bm25.analyze_many` — the embedded store's analysis (Lance's simple tokenizer,
tokens under 40 bytes, lower case, Snowball English, Lance's stop list, ASCII folding) — and stored as a
``tsvector`` whose lexemes are those terms and whose positions 1..tf only count them (``terms``; at most 256
per term, PostgreSQL's limit), beside its number of terms (``doc_len``). Queries are analysed the same way.

Scoring is Lucene's BM25 as in the embedded store: k1 = 1.2, b = 0.75, scores scaled by k1 + 1, idf =
ln(1 + (N - df + 0.5) / (df + 0.5)), a term repeated in the query counting each time, chunks with no term
counting in neither N nor the average length.

- candidates: chunks whose ``terms`` match any query term (``terms @@ 'a' | 'b'``, the GIN index) *and* the
  principal's ACL filter, in the same statement, so ranking and ``LIMIT`` only ever see readable chunks; each
  candidate's tf of the query terms comes from ``ts_filter(setweight(terms, 'A', query terms), '{a}')`` (the
  query's lexemes only, never the whole tsvector unnested); ``terms`` is kept in the row (``STORAGE MAIN``), so
  a candidate costs no TOAST fetch;
- global statistics (``isolated=False``): N and the total length from ``lexical_stats`` and df per term from
  ``lexical_df`` (primary-key lookups), kept by statement-level triggers in every write's transaction, so a
  query never counts over the table; then MaxScore pruning (:func:`_global_search`) scores only the chunks
  that can still reach the top k — exactly the same top k, in one snapshot;
- ``isolated=True``: N and the average length summed over ``lexical_acl_stats``'s rows of the ACLs the
  principal's tokens overlap (one row per distinct ACL, kept by the same triggers), and df counted among the
  candidates (which are exactly the readable chunks holding a query term), so no score depends on unreadable
  text; no pruning (df needs every readable candidate).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from psycopg import Connection, sql

from ragtune.store.isolated_bm25 import K1, B, analyze, analyze_many

MAX_POSITIONS = 256  # PostgreSQL keeps at most this many positions per lexeme: tf is counted up to it
SEED_FACTOR = 2  # global mode's first pass scores the rarest terms' chunks until their df reaches this x k


def analyzer_id() -> str:
    """What made the stored terms: the analysis and the Snowball stemmer's version (a new stemmer may stem some
    words differently, and stored terms must match the query's)."""
    import Stemmer

    return f"lance-simple-snowball-english/pystemmer-{Stemmer.version()}"


def stored_analyzer(conn: Connection[Any], s: sql.Identifier, *, differing: bool = False) -> str | None:
    """The :func:`analyzer_id` that made schema ``s``'s stored terms; with ``differing``, None when it is this
    process's own."""
    row = conn.execute(sql.SQL("SELECT analyzer FROM {s}.lexical_stats").format(s=s)).fetchone()
    stored = None if row is None else str(row[0])
    return None if differing and stored == analyzer_id() else stored


def _quote(term: str) -> str:
    """A term as a quoted tsvector/tsquery lexeme (quotes and backslashes doubled)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def terms_tsvector(terms: Sequence[str]) -> str:
    """The ``tsvector`` input of a chunk's analysed terms: each distinct term with positions 1..tf."""
    counts = Counter(terms)
    return " ".join(f"{_quote(t)}:{','.join(map(str, range(1, min(n, MAX_POSITIONS) + 1)))}"
                    for t, n in sorted(counts.items()))


def chunk_terms(texts: Sequence[str]) -> list[tuple[str, int]]:
    """For each search text: (its ``terms`` tsvector input, its number of terms ``doc_len``)."""
    return [(terms_tsvector(terms), len(terms)) for terms in analyze_many(texts)]


def bm25_params(query: str, tokens: list[str], k: int) -> dict[str, Any] | None:
    """The query's analysed terms (sorted) with their counts and as a tsquery, the principal's ACL tokens and k;
    None when the query has no term (stop words only, say)."""
    counts = Counter(analyze(query))
    if not counts:
        return None
    terms = sorted(counts)
    return {"terms": terms, "qtf": [float(counts[t]) for t in terms], "tsq": " | ".join(map(_quote, terms)),
            "tokens": tokens, "k": k}


# A candidate's score: over the query's lexemes it holds (``hit``, positions counting tf), each term's weight
# (qtf x idf, looked up in the ``w`` arrays) times BM25's saturated, length-normalised tf.
_SCORE = """(SELECT sum(w.weights[array_position(w.terms, u.lexeme)] * cardinality(u.positions) * {k1_plus_1}
                    / (cardinality(u.positions) + {k1} * (1 - {b} + {b} * c.doc_len / {avgdl})))
            FROM unnest({hit}) u)"""

# Global mode, first: N, the total length and each query term's df, all kept by the triggers (no counting).
_GLOBAL_STATS = """
SELECT s.n, s.total_len, d.term, d.df FROM {s}.lexical_stats s
LEFT JOIN {s}.lexical_df d ON d.term = ANY(%(terms)s::text[])
"""

# Then the readable chunks holding any of %(tsq)s's terms, scored with every query term's weight (computed from
# the statistics above): each candidate is read once, through the GIN index, with the ACL filter.
_GLOBAL_SCORE = """
SELECT c.chunk_id, """ + _SCORE.format(hit="ts_filter(setweight(c.terms, 'A', w.terms), '{{a}}')",
                                      avgdl="%(avgdl)s::float8", k1="{k1}", b="{b}", k1_plus_1="{k1_plus_1}") + """
       AS score
FROM {s}.chunks c CROSS JOIN (SELECT %(terms)s::text[] AS terms, %(weights)s::float8[] AS weights) w
WHERE c.terms @@ %(tsq)s::tsquery AND c.acl && %(tokens)s::text[]
ORDER BY score DESC, c.chunk_id COLLATE "C"
LIMIT %(k)s
"""

# Isolated mode, one statement: N and the average length summed over the rows of the ACLs the principal's tokens
# overlap (kept by the triggers); df counted among the candidates, which are exactly the readable chunks holding
# a query term.
_ISOLATED = """
WITH stats AS MATERIALIZED (
    SELECT coalesce(sum(n), 0)::float8 AS n,
           CASE WHEN sum(n) > 0 THEN sum(total_len)::float8 / sum(n) ELSE 1 END AS avgdl
    FROM {s}.lexical_acl_stats WHERE acl && %(tokens)s::text[]
),
candidates AS MATERIALIZED (
    SELECT chunk_id, doc_len, ts_filter(setweight(terms, 'A', %(terms)s::text[]), '{{a}}') AS hit
    FROM {s}.chunks WHERE terms @@ %(tsq)s::tsquery AND acl && %(tokens)s::text[]
),
df AS (SELECT u.lexeme AS term, count(*)::float8 AS df FROM candidates c CROSS JOIN LATERAL unnest(c.hit) u
       GROUP BY u.lexeme),
w AS MATERIALIZED (
    SELECT array_agg(q.term ORDER BY q.term) AS terms,
           array_agg(q.qtf * ln(1 + (s.n - d.df + 0.5) / (d.df + 0.5)) ORDER BY q.term) AS weights
    FROM unnest(%(terms)s::text[], %(qtf)s::float8[]) AS q(term, qtf) JOIN df d ON d.term = q.term
    CROSS JOIN stats s
)
SELECT c.chunk_id, """ + _SCORE.format(hit="c.hit", avgdl="s.avgdl", k1="{k1}", b="{b}",
                                      k1_plus_1="{k1_plus_1}") + """ AS score
FROM candidates c CROSS JOIN w CROSS JOIN stats s
ORDER BY score DESC, c.chunk_id COLLATE "C"
LIMIT %(k)s
"""


def _statement(text: str, s: sql.Identifier) -> sql.Composed:
    return sql.SQL(text).format(s=s, k1=sql.SQL(f"{K1!r}::float8"), b=sql.SQL(f"{B!r}::float8"),
                                k1_plus_1=sql.SQL(f"{K1 + 1.0!r}::float8"))


def _run(conn: Connection[Any], statement: sql.Composed, params: dict[str, Any],
         plans: list[str] | None) -> list[tuple[Any, ...]]:
    """The statement's rows; with ``plans``, its EXPLAIN ANALYZE appended there first."""
    if plans is not None:
        rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement, params).fetchall()
        plans.append("\n".join(str(r[0]) for r in rows))
    return conn.execute(statement, params).fetchall()


def _hits(rows: list[tuple[Any, ...]]) -> list[tuple[str, float]]:
    return [(str(cid), float(score)) for cid, score in rows]


def search(conn: Connection[Any], s: sql.Identifier, query: str, tokens: list[str], k: int, *,
           isolated: bool, plans: list[str] | None = None) -> list[tuple[str, float]]:
    """The best ``k`` readable chunks for ``query``: (chunk id, BM25 score), best first, ties by chunk id.

    ``plans``: a list to append each executed statement's EXPLAIN ANALYZE to (each then runs twice).
    """
    params = bm25_params(query, tokens, k)
    if params is None or k <= 0:
        return []
    if isolated:
        return _hits(_run(conn, _statement(_ISOLATED, s), params, plans))
    with conn.transaction():  # one snapshot for the statistics and both scoring passes
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _global_search(conn, s, params, plans)


def _global_search(conn: Connection[Any], s: sql.Identifier, params: dict[str, Any],
                   plans: list[str] | None) -> list[tuple[str, float]]:
    """Global BM25 with MaxScore pruning (exact: the same top k as scoring every chunk holding a query term).

    Every chunk holding a query term is a candidate, and common terms make most of the corpus one. But a term
    adds less than its weight x (k1 + 1) to any chunk's score. So: first score the chunks holding the query's
    rarest terms (the highest bounds) until their df reaches ``SEED_FACTOR`` x k; the k-th best of those, theta,
    is a lower bound of the final k-th score. The terms of lowest bound whose bounds sum below theta cannot
    bring a chunk holding none of the others into the top k: only chunks holding one of the other terms need
    scoring, with every term's weight. When those terms are all among the first pass's, it is the answer.
    """
    k = int(params["k"])
    rows = _run(conn, _statement(_GLOBAL_STATS, s), params, plans)
    n, total = float(rows[0][0]), float(rows[0][1])
    df = {str(r[2]): float(r[3]) for r in rows if r[2] is not None}
    weights = {t: q * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
               for t, q in zip(params["terms"], params["qtf"], strict=True) if t in df}
    if not weights:
        return []
    terms = sorted(weights)
    base = {**params, "terms": terms, "weights": [weights[t] for t in terms], "avgdl": total / n if n > 0 else 1.0}
    statement = _statement(_GLOBAL_SCORE, s)

    def score(candidates: Sequence[str]) -> list[tuple[str, float]]:
        return _hits(_run(conn, statement, {**base, "tsq": " | ".join(map(_quote, candidates))}, plans))

    by_bound = sorted(terms, key=lambda t: (-weights[t], t))  # highest bound first
    seed: list[str] = []
    for t in by_bound:
        seed.append(t)
        if sum(df[x] for x in seed) >= SEED_FACTOR * k:
            break
    hits = score(seed)
    if len(seed) == len(by_bound):
        return hits
    theta = hits[-1][1] if len(hits) == k else 0.0
    essential = list(by_bound)
    bound = 0.0
    while len(essential) > 1:
        bound += weights[essential[-1]] * (K1 + 1.0)
        if bound >= theta * (1 - 1e-9):  # a margin for float rounding; the true bound is looser still
            break
        essential.pop()
    if set(essential) <= set(seed):
        return hits
    return score(essential)


def explain(conn: Connection[Any], s: sql.Identifier, query: str, tokens: list[str], k: int, *, isolated: bool) -> str:
    """PostgreSQL's plans of :func:`search`'s statements with actual row counts and times (EXPLAIN ANALYZE), in
    the order they ran, each headed ``-- statement N``: the global mode's statistics, then its one or two
    scoring passes; the isolated mode's one statement."""
    plans: list[str] = []
    search(conn, s, query, tokens, k, isolated=isolated, plans=plans)
    if not plans:
        return "(the query has no term: nothing is run)"
    return "\n".join(f"-- statement {i}\n{plan}" for i, plan in enumerate(plans, 1))


def rebuild(conn: Connection[Any], s: sql.Identifier, batch_size: int = 2000) -> int:
    """Inside a transaction: analyse every chunk's search text again (rewriting only the rows whose terms
    change), then :func:`recount` the statistics; returns the number of chunks. Run by migration 2 and by
    :meth:`~ragtune.store.postgres.PostgresStore.rebuild_lexical` (after a stemmer upgrade)."""
    update = sql.SQL("""UPDATE {s}.chunks c SET terms = v.terms::tsvector, doc_len = v.doc_len
                        FROM unnest(%s::text[], %s::text[], %s::integer[]) AS v(chunk_id, terms, doc_len)
                        WHERE c.chunk_id = v.chunk_id
                          AND (c.terms <> v.terms::tsvector OR c.doc_len <> v.doc_len)""").format(s=s)
    done = 0
    with conn.cursor(name="ragtune_lexical_rebuild") as cur:
        cur.itersize = batch_size
        cur.execute(sql.SQL("SELECT chunk_id, search_text FROM {s}.chunks").format(s=s))
        while rows := cur.fetchmany(batch_size):
            analysed = chunk_terms([str(r[1]) for r in rows])
            conn.execute(update, [[r[0] for r in rows], [a[0] for a in analysed], [a[1] for a in analysed]])
            done += len(rows)
    recount(conn, s)
    return done


def recount(conn: Connection[Any], s: sql.Identifier) -> None:
    """Inside a transaction: ``lexical_df``, ``lexical_acl_stats`` and ``lexical_stats`` (with the analyser's id)
    recomputed from the stored terms."""
    for statement in (
        "DELETE FROM {s}.lexical_df",
        "DELETE FROM {s}.lexical_acl_stats",
        """INSERT INTO {s}.lexical_acl_stats (acl, n, total_len)
           SELECT acl, count(*) FILTER (WHERE doc_len > 0), sum(doc_len) FROM {s}.chunks GROUP BY acl
           HAVING sum(doc_len) > 0""",
        """INSERT INTO {s}.lexical_df (term, df)
           SELECT u.lexeme, count(*) FROM {s}.chunks c CROSS JOIN LATERAL unnest(c.terms) u GROUP BY u.lexeme""",
        """UPDATE {s}.lexical_stats SET n = (SELECT count(*) FROM {s}.chunks WHERE doc_len > 0),
                                        total_len = (SELECT coalesce(sum(doc_len), 0) FROM {s}.chunks),
                                        analyzer = %s""",
    ):
        conn.execute(sql.SQL(statement).format(s=s), [analyzer_id()] if "%s" in statement else None)


__all__ = ["MAX_POSITIONS", "SEED_FACTOR", "analyzer_id", "bm25_params", "chunk_terms", "explain", "rebuild",
           "recount", "search", "stored_analyzer", "terms_tsvector"]
