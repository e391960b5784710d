"""Haystack 2.x hybrid retrieval as a JSON-lines worker (runs in the peers venv; see jsonl_worker.py).

Haystack's documented hybrid pipeline: ``SentenceTransformersTextEmbedder`` -> ``InMemoryEmbeddingRetriever``
and ``InMemoryBM25Retriever`` (the store's default BM25L) over one ``InMemoryDocumentStore``, joined by
``DocumentJoiner(join_mode="reciprocal_rank_fusion")``. Documents are embedded once with
``SentenceTransformersDocumentEmbedder``; both embedders load the packaged MiniLM folder (sentence-transformers on
torch, CPU, local files only). Each corpus document is one ``Document`` with the orchestrator's text, unsplit.

Requests: ``init`` {model_dir, threads, candidates, top_k}; ``index`` {path} -> {seconds, documents};
``search`` {text} -> {ids, ms} (ms: the ``Pipeline.run()`` call only, query embedding included); ``quit``.
"""

from __future__ import annotations

import time
from typing import Any

from jsonl_worker import claim_stdout, elapsed_ms, go_offline, read_docs, serve, versions

go_offline()
PROTO = claim_stdout()  # before the frameworks are imported: their output goes to stderr
STATE: dict[str, Any] = {}


def init(msg: dict[str, Any]) -> dict[str, Any]:
    """Remember the model folder and depths; set torch's threads."""
    import torch

    torch.set_num_threads(int(msg["threads"]))
    STATE.update(model_dir=str(msg["model_dir"]), candidates=int(msg["candidates"]), top_k=int(msg["top_k"]))
    return {"versions": versions("haystack-ai", "sentence-transformers", "torch"),
            "threads": torch.get_num_threads()}


def index(msg: dict[str, Any]) -> dict[str, Any]:
    """Embed the corpus, write it to the in-memory store, build the query pipeline; seconds of all of it."""
    from haystack import Document, Pipeline
    from haystack.components.embedders import SentenceTransformersDocumentEmbedder, SentenceTransformersTextEmbedder
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice

    docs = read_docs(str(msg["path"]))
    device = ComponentDevice.from_str("cpu")
    model = STATE["model_dir"]
    t0 = time.perf_counter()
    store = InMemoryDocumentStore()
    doc_embedder = SentenceTransformersDocumentEmbedder(model=model, device=device, token=None, batch_size=32,
                                                        progress_bar=False, local_files_only=True)
    doc_embedder.warm_up()
    embedded = doc_embedder.run([Document(id=doc_id, content=text) for doc_id, text in docs])["documents"]
    store.write_documents(embedded)
    k = STATE["candidates"]
    pipe = Pipeline()
    pipe.add_component("text_embedder", SentenceTransformersTextEmbedder(
        model=model, device=device, token=None, progress_bar=False, local_files_only=True))
    pipe.add_component("embedding_retriever", InMemoryEmbeddingRetriever(document_store=store, top_k=k))
    pipe.add_component("bm25_retriever", InMemoryBM25Retriever(document_store=store, top_k=k))
    pipe.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=STATE["top_k"]))
    pipe.connect("text_embedder.embedding", "embedding_retriever.query_embedding")
    pipe.connect("bm25_retriever", "joiner")
    pipe.connect("embedding_retriever", "joiner")
    pipe.warm_up()
    STATE["pipe"] = pipe
    return {"seconds": time.perf_counter() - t0, "documents": len(embedded)}


def search(msg: dict[str, Any]) -> dict[str, Any]:
    """One query: ranked document ids and the milliseconds of ``Pipeline.run()``."""
    pipe = STATE.get("pipe")
    if pipe is None:
        raise RuntimeError("search before index")
    text = str(msg["text"])
    t0 = time.perf_counter()
    out = pipe.run({"text_embedder": {"text": text}, "bm25_retriever": {"query": text}})
    ms = elapsed_ms(t0)
    return {"ids": [d.id for d in out["joiner"]["documents"]], "ms": ms}


if __name__ == "__main__":
    raise SystemExit(serve({"init": init, "index": index, "search": search}, stdout=PROTO))
