"""Every way a document could get the wrong ACL or outlive its file (issue 10), each reproduced on real folders.

All run through :class:`Project` (real LanceDB, real MiniLM) and check what a principal can actually read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import write

from ragtune.config import init_project
from ragtune.core import Acl, Principal
from ragtune.errors import LockedError, RagtuneError
from ragtune.project import Project
from ragtune.store.lance import LanceStore

ANYONE = Principal("mallory")
HR = Principal("hana", frozenset({"hr"}))
LEGAL = Principal("lee", frozenset({"legal"}))


def project(tmp_path: Path, **ingest: object) -> Project:
    folder = tmp_path / "proj"
    init_project(folder)
    if ingest:
        text = (folder / "ragtune.yaml").read_text()
        for key, value in ingest.items():
            text = text.replace(f"  {key}: false", f"  {key}: {str(value).lower()}")
        (folder / "ragtune.yaml").write_text(text)
    return Project.open(folder)


def readable(proj: Project, principal: Principal, query: str) -> set[str]:
    """Names of the documents ``principal`` retrieves for ``query`` whose text holds the query's first word."""
    word = query.split()[0].lower()
    hits = proj.search(query, principal, top_k=50).hits
    return {Path(h.chunk.source_path).name for h in hits if word in h.chunk.text.lower()}


def acl_of(proj: Project, name: str) -> tuple[str, ...]:
    docs = [d for d in proj.sources() if Path(d.source_path).name == name]
    assert len(docs) == 1, docs
    return docs[0].acl


def assert_unique_chunk_ids(proj: Project) -> None:
    ids = [r.chunk_id for r in proj.store.chunk_index()]
    assert len(ids) == len(set(ids))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write(root / "hr" / "_acl.yaml", "groups: [hr]\n")
    write(root / "hr" / "salaries.md", "# Salaries\n\nThe zebrafish bonus pool is 40,000 euros this year.\n")
    write(root / "pub" / "_acl.yaml", "public\n")
    write(root / "pub" / "welcome.md", "# Welcome\n\nThe canteen opens at eight every weekday morning.\n")
    return root


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_link_to_a_restricted_file_keeps_the_files_own_acl(tmp_path: Path, corpus: Path) -> None:
    (corpus / "pub" / "link.md").symlink_to(Path("..") / "hr" / "salaries.md")
    proj = project(tmp_path)
    report = proj.ingest(corpus, Acl(public=True))
    assert report.ingested == 2 and not report.failed
    assert acl_of(proj, "salaries.md") == ("group:hr",)
    assert_unique_chunk_ids(proj)
    assert readable(proj, ANYONE, "zebrafish bonus") == set()
    assert readable(proj, HR, "zebrafish bonus") == {"salaries.md"}
    for _ in range(2):  # the ACL never flips between syncs
        (report_,) = [r for _, r in proj.sync()]
        assert report_.reacl == 0 and report_.unchanged == 2
        assert acl_of(proj, "salaries.md") == ("group:hr",)


def test_a_sub_folder_or_single_file_ingest_honours_acl_files_above(tmp_path: Path, corpus: Path) -> None:
    proj = project(tmp_path)
    proj.ingest(corpus / "hr" / "salaries.md", Acl(public=True))
    assert acl_of(proj, "salaries.md") == ("group:hr",)
    assert readable(proj, ANYONE, "zebrafish bonus") == set()
    # Ingesting the folder that holds that root absorbs it (same default): one root, one ACL.
    proj.ingest(corpus, Acl(public=True))
    assert list(proj.roots()) == [corpus.resolve()]
    assert acl_of(proj, "salaries.md") == ("group:hr",)


def test_a_sub_folder_cannot_get_a_second_default(tmp_path: Path, corpus: Path) -> None:
    write(corpus / "misc" / "note.md", "# Note\n\nThe parking garage closes at midnight.\n")
    proj = project(tmp_path)
    proj.ingest(corpus, Acl(groups=frozenset({"staff"})))
    with pytest.raises(RagtuneError, match="is inside .* ingested with --acl group:staff"):
        proj.ingest(corpus / "misc", Acl(public=True))
    assert acl_of(proj, "note.md") == ("group:staff",)
    report = proj.ingest(corpus / "misc")  # without --acl: syncs that part of the root, with its default
    assert report.unchanged == 1 and list(proj.roots()) == [corpus.resolve()]


@pytest.mark.parametrize(
    ("where", "content"),
    [("acl_file", "{group: [legal]}\n"), ("front_matter", "---\nacl: {group: [legal]}\n---\n# P\n\nPolicy text.\n"),
     ("front_matter", "---\nACL: {groups: [legal]}\n---\n# P\n\nPolicy text.\n")],
    ids=["acl-file-typo", "front-matter-typo", "front-matter-near-miss-key"],
)
def test_a_broken_acl_edit_makes_the_document_readable_by_nobody(tmp_path: Path, where: str, content: str) -> None:
    root = tmp_path / "docs"
    write(root / "_acl.yaml", "public\n")
    write(root / "policy.md", "# Policy\n\nThe quokka retention period is twelve months.\n")
    proj = project(tmp_path)
    proj.ingest(root)
    assert readable(proj, ANYONE, "quokka retention") == {"policy.md"}
    if where == "acl_file":
        write(root / "_acl.yaml", content)
    else:
        write(root / "policy.md", content)
    (_, report), = proj.sync()
    assert report.failed and report.locked_out == [str((root / "policy.md").resolve())]
    assert acl_of(proj, "policy.md") == ()
    assert readable(proj, ANYONE, "quokka retention policy") == set()
    assert readable(proj, LEGAL, "quokka retention policy") == set()


def test_an_unreadable_file_keeps_no_wider_acl_than_its_folder_gives_now(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "_acl.yaml", "public\n")
    write(root / "a.md", "# A\n\nThe axolotl budget is small.\n")
    proj = project(tmp_path)
    proj.ingest(root)
    write(root / "_acl.yaml", "groups: [legal]\n")
    (root / "a.md").write_bytes(b"\x00\x01 now binary")
    (_, report), = proj.sync()
    assert report.failed and acl_of(proj, "a.md") == ("group:legal",)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_links_out_of_the_roots_are_not_followed_unless_allowed(tmp_path: Path, corpus: Path) -> None:
    secret = write(tmp_path / "outside" / "secret.md", "# Secret\n\nThe platypus merger closes in May.\n")
    (corpus / "pub" / "leak.md").symlink_to(secret)
    (corpus / "pub" / "dir").symlink_to(secret.parent, target_is_directory=True)
    proj = project(tmp_path)
    report = proj.ingest(corpus, Acl(public=True))
    assert {Path(p).name for p, _ in report.skipped} == {"leak.md", "dir"}
    assert "secret.md" not in {Path(d.source_path).name for d in proj.sources()}

    allowed = project(tmp_path / "second", follow_external_links=True)
    allowed.ingest(corpus, Acl(public=True))
    # Reached through pub/ (public), but once through each link: one document, stored at a link's path.
    docs = [d for d in allowed.sources() if d.source_path.startswith(str(corpus.resolve() / "pub"))
            and d.title == "Secret"]
    assert len(docs) == 1 and docs[0].acl == ("public",)
    assert_unique_chunk_ids(allowed)
    (corpus / "pub" / "leak.md").unlink()
    (corpus / "pub" / "dir").unlink()
    allowed.sync()
    assert all(d.title != "Secret" for d in allowed.sources())  # removable: gone with its links


def test_a_missing_root_is_reported_and_the_others_still_sync(tmp_path: Path, corpus: Path) -> None:
    other = tmp_path / "other"
    write(other / "x.md", "---\nacl: public\n---\n# X\n\nThe narwhal handbook is online.\n")
    proj = project(tmp_path)
    proj.ingest(corpus, Acl(public=True))
    proj.ingest(other)
    for p in sorted(corpus.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    corpus.rmdir()
    write(other / "y.md", "---\nacl: public\n---\n# Y\n\nThe dugong policy is new.\n")
    results = dict(proj.sync())
    assert results[corpus.resolve()].failed and results[corpus.resolve()].deleted == 2
    assert results[other.resolve()].ingested == 1
    assert readable(proj, HR, "zebrafish bonus") == set()
    assert {Path(d.source_path).name for d in proj.sources()} == {"x.md", "y.md"}
    assert proj.remove_root(corpus) == 0 and list(proj.roots()) == [other.resolve()]


def test_keep_missing_roots_keeps_documents_and_says_so(tmp_path: Path, corpus: Path) -> None:
    proj = project(tmp_path, keep_missing_roots=True)
    proj.ingest(corpus)
    corpus.rename(tmp_path / "moved")
    (_, report), = proj.sync()
    assert "kept" in report.failed[0][1] and report.deleted == 0
    assert readable(proj, HR, "zebrafish bonus") == {"salaries.md"}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_link_loops_fifos_and_devices_are_reported_and_the_sync_finishes(tmp_path: Path, corpus: Path) -> None:
    (corpus / "pub" / "a.md").symlink_to(corpus / "pub" / "b.md")
    (corpus / "pub" / "b.md").symlink_to(corpus / "pub" / "a.md")
    (corpus / "pub" / "zero.md").symlink_to("/dev/zero")
    os.mkfifo(corpus / "pub" / "pipe.md")
    (corpus / "pub" / "loopdir").symlink_to(corpus, target_is_directory=True)
    proj = project(tmp_path)
    report = proj.ingest(corpus)
    assert report.ingested == 2
    failed = {Path(p).name: why for p, why in report.failed}
    assert set(failed) == {"a.md", "b.md"} and all("loop" in w for w in failed.values())
    skipped = {Path(p).name for p, _ in report.skipped}
    assert {"zero.md", "pipe.md"} <= skipped
    (corpus / "pub" / "welcome.md").unlink()
    (_, again), = proj.sync()
    assert again.deleted == 1  # the sync ran to its end: deletions applied


def test_one_writer_per_project(tmp_path: Path, corpus: Path) -> None:
    proj = project(tmp_path)
    with proj.store.state.write_lock("ingest elsewhere"), \
            pytest.raises(LockedError, match=rf"another ingest.*pid {os.getpid()}"):
        proj.ingest(corpus)
    proj.ingest(corpus)  # released: the next writer proceeds


def test_a_killed_first_ingest_is_resumed_by_sync(tmp_path: Path, corpus: Path) -> None:
    proj = project(tmp_path)

    class Killed(Exception):
        pass

    class KillAfterFirstFile:
        def start(self, total_files: int) -> None: ...
        def file_done(self, path: Path, status: str) -> None:
            raise Killed()
        def chunks_embedded(self, n: int) -> None: ...

    with pytest.raises(Killed):
        proj.ingest(corpus, progress=KillAfterFirstFile())
    (root, report), = proj.sync()
    assert root == corpus.resolve() and report.ingested == 2


def test_check_finds_and_repairs_duplicates_orphans_and_missing_files(tmp_path: Path, corpus: Path) -> None:
    proj = project(tmp_path)
    proj.ingest(corpus)
    assert proj.check().ok
    assert isinstance(proj.store, LanceStore)
    table = proj.store.table
    dup = table.search().where("source_path LIKE '%salaries.md'").limit(None).to_arrow()
    table.add(dup)  # what two unlocked writers used to leave behind
    orphan = dup.set_column(dup.schema.get_field_index("source_path"), "source_path",
                            [["/nowhere/old.md"] * dup.num_rows])
    orphan = orphan.set_column(orphan.schema.get_field_index("doc_id"), "doc_id", [["0123456789abcdef"] * dup.num_rows])
    orphan = orphan.set_column(orphan.schema.get_field_index("chunk_id"), "chunk_id",
                               [[f"0123456789abcdef-{i:05d}" for i in range(dup.num_rows)]])
    table.add(orphan)
    report = proj.check()
    assert not report.ok and report.duplicate_chunks and report.orphans == ["0123456789abcdef"]
    repaired = proj.check(repair=True)
    assert not repaired.ok  # it reports what it repaired
    assert proj.check().ok
    assert_unique_chunk_ids(proj)
    assert readable(proj, HR, "zebrafish bonus") == {"salaries.md"}


def test_an_unreadable_folder_keeps_its_documents(tmp_path: Path) -> None:
    """A folder the syncing user cannot list is reported, and its documents are not deleted (issue 10 #11).

    Root reads every folder, so as root the sync runs with the effective uid of an unprivileged user.
    """
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ragtune-perm-"))
    try:
        corpus = base / "corpus"
        write(corpus / "hr" / "_acl.yaml", "groups: [hr]\n")
        write(corpus / "hr" / "salaries.md", "# Salaries\n\nThe zebrafish bonus pool is 40,000 euros.\n")
        write(corpus / "pub" / "welcome.md", "---\nacl: public\n---\n# Welcome\n\nThe canteen opens at eight.\n")
        proj = project(base)
        proj.ingest(corpus)
        os.chmod(corpus / "hr", 0)
        as_root = os.geteuid() == 0
        if as_root:
            for p in [base, *base.rglob("*")]:
                os.lchown(p, 65534, 65534)
            os.setegid(65534)
            os.seteuid(65534)
        try:
            ((root, report),) = Project.open(base / "proj").sync()
        finally:
            if as_root:
                os.seteuid(0)
                os.setegid(0)
        assert report.deleted == 0
        assert any(Path(p).name == "hr" and "folder" in why for p, why in report.failed)
        assert {Path(d.source_path).name for d in proj.sources()} == {"salaries.md", "welcome.md"}
    finally:
        os.chmod(base / "corpus" / "hr", 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_lost_roots_never_empty_the_index(tmp_path: Path, corpus: Path) -> None:
    proj = project(tmp_path)
    proj.ingest(corpus)
    proj.store.state.set_roots({})  # e.g. roots.json deleted by hand
    with pytest.raises(RagtuneError, match="no ingested folders are recorded"):
        proj.sync()
    assert len(proj.sources()) == 2


def test_a_project_opened_before_a_sync_elsewhere_sees_the_narrowed_acl_at_once(tmp_path: Path) -> None:
    """A long-running reader (a server) must not keep answering from the version it opened: an ACL narrowed by a
    sync in another Project (another process, in production) takes effect on its very next query."""
    docs = tmp_path / "docs"
    write(docs / "plan.md", "---\nacl: public\n---\n# Plan\n\nThe merger with Initech closes in March.\n")
    init_project(tmp_path / "p")
    writer = Project.open(tmp_path / "p")
    writer.ingest(docs)
    server = Project.open(tmp_path / "p")
    anyone = Principal("mallory")
    assert server.search("merger Initech", anyone).hits  # the server has the index open now
    write(docs / "plan.md", "---\nacl: {groups: [board]}\n---\n# Plan\n\nThe merger with Initech closes in March.\n")
    writer.sync()
    assert server.search("merger Initech", anyone).hits == []
    assert not server.ask("When does the merger with Initech close?", anyone).citations
    assert server.search("merger Initech", Principal("bea", frozenset({"board"}))).hits
