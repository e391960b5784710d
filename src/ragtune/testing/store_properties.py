"""The store-level ACL-leakage property, as a pytest mixin driven by hypothesis (needs the ``dev`` extra).

Whatever the corpus, its ACLs, a later re-permissioning, the principal, the query and ``k``: no search,
``get_chunks`` or ``readable_texts`` returns a chunk the principal may not read, and no top-k is starved of
readable chunks by unreadable competition (the ACL filter runs before ranking). Use it like the conformance
suite::

    class TestMyStoreAclLeakage(AclLeakagePropertyTest):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path)

The one store serves every example: each starts by deleting every document, so the backend's
``delete_documents`` must work (the conformance suite checks it).
"""

from __future__ import annotations

import re

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.core import Acl, Chunk, Principal
from ragtune.store.base import Store
from ragtune.testing.store import StoreTestBase, ids

# One distinctive, non-stop-word keyword per sentence: a lexical query for it matches exactly the chunks
# holding that sentence, under any reasonable analyzer (stemming leaves the query and text alike).
SENTENCES: dict[str, str] = {
    "backups": "Backups run nightly and are stored in two regions.",
    "records": "Customer records are kept for seven years.",
    "vacation": "Employees get 25 days of paid vacation per year.",
    "merger": "The merger with Initech closes next spring.",
    "euros": "Engineers earn between 90,000 and 150,000 euros.",
    "passwords": "Passwords must be rotated every ninety days.",
    "contracts": "Vendor contracts are reviewed by the legal team.",
    "incidents": "Security incidents are reported within 72 hours.",
}
USERS = ["ann", "bob", "carol"]
GROUPS = ["legal", "hr", "eng"]

acls = st.builds(
    Acl,
    users=st.frozensets(st.sampled_from(USERS), max_size=2),
    groups=st.frozensets(st.sampled_from(GROUPS), max_size=2),
    public=st.booleans(),
)
corpora = st.lists(st.tuples(st.lists(st.sampled_from(sorted(SENTENCES)), min_size=1, max_size=3), acls),
                   min_size=1, max_size=8)
principals = st.builds(Principal, user=st.sampled_from(USERS + ["mallory"]),
                       groups=st.frozensets(st.sampled_from(GROUPS), max_size=2))
# (document position, its new ACL), applied with set_acl after the write; None: no re-permissioning.
reacls = st.none() | st.tuples(st.integers(0, 7), acls)


def _chunks(corpus: list[tuple[list[str], Acl]]) -> list[Chunk]:
    out = []
    for d, (keywords, acl) in enumerate(corpus):
        for i, keyword in enumerate(keywords):
            text = SENTENCES[keyword]
            out.append(Chunk(
                chunk_id=f"d{d}-{i:05d}", doc_id=f"d{d}", source_path=f"/src/d{d}.md", title=f"Doc {d}",
                section_path=(), page=None, char_start=0, char_end=len(text), text=text, content_hash="",
                doc_hash=f"h{d}", mtime=0.0, acl=tuple(acl.tokens()), ordinal=i,
            ))
    return out


def _contains(text: str, keyword: str) -> bool:
    return keyword in re.findall(r"[a-z]+", text.lower())


class AclLeakagePropertyTest(StoreTestBase):
    """Nothing outside the principal's rights comes out of the store, and nothing readable is starved."""

    # differing_executors: the mixin's one test method runs under each backend's subclass (that is its purpose;
    # each class builds its own store, so no state crosses executors)
    @settings(max_examples=50, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.differing_executors])
    @given(corpus=corpora, reacl=reacls, principal=principals, keyword=st.sampled_from(sorted(SENTENCES)),
           k=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
    def test_no_store_query_returns_a_chunk_outside_the_principals_rights(
        self, store: Store, corpus: list[tuple[list[str], Acl]], reacl: tuple[int, Acl] | None,
        principal: Principal, keyword: str, k: int, seed: int,
    ) -> None:
        store.delete_documents([d.doc_id for d in store.documents()])  # one store serves every example
        assert store.count() == 0
        chunks = _chunks(corpus)
        store.replace_documents(sorted({c.doc_id for c in chunks}), chunks, self.vectors(chunks), synced_at=0.0)
        acl_of = {c.doc_id: c.acl for c in chunks}
        if reacl is not None and reacl[0] < len(corpus):
            doc_id = f"d{reacl[0]}"
            acl_of[doc_id] = tuple(reacl[1].tokens())
            store.set_acl(doc_id, acl_of[doc_id], synced_at=1.0)
        readable = {c.chunk_id for c in chunks if principal.can_read(acl_of[c.doc_id])}

        rng = np.random.default_rng(seed)
        query = rng.standard_normal(self.vector_dim).astype(np.float32)
        dense = ids(store.dense_search(query, principal, k))
        assert set(dense) <= readable and len(dense) == len(set(dense))
        assert len(dense) == min(k, len(readable))  # pre-filtered: top-k filled from readable chunks

        matching = {c.chunk_id for c in chunks if c.chunk_id in readable and _contains(c.text, keyword)}
        for isolated in (False, True):
            lexical = ids(store.lexical_search(keyword, principal, k, isolated=isolated))
            assert set(lexical) <= matching and len(lexical) == len(set(lexical))
            assert len(lexical) == min(k, len(matching))

        assert sorted(cid for cid, _ in store.readable_texts(principal)) == sorted(readable)
        assert set(store.get_chunks([c.chunk_id for c in chunks], principal)) == readable


__all__ = ["SENTENCES", "AclLeakagePropertyTest", "acls", "corpora", "principals"]
