"""Models behind small protocols: embedders (and later rerankers and generators)."""
