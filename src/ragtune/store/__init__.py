"""Stores hold chunks, vectors and ACLs; every query runs with the ACL filter inside the store."""

from ragtune.store.base import DocRecord, Store

__all__ = ["DocRecord", "Store"]
