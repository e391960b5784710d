"""A small real corpus with overlapping ACLs and the principals and questions the cache tests ask with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import write

from ragtune.config import CacheSettings, init_project
from ragtune.core import Acl, Answer, Principal
from ragtune.models.embedder import Embedder
from ragtune.project import Project

DOCS = {
    "handbook.md": ("public", "# Employee handbook\n\nEmployees get 25 days of paid vacation per year. "
                              "Remote work is allowed two days a week.\n"),
    "hr/salaries.md": ("{groups: [hr]}", "# Salary bands\n\nEngineers earn between 90,000 and 150,000 euros "
                                         "depending on level. Vacation days can be sold back at the daily rate.\n"),
    "legal/retention.md": ("{groups: [legal]}", "# Retention\n\nCustomer records are kept for seven years after "
                                                "the account closes. Backups are deleted after 90 days.\n"),
    "legal/vendors.md": ("{groups: [legal, hr]}", "# Vendor contracts\n\nEvery vendor contract must be reviewed "
                                                  "by the legal team before signature.\n"),
    "staff/parking.md": ("{groups: [Staff]}", "# Parking\n\nStaff park in garage B; the parking pass costs 40 "
                                              "euros a month.\n"),
    "carol/review.md": ("{users: [carol]}", "# Carol's review\n\nCarol's vacation request for August was "
                                            "approved; her salary review is in March.\n"),
}

PRINCIPALS = [
    Principal("ann"),                                # public only
    Principal("bob", frozenset({"hr"})),
    Principal("hank", frozenset({"hr"})),            # the same effective tokens as bob
    Principal("lena", frozenset({"legal"})),
    Principal("mia", frozenset({"hr", "legal"})),    # overlaps bob and lena
    Principal("sam", frozenset({"staff"})),          # another letter case: reads what ann reads
    Principal("sara", frozenset({"Staff"})),
    Principal("carol"),                              # named on one document
    Principal("dave", frozenset({"ops"})),           # a group no document names: same as ann
]

QUESTIONS = [
    "How many vacation days do employees get?",
    "How much do engineers earn?",
    "How long are customer records kept?",
    "Who reviews vendor contracts?",
    "Where does staff park?",
    "When is Carol's salary review?",
    "Can vacation days be sold?",
    "When are backups deleted?",
]


def write_corpus(root: Path) -> Path:
    """The documents of ``DOCS`` under ``root/docs``, ACLs in front matter."""
    docs = root / "docs"
    for name, (acl, body) in DOCS.items():
        write(docs / name, f"---\nacl: {acl}\n---\n{body}")
    return docs


def make_projects(root: Path, embedder: Embedder, **cache: Any) -> tuple[Project, Project]:
    """(cached, uncached) projects over one real index of ``DOCS`` ingested under ``root``."""
    docs = write_corpus(root)
    init_project(root / "p")
    plain = Project.open(root / "p")
    plain = Project(plain.settings, embedder=embedder)
    plain.ingest(docs, Acl())
    settings = plain.settings.model_copy(update={"cache": CacheSettings(enabled=True, **cache)})
    return Project(settings, embedder=embedder), plain


def view(answer: Answer) -> tuple[Any, ...]:
    """Everything of an answer a principal sees, except timings and the question echo."""
    return (answer.text, answer.abstained, answer.flags,
            tuple((c.number, c.chunk.chunk_id, c.snippet, c.chunk.text) for c in answer.citations),
            tuple((h.chunk.chunk_id, h.chunk.text, round(h.score, 6)) for h in answer.hits))


def readable_only(answer: Answer, principal: Principal) -> bool:
    """Whether every cited and retrieved chunk is one ``principal`` may read."""
    return all(principal.can_read(c.chunk.acl) for c in answer.citations) and all(
        principal.can_read(h.chunk.acl) for h in answer.hits)
