"""Tune hybrid fusion (and chunk size) on the SciFact TRAIN split only, then report the pick on test once.

Protocol: every candidate is scored on ``qrels/train.tsv``; the best by train nDCG@10 (ties: recall@100) is
chosen without looking at test; then the chosen configuration and ragtune's default are each run once on
``qrels/test.tsv`` through the real :class:`~ragtune.retrieval.hybrid.HybridRetriever`. Nothing in ``src/``
changes: a better configuration is a recommendation, printed with its train and test numbers.

The grid is evaluated on the candidate lists of the store's own ``lexical_search`` / ``dense_search``
(fetched once per query) fused with ragtune's own ``reciprocal_rank_fusion``, exactly as HybridRetriever
fuses them; the chosen point is then re-run through HybridRetriever itself to confirm.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_tune.py [--max-tokens 256]
        [--overlap 32]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    clear_embedding_cache,
    dedupe,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    ndcg_at_k,
    recall_at_k,
    write_row,
)
from scifact_retrieval import CANDIDATES, ensure_index, run_queries  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.fusion import reciprocal_rank_fusion  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402

RRF_KS = [1, 2, 5, 10, 15, 20, 30, 40, 60, 100]
LEXICAL_WEIGHTS = [0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0]  # dense weight fixed at 1
DEPTHS = [100, 200]  # candidates per side
TUNE_SECTION = "SciFact tuning (chosen on train, reported once on test)"
TUNE_COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_tune.py"


def candidate_lists(
    store: LanceStore, embedder: MiniLMEmbedder, queries: Sequence[tuple[str, str]], principal: Principal,
    k: int,
) -> dict[str, tuple[list[str], list[str]]]:
    """Query id -> (lexical chunk ids, dense chunk ids), best first, ``k`` each."""
    vecs = embedder.embed([t for _, t in queries])
    out: dict[str, tuple[list[str], list[str]]] = {}
    for (qid, text), vec in zip(queries, vecs, strict=True):
        lex = [c for c, _ in store.lexical_search(text, principal, k)]
        den = [c for c, _ in store.dense_search(vec, principal, k)]
        out[qid] = (lex, den)
    return out


def score(
    lists: dict[str, tuple[list[str], list[str]]], chunk_doc: dict[str, str], qrels: dict[str, dict[str, int]],
    rrf_k: int, w_lex: float, w_dense: float, depth: int, doc_level: bool = False,
) -> tuple[float, float]:
    """Mean nDCG@10 and recall@100 over the queries for one fusion setting (documents at their best chunk).

    ``doc_level`` collapses each list to documents (best chunk) *before* fusing, so a document whose BM25
    and dense evidence sit in different chunks still gets both; HybridRetriever fuses chunks (the default).
    """
    nd, rc = 0.0, 0.0
    for qid, (lex, den) in lists.items():
        # A side with weight 0 is not searched at all by HybridRetriever, so it must not pad the ranking.
        lex, den = (lex if w_lex > 0 else []), (den if w_dense > 0 else [])
        if doc_level:
            lex_d = dedupe(chunk_doc[c] for c in lex[:depth])
            den_d = dedupe(chunk_doc[c] for c in den[:depth])
            ranked = [d for d, _ in reciprocal_rank_fusion([lex_d, den_d], k=rrf_k, weights=[w_lex, w_dense])]
        else:
            fused = reciprocal_rank_fusion([lex[:depth], den[:depth]], k=rrf_k, weights=[w_lex, w_dense])
            ranked = dedupe(chunk_doc[c] for c, _ in fused)
        nd += ndcg_at_k(ranked, qrels[qid], 10)
        rc += recall_at_k(ranked, qrels[qid], 100)
    return nd / len(lists), rc / len(lists)


def main(argv: Sequence[str] | None = None) -> int:
    """Grid on train, pick, confirm through HybridRetriever, report test once."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=256, help="Syncer chunk budget for the index variant")
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)

    default_variant = (args.max_tokens, args.overlap) == (256, 32)
    root = cache_dir("scifact" if default_variant else f"scifact-t{args.max_tokens}-o{args.overlap}")
    embedder = MiniLMEmbedder(batch_size=32, threads=2)
    info = ensure_index(root, load_scifact_corpus(), embedder, max_tokens=args.max_tokens,
                        overlap_tokens=args.overlap)
    store = info.store
    emit("tune.index", root=str(root), documents=info.documents, chunks=info.chunks, **info.fingerprint)
    chunk_doc: dict[str, str] = {}
    for d in store.documents():
        stem = Path(d.source_path).stem
        for i in range(d.chunks):
            chunk_doc[f"{d.doc_id}-{i:05d}"] = stem

    principal = Principal("bench")
    queries_all = load_scifact_queries()
    train = load_scifact_qrels("train")
    train_q = [(q, queries_all[q]) for q in sorted(train, key=lambda q: (len(q), q))]
    lists = candidate_lists(store, embedder, train_q, principal, max(DEPTHS))

    grid = []
    for depth in DEPTHS:
        for side, (w_lex, w_dense) in (("bm25", (1.0, 0.0)), ("dense", (0.0, 1.0))):
            nd, rc = score(lists, chunk_doc, train, 20, w_lex, w_dense, depth)
            emit("tune.train", variant=root.name, depth=depth, config=side, ndcg10=round(nd, 4),
                 recall100=round(rc, 4))
        for rrf_k, w_lex in itertools.product(RRF_KS, LEXICAL_WEIGHTS):
            nd, rc = score(lists, chunk_doc, train, rrf_k, w_lex, 1.0, depth)
            grid.append((nd, rc, rrf_k, w_lex, depth))
            emit("tune.train", variant=root.name, depth=depth, rrf_k=rrf_k, w_lex=w_lex, w_dense=1.0,
                 ndcg10=round(nd, 4), recall100=round(rc, 4))
    best = max(grid, key=lambda g: (round(g[0], 4), round(g[1], 4)))
    dflt = next(g for g in grid if g[2] == 20 and g[3] == 1.0 and g[4] == CANDIDATES)
    emit("tune.best_on_train", variant=root.name, rrf_k=best[2], w_lex=best[3], depth=best[4],
         ndcg10=round(best[0], 4), recall100=round(best[1], 4), default_ndcg10=round(dflt[0], 4),
         default_recall100=round(dflt[1], 4))

    # Not a HybridRetriever setting (a code change): fuse documents instead of chunks. Train grid, then test.
    doc_grid = []
    for rrf_k, w_lex in itertools.product(RRF_KS, LEXICAL_WEIGHTS):
        nd, rc = score(lists, chunk_doc, train, rrf_k, w_lex, 1.0, CANDIDATES, doc_level=True)
        doc_grid.append((nd, rc, rrf_k, w_lex))
        emit("tune.train_docfuse", variant=root.name, depth=CANDIDATES, rrf_k=rrf_k, w_lex=w_lex,
             ndcg10=round(nd, 4), recall100=round(rc, 4))
    dbest = max(doc_grid, key=lambda g: (round(g[0], 4), round(g[1], 4)))
    test = load_scifact_qrels("test")
    test_q = [(q, queries_all[q]) for q in sorted(test, key=lambda q: (len(q), q))]
    test_lists = candidate_lists(store, embedder, test_q, principal, CANDIDATES)
    for name, (rrf_k, w_lex) in (("docfuse_k20_w1", (20, 1.0)), ("docfuse_best_on_train", dbest[2:])):
        tr = score(lists, chunk_doc, train, rrf_k, w_lex, 1.0, CANDIDATES, doc_level=True)
        te = score(test_lists, chunk_doc, test, rrf_k, w_lex, 1.0, CANDIDATES, doc_level=True)
        emit("tune.docfuse", variant=root.name, pick=name, rrf_k=rrf_k, w_lex=w_lex,
             train_ndcg10=round(tr[0], 4), train_recall100=round(tr[1], 4), test_ndcg10=round(te[0], 4),
             test_recall100=round(te[1], 4))

    # Confirm through the real retriever, then test once for the pick and for the default.
    picks = {
        "default": HybridRetriever(store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES,
                                   dense_k=CANDIDATES),
        "best_on_train": HybridRetriever(store, embedder, top_k=2 * best[4], lexical_k=best[4],
                                         dense_k=best[4], rrf_k=best[2], lexical_weight=best[3],
                                         dense_weight=1.0),
    }
    for name, retriever in picks.items():
        scores: dict[str, tuple[float, float]] = {}
        for split, qs, qrels in (("train", train_q, train), ("test", test_q, test)):
            clear_embedding_cache()
            s = run_queries(name, retriever, qs, qrels, principal).summary()
            scores[split] = (s["ndcg@10"], s["recall@100"])
            emit("tune.confirm", variant=root.name, pick=name, split=split, rrf_k=retriever.rrf_k,
                 w_lex=retriever.lexical_weight, depth=retriever.lexical_k, ndcg10=s["ndcg@10"],
                 recall100=s["recall@100"], p50_ms=s["p50_ms"])
        if not args.no_docs:
            record(args.max_tokens, args.overlap, info.chunks, name, retriever.rrf_k, retriever.lexical_weight,
                   retriever.lexical_k, scores["train"], scores["test"])
    return 0


def record(
    max_tokens: int, overlap: int, chunks: int, pick: str, rrf_k: int, w_lex: float, depth: int,
    train: tuple[float, float], test: tuple[float, float],
) -> None:
    """Insert or replace one row of the tuning table in docs/benchmarks.md."""
    what = "HybridRetriever default fusion" if pick == "default" else "fusion best on train"
    key = f"{max_tokens}-token chunks ({overlap} overlap), {what}: RRF k {rrf_k}, weights {w_lex:g}/1, {depth}/side"
    header = ["configuration", "chunks", "train nDCG@10", "train recall@100", "test nDCG@10", "test recall@100"]
    intro = (
        "Chosen on SciFact train (809 queries, `qrels/train.tsv`) only; each pick is then run once on test. "
        f"Fusion grid: RRF k in {RRF_KS}, lexical weight in {LEXICAL_WEIGHTS} (dense 1), {DEPTHS} candidates "
        "per side, scored on the store's own candidate lists with ragtune's `reciprocal_rank_fusion`; every "
        "row below is then re-run through `HybridRetriever`. Chunk size is a `Syncer` setting (a separate "
        "index per value, `--max-tokens N`); budgets above the embedder's 256-token window are clamped to it "
        "since chunks became window-aware, so 512-token chunks are no longer a separate configuration."
    )
    write_row(
        TUNE_SECTION, key,
        f"| {key} | {chunks} | {train[0]:.4f} | {train[1]:.3f} | {test[0]:.4f} | {test[1]:.3f} |",
        header=header, command=TUNE_COMMAND, intro=intro,
    )


if __name__ == "__main__":
    raise SystemExit(main())
