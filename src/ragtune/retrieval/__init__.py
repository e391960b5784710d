"""Hybrid retrieval: BM25 and dense search (each ACL-filtered inside the store), fused by RRF."""
