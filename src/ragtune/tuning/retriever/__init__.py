"""Retrieval that learns the user's corpus: training pairs generated from the index itself (no labels), a
bi-encoder fine-tuned from the packaged MiniLM on them, served as the project's embedder
(``embedder.model: registry:NAME``) once ``ragtune reindex`` has re-embedded the index with it.

Modules: :mod:`.corpus` (reading every stored chunk by ACL), :mod:`.pairs` (pairs and hard negatives, never
across ACLs), :mod:`.biencoder` (training, held-out check, registration), :mod:`.tuned` (the served embedder),
:mod:`.cli` (``ragtune tune retriever``, ``ragtune reindex``). The re-embedding itself is
:mod:`ragtune.index_reembed`.
"""
