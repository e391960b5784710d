"""ACL specs and where a document's ACL comes from: front matter > nearest _acl.yaml > run default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ragtune.core import Acl, Principal
from ragtune.errors import AclError
from ragtune.ingest.acl import ACL_FILE, AclResolver, parse_acl, parse_acl_option
from ragtune.ingest.parsers import read_front_matter
from ragtune.ingest.roots import RootSet

LEGAL = Acl(groups=frozenset({"legal"}))
STAFF = Acl(groups=frozenset({"staff"}))
ANN = Acl(users=frozenset({"ann"}))


def put(path: Path, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- parse_acl ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["public", "PUBLIC", "  Public "])
def test_public_string(spec: str) -> None:
    acl = parse_acl(spec, "a.md")
    assert acl == Acl(public=True)
    assert acl.tokens() == ["public"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"users": ["ann", "bob"], "groups": ["legal"]}, ["group:legal", "user:ann", "user:bob"]),
        ({"users": "ann"}, ["user:ann"]),
        ({"groups": [" legal ", ""]}, ["group:legal"]),
        ({"users": [1001]}, ["user:1001"]),
        ({"public": True, "groups": ["hr"]}, ["group:hr", "public"]),
        ({"public": True}, ["public"]),
        ({"users": None, "groups": []}, []),
        ({}, []),
        ({"public": False}, []),
    ],
)
def test_mapping_specs(spec: dict[str, Any], expected: list[str]) -> None:
    assert parse_acl(spec, "a.md").tokens() == expected


def test_empty_acl_means_nobody() -> None:
    acl = parse_acl({}, "a.md")
    assert acl.is_empty and acl.describe() == "(none: nobody)"
    assert not Principal("root", frozenset({"admins", "legal"})).can_read(acl.tokens())
    assert Principal("ann").can_read(parse_acl({"users": ["ann"]}, "a.md").tokens())
    assert not Principal("bob").can_read(parse_acl({"users": ["ann"]}, "a.md").tokens())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("everyone", r"^a\.md: acl must be 'public' or a mapping"),
        ("group:legal", r"^a\.md: acl must be 'public' or a mapping"),
        (None, r"^a\.md: acl must be 'public' or a mapping"),
        (["ann"], r"^a\.md: acl must be 'public' or a mapping"),
        ({"user": ["ann"]}, r"^a\.md: unknown acl key\(s\) \['user'\]"),
        ({"groups": {"legal": 1}}, r"^a\.md: acl groups must be a list of names"),
        ({"users": [None]}, r"^a\.md: acl users must be a list of names"),
        ({"users": 0}, r"^a\.md: acl users must be a list of names"),
        ({"users": [True]}, r"^a\.md: acl users holds a yes/no/true/false value"),
        ({"public": "yes"}, r"^a\.md: acl public must be true or false"),
    ],
)
def test_bad_specs_raise_acl_error_naming_where(spec: Any, message: str) -> None:
    with pytest.raises(AclError, match=message):
        parse_acl(spec, "a.md")


@pytest.mark.parametrize(
    ("key", "name"),
    [("users", "ann smith"), ("users", "o'brien"), ("groups", 'legal"team'), ("groups", "a,b"), ("users", "x" * 129)],
)
def test_invalid_names_are_rejected(key: str, name: str) -> None:
    with pytest.raises(AclError, match=rf"^a\.md: invalid {key[:-1]} name"):
        parse_acl({key: [name]}, "a.md")


# --- parse_acl_option -----------------------------------------------------------------------------


def test_acl_option_users_and_groups() -> None:
    acl = parse_acl_option("group:legal,user:ann")
    assert acl == Acl(users=frozenset({"ann"}), groups=frozenset({"legal"}))
    assert acl.tokens() == ["group:legal", "user:ann"]
    assert parse_acl_option(" group:legal , user: ann ,, group:hr ") == Acl(
        users=frozenset({"ann"}), groups=frozenset({"legal", "hr"})
    )


@pytest.mark.parametrize("spec", ["public", "Public", " public "])
def test_acl_option_public(spec: str) -> None:
    assert parse_acl_option(spec) == Acl(public=True)


def test_acl_option_empty_grants_nobody() -> None:
    assert parse_acl_option("").is_empty


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("public,user:ann", r"^--acl: 'public' cannot be combined"),
        ("group:legal,public", r"^--acl: 'public' cannot be combined"),
        ("legal", r"^--acl: 'legal' is not user:NAME, group:NAME or public"),
        ("role:admin", r"^--acl: 'role:admin' is not user:NAME"),
        ("user:", r"^--acl: 'user:' is not user:NAME"),
        ("user:ann smith", r"^--acl: invalid user name 'ann smith'"),
        ("group:legal:eu", r"^--acl: invalid group name 'legal:eu'"),
    ],
)
def test_acl_option_errors(spec: str, message: str) -> None:
    with pytest.raises(AclError, match=message):
        parse_acl_option(spec)


# --- AclResolver ----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/_acl.yaml: staff; legal/_acl.yaml: legal (mapping under an `acl:` key); open/_acl.yaml: public."""
    root = tmp_path / "docs"
    put(root / ACL_FILE, "groups: [staff]\n")
    put(root / "legal" / ACL_FILE, "acl: {groups: [legal]}\n")
    put(root / "open" / ACL_FILE, "acl: public\n")
    return root


def resolver(root: Path, default: Acl | None = None) -> AclResolver:
    return AclResolver(RootSet({root.resolve(): default}))


def test_nearest_acl_file_wins_and_is_inherited_by_sub_folders(tree: Path) -> None:
    r = resolver(tree, default=ANN)
    assert r.resolve(tree / "top.md", None) == STAFF
    assert r.resolve(tree / "misc" / "deeper" / "a.txt", {}) == STAFF
    assert r.resolve(tree / "legal" / "nda.md", None) == LEGAL
    assert r.resolve(tree / "legal" / "contracts" / "2024" / "eu" / "vendor.pdf", None) == LEGAL
    assert r.resolve(tree / "open" / "faq" / "q.md", None) == Acl(public=True)


def test_front_matter_acl_wins_over_folder_and_default(tree: Path) -> None:
    r = resolver(tree, default=ANN)
    path = tree / "legal" / "shared.md"
    assert r.resolve(path, {"acl": "public"}) == Acl(public=True)
    assert r.resolve(path, {"acl": {"users": ["bob"]}}) == Acl(users=frozenset({"bob"}))
    # An explicit empty mapping is a deliberate "nobody", not a fall-through to the folder.
    assert r.resolve(path, {"acl": {}}).is_empty
    # Front matter without an acl key does not override anything.
    assert r.resolve(path, {"title": "Shared"}) == LEGAL


def test_front_matter_from_a_real_markdown_file(tree: Path) -> None:
    path = put(tree / "legal" / "memo.md", "---\ntitle: Memo\nacl:\n  users: [carol]\n  groups: [hr]\n---\n# Memo\n")
    acl = resolver(tree).resolve(path, read_front_matter(path.read_bytes(), path))
    assert acl.tokens() == ["group:hr", "user:carol"]


def test_default_applies_only_where_no_acl_file_covers(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    put(root / "sub" / ACL_FILE, "users: [dave]\n")
    r = resolver(root, default=ANN)
    assert r.resolve(root / "a.md", None) == ANN
    assert r.resolve(root / "other" / "b.md", None) == ANN
    assert r.resolve(root / "sub" / "c.md", None) == Acl(users=frozenset({"dave"}))


def test_no_acl_anywhere_and_no_default_fails_closed(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    root.mkdir()
    acl = resolver(root).resolve(root / "x" / "a.md", None)
    assert acl.is_empty
    assert not Principal("ann", frozenset({"staff"})).can_read(acl.tokens())


def test_acl_files_above_the_root_are_honoured(tmp_path: Path) -> None:
    # Ingesting a sub-folder (or one file) must not drop the ACL the folders above it declare (issue 10 #2).
    put(tmp_path / "hr" / ACL_FILE, "groups: [hr]\n")
    root = tmp_path / "hr" / "payroll"
    root.mkdir(parents=True)
    r = resolver(root, default=Acl(public=True))
    assert r.resolve(root / "a.md", None) == Acl(groups=frozenset({"hr"}))
    assert r.resolve(root / "deep" / "b.md", None) == Acl(groups=frozenset({"hr"}))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_external_target_gets_the_narrowest_of_link_and_target_acls(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tree / "legal" / "linked").symlink_to(outside, target_is_directory=True)
    r = resolver(tree, default=Acl(public=True))
    link, real = tree / "legal" / "linked" / "a.md", outside / "a.md"
    # Through the link the file sits under legal/: it must not fall back to the (public) default.
    assert r.resolve_external(link, real, None, tree.resolve()) == LEGAL
    put(outside / ACL_FILE, "groups: [legal, board]\n")
    assert resolver(tree).resolve_external(link, real, None, tree.resolve()) == LEGAL
    put(outside / ACL_FILE, "groups: [board]\n")
    assert resolver(tree).resolve_external(link, real, None, tree.resolve()).is_empty


@pytest.mark.parametrize("name", ["_acl.yml", "_ACL.yaml", "acl.yaml", "_Acl.yml"])
def test_near_miss_acl_file_names_are_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "r"
    put(root / "team" / name, "groups: [team]\n")
    with pytest.raises(AclError, match="must be named _acl.yaml exactly"):
        resolver(root, default=Acl(public=True)).resolve(root / "team" / "a.md", None)


@pytest.mark.parametrize("key", ["ACL", "acls", "Acl", "access"])
def test_near_miss_front_matter_keys_are_refused(tree: Path, key: str) -> None:
    with pytest.raises(AclError, match=f"front matter key '{key}' is not read"):
        resolver(tree).resolve(tree / "memo.md", {key: "public"})


def test_intersection_is_the_narrowest() -> None:
    hr, legal = Acl(groups=frozenset({"hr"})), Acl(groups=frozenset({"legal", "hr"}))
    assert Acl(public=True).intersect(hr) == hr
    assert legal.intersect(hr) == hr
    assert hr.intersect(Acl(users=frozenset({"bob"}))).is_empty


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("groups: [legal\n", "cannot read ACL file"),
        ("", "acl must be 'public' or a mapping"),
        ("acl: {owners: [x]}\n", r"unknown acl key\(s\) \['owners'\]"),
        ("users: [ann smith]\n", "invalid user name 'ann smith'"),
    ],
    ids=["bad-yaml", "empty", "unknown-key", "bad-name"],
)
def test_bad_acl_file_raises_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    root = tmp_path / "r"
    acl_file = put(root / "team" / ACL_FILE, content)
    with pytest.raises(AclError, match=message) as info:
        resolver(root).resolve(root / "team" / "a.md", None)
    assert str(acl_file) in str(info.value)


def test_acl_file_not_utf8_raises_acl_error(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    (root / ACL_FILE).write_bytes(b"users: [\xff\xfe]\n")
    with pytest.raises(AclError, match="cannot read ACL file"):
        resolver(root).resolve(root / "a.md", None)


def test_bad_front_matter_acl_names_the_file(tree: Path) -> None:
    with pytest.raises(AclError, match=r"^memo\.md front matter: acl must be 'public'"):
        resolver(tree).resolve(tree / "memo.md", {"acl": "group:legal"})


def test_an_unrelated_acl_yaml_above_the_roots_is_not_a_near_miss(tmp_path: Path) -> None:
    put(tmp_path / "acl.yaml", "some: other tool's config\n")
    root = tmp_path / "corpus"
    root.mkdir()
    assert resolver(root, default=ANN).resolve(root / "a.md", None) == ANN
    put(tmp_path / "_ACL.yaml", "groups: [x]\n")
    with pytest.raises(AclError, match="must be named _acl.yaml exactly"):
        resolver(root, default=ANN).resolve(root / "a.md", None)
