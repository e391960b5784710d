"""Every stored chunk, read through the Store protocol one ACL at a time (its text is only returned to a
principal who may read it), and the principal that stands for one ACL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragtune.core import PUBLIC_TOKEN, Chunk, Principal
from ragtune.store.base import Store

MINING_USER = "ragtune-corpus"
"""The user name of the principals built for an ACL (only results whose ACL equals that ACL are kept, so the
name never widens what is used)."""

FETCH_BATCH = 500  # ids per get_chunks query


def acl_principal(acl: Sequence[str]) -> Principal | None:
    """A principal holding the tokens of ``acl`` (its first user, all its groups), or None for the empty ACL,
    which nobody reads. It may read more than chunks of exactly ``acl`` (every principal reads ``public``):
    callers keep only results whose ACL equals ``acl``."""
    users = sorted(t.split(":", 1)[1] for t in acl if t.startswith("user:"))
    groups = frozenset(t.split(":", 1)[1] for t in acl if t.startswith("group:"))
    if not users and not groups and PUBLIC_TOKEN not in acl:
        return None
    return Principal(users[0] if users else MINING_USER, groups)


@dataclass
class StoredCorpus:
    """The chunks of a store, by id, and the ids of chunks nobody may read (their text is never returned)."""

    chunks: dict[str, Chunk] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    doc_ids_unreadable: set[str] = field(default_factory=set)

    def by_acl(self) -> dict[tuple[str, ...], list[Chunk]]:
        """Chunks grouped by their exact (sorted) ACL."""
        out: dict[tuple[str, ...], list[Chunk]] = defaultdict(list)
        for c in self.chunks.values():
            out[acl_key(c.acl)].append(c)
        return dict(out)


def acl_key(acl: Sequence[str]) -> tuple[str, ...]:
    """An ACL as a comparable key: its distinct tokens, sorted."""
    return tuple(sorted(set(acl)))


def read_corpus(store: Store) -> StoredCorpus:
    """Every chunk of ``store``: ids and ACLs from ``chunk_index``, texts with ``get_chunks`` as the principal of
    each ACL (the store's ACL filter stays in every query). Chunks with an empty ACL are listed, not read."""
    ids_by_acl: dict[tuple[str, ...], list[str]] = defaultdict(list)
    corpus = StoredCorpus()
    for row in store.chunk_index():
        key = acl_key(row.acl)
        if acl_principal(key) is None:
            corpus.unreadable.append(row.chunk_id)
            corpus.doc_ids_unreadable.add(row.doc_id)
        else:
            ids_by_acl[key].append(row.chunk_id)
    for key, ids in sorted(ids_by_acl.items()):
        principal = acl_principal(key)
        assert principal is not None
        for start in range(0, len(ids), FETCH_BATCH):
            got = store.get_chunks(ids[start : start + FETCH_BATCH], principal)
            corpus.chunks.update({cid: c for cid, c in got.items() if acl_key(c.acl) == key})
    return corpus
