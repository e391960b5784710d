"""Property test: random folder trees, ACL files, front matter, links and edits never give a document the wrong ACL.

After every operation (ingest of the root, a sub-folder or one file; sync; ACL edits with typos; moves;
deletions; links inside, outside and in loops) the index must hold, for every stored document, exactly the ACL
the resolution rules give its real path — computed here by an independent oracle from a fixed vocabulary — with
unique chunk ids, and no principal may fetch a chunk outside its rights.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.config import init_project
from ragtune.core import Principal
from ragtune.errors import RagtuneError
from ragtune.project import Project

# ACL file / front matter text -> the tokens it grants; None marks a typo (the document must be unreadable).
VOCAB: dict[str, tuple[str, ...] | None] = {
    "public": ("public",), "{groups: [x]}": ("group:x",), "{groups: [y]}": ("group:y",),
    "{users: [u]}": ("user:u",), "{group: [x]}": None,
}
FOLDERS = ["", "a", "a/b", "c"]
PRINCIPALS = [Principal("u"), Principal("v", frozenset({"x"})), Principal("w", frozenset({"y"})), Principal("z")]

op = st.one_of(
    st.tuples(st.just("acl_file"), st.sampled_from(FOLDERS), st.sampled_from([*VOCAB, "(remove)"])),
    st.tuples(st.just("file"), st.sampled_from(FOLDERS), st.integers(0, 3),
              st.sampled_from([*VOCAB, "(none)", "ACL: public"])),
    st.tuples(st.just("delete"), st.sampled_from(FOLDERS), st.integers(0, 3)),
    st.tuples(st.just("move"), st.sampled_from(FOLDERS), st.integers(0, 3), st.sampled_from(FOLDERS)),
    st.tuples(st.just("link"), st.sampled_from(FOLDERS), st.integers(0, 3),
              st.sampled_from(["inside", "outside", "loop"])),
    st.tuples(st.just("ingest"), st.sampled_from(["root", "sub", "file"])),
    st.tuples(st.just("sync")),
)


def oracle(real: Path, top: Path) -> tuple[str, ...] | None:
    """The ACL tokens the rules give this file: front matter > nearest _acl.yaml > (no default) nobody."""
    text = real.read_text()
    if text.startswith("---\nacl: "):
        return VOCAB[text.split("\n")[1][5:]]
    if text.startswith("---\nACL: "):
        return None
    for folder in [real.parent, *real.parent.parents]:
        f = folder / "_acl.yaml"
        if f.is_file():
            return VOCAB[f.read_text().strip()]
        if folder == top:
            break
    return ()


def apply(step: tuple[object, ...], root: Path, outside: Path, proj: Project) -> None:
    kind = step[0]
    if kind == "acl_file":
        _, folder, content = step
        path = root / str(folder) / "_acl.yaml"
        if content == "(remove)":
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{content}\n")
    elif kind == "file":
        _, folder, n, acl = step
        path = root / str(folder) / f"f{n}.md"
        if path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        head = "" if acl == "(none)" else (f"---\n{acl}\n---\n" if acl == "ACL: public" else f"---\nacl: {acl}\n---\n")
        path.write_text(f"{head}# Doc {folder} {n}\n\nThe kiwi fact number {n} lives in folder {folder}.\n")
    elif kind == "delete":
        _, folder, n = step
        (root / str(folder) / f"f{n}.md").unlink(missing_ok=True)
    elif kind == "move":
        _, folder, n, dest = step
        src, dst = root / str(folder) / f"f{n}.md", root / str(dest) / f"m{n}.md"
        if src.is_file() and not src.is_symlink() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
    elif kind == "link":
        _, folder, n, where = step
        path = root / str(folder) / f"l{n}.md"
        if os.path.lexists(path):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        target = {"inside": root / "a" / "f0.md", "outside": outside / "secret.md", "loop": path}[str(where)]
        path.symlink_to(target)
    elif kind == "ingest":
        target = {"root": root, "sub": root / "a", "file": root / "a" / "f1.md"}[str(step[1])]
        if target.exists():
            # A refusal (e.g. two defaults for one file) comes with a message, never with a wrong ACL.
            with contextlib.suppress(RagtuneError):
                proj.ingest(target)
    elif kind == "sync" and proj.roots():
        proj.sync()


def check_invariants(proj: Project, root: Path) -> None:
    rows = proj.store.chunk_index()
    ids = [r.chunk_id for r in rows]
    assert len(ids) == len(set(ids)), "duplicate chunk ids"
    for doc in proj.sources():
        real = Path(doc.source_path)
        assert real.is_relative_to(root), f"{real} is outside the corpus"
        if not real.is_file():
            continue  # removed from disk since the last sync: it goes at the next one
        expected = oracle(real, root)
        if doc.acl != (expected or ()):
            # Stale only if no sync covered it since the change; every check below runs right after a sync.
            raise AssertionError(f"{real}: stored {doc.acl}, rules say {expected}")
    for p in PRINCIPALS:
        for chunk in proj.store.get_chunks(ids, p).values():
            assert p.can_read(chunk.acl)


def check_complete(proj: Project, root: Path) -> None:
    """Every regular file with a valid ACL is stored with it; one whose ACL is a typo is unreadable or absent."""
    stored = {d.source_path: d.acl for d in proj.sources()}
    for path in root.rglob("*.md"):
        if path.is_symlink():
            continue
        expected = oracle(path, root)
        if expected is None:
            assert stored.get(str(path), ()) == ()
        else:
            assert stored.get(str(path)) == expected, f"{path}: stored {stored.get(str(path))}, rules say {expected}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, min_size=1, max_size=8))
def test_stored_acls_always_follow_the_rules(tmp_path_factory: object, steps: list[tuple[object, ...]]) -> None:
    base = Path(tmp_path_factory.mktemp("prop"))  # type: ignore[attr-defined]
    try:
        root, outside = base / "corpus", base / "outside"
        (root / "a").mkdir(parents=True)
        outside.mkdir()
        (outside / "secret.md").write_text("---\nacl: public\n---\n# Secret\n\nThe kiwi secret is outside.\n")
        (root / "a" / "f0.md").write_text("# Zero\n\nThe kiwi fact zero.\n")
        init_project(base / "proj")
        proj = Project.open(base / "proj")
        for step in steps:
            apply(step, root, outside, proj)
        # Bring every root up to date, then the stored index must agree with the rules everywhere.
        proj.ingest(root)  # absorbs any sub-root ingested before, then every stored document is checked
        proj.sync()
        check_invariants(proj, root.resolve())
        check_complete(proj, root.resolve())
        assert proj.check().ok
    finally:
        shutil.rmtree(base, ignore_errors=True)
