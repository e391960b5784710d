"""LlamaIndex hybrid retrieval as a JSON-lines worker (runs in the peers venv; see jsonl_worker.py).

LlamaIndex's documented hybrid recipe: a ``BM25Retriever`` (bm25s, English stemmer and stop words) and a
``VectorStoreIndex`` retriever over the same nodes, fused by ``QueryFusionRetriever(mode="reciprocal_rerank",
num_queries=1)`` (reciprocal rank fusion, k 60, no generated queries, so no LLM is ever called). Each corpus
document becomes one ``TextNode`` with the orchestrator's text (no node parser: nothing is split; the embedder
truncates at its 256-token window). The embedder is the packaged MiniLM folder through
``HuggingFaceEmbedding`` (sentence-transformers on torch, CPU).

Requests: ``init`` {model_dir, threads, candidates, top_k}; ``index`` {path} -> {seconds, documents};
``search`` {text} -> {ids, ms} (ms: the ``retrieve()`` call only); ``quit``.
"""

from __future__ import annotations

import time
from typing import Any

from jsonl_worker import claim_stdout, elapsed_ms, go_offline, read_docs, serve, versions

go_offline()
PROTO = claim_stdout()  # before the frameworks are imported: their output goes to stderr
STATE: dict[str, Any] = {}


def init(msg: dict[str, Any]) -> dict[str, Any]:
    """Remember the model folder and the retrieval depths; set torch's threads."""
    import torch

    torch.set_num_threads(int(msg["threads"]))
    STATE.update(model_dir=str(msg["model_dir"]), candidates=int(msg["candidates"]), top_k=int(msg["top_k"]))
    return {"versions": versions("llama-index-core", "llama-index-retrievers-bm25",
                                 "llama-index-embeddings-huggingface", "bm25s", "sentence-transformers", "torch"),
            "threads": torch.get_num_threads()}


def index(msg: dict[str, Any]) -> dict[str, Any]:
    """Load the embedder, embed and BM25-index the corpus; seconds of all of it."""
    import Stemmer
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.retrievers.bm25 import BM25Retriever

    docs = read_docs(str(msg["path"]))
    t0 = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=STATE["model_dir"], device="cpu", embed_batch_size=32,
                                 local_files_only=True)
    Settings.embed_model = embed
    nodes = [TextNode(text=text, id_=doc_id) for doc_id, text in docs]
    vector_index = VectorStoreIndex(nodes, embed_model=embed)
    k = min(STATE["candidates"], len(nodes))
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k, stemmer=Stemmer.Stemmer("english"),
                                       language="english")
    # use_async=False: the two retrievers run one after the other in this thread (the recipe's asyncio
    # variant runs the same synchronous code on an event loop).
    STATE["retriever"] = QueryFusionRetriever(
        [vector_index.as_retriever(similarity_top_k=k), bm25], llm=MockLLM(), mode="reciprocal_rerank",
        similarity_top_k=STATE["top_k"], num_queries=1, use_async=False,
    )
    return {"seconds": time.perf_counter() - t0, "documents": len(nodes)}


def search(msg: dict[str, Any]) -> dict[str, Any]:
    """One query: ranked node ids and the milliseconds of ``retrieve()``."""
    retriever = STATE.get("retriever")
    if retriever is None:
        raise RuntimeError("search before index")
    t0 = time.perf_counter()
    hits = retriever.retrieve(str(msg["text"]))
    ms = elapsed_ms(t0)
    return {"ids": [h.node.node_id for h in hits], "ms": ms}


if __name__ == "__main__":
    raise SystemExit(serve({"init": init, "index": index, "search": search}, stdout=PROTO))
