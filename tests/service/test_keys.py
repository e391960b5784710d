"""API keys in the SQLite key store: creation, checks, revocation, hashing, file mode, last used, concurrency."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragtune.errors import AclError, ConfigError
from ragtune.service.identity import AuthError, Role
from ragtune.service.keys import KEY_PATTERN, LAST_USED_EVERY_S, KeyStore


class Clock:
    """A hand-moved wall clock for the last-used throttle."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def refused(store: KeyStore, key: str, code: str) -> None:
    with pytest.raises(AuthError) as info:
        store.authenticate(key)
    assert (info.value.code, info.value.status) == (code, 401)
    if len(key) > 20:  # never echo the credential (short probes like "rtk_" may match the format hint)
        assert key not in info.value.message and key[-20:] not in info.value.message


def test_created_key_authenticates_as_its_principal_and_role(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "service" / "keys.sqlite")
    record, key = store.create("alice", ["legal", "staff"], Role.EDITOR, note="ci bot")
    assert KEY_PATTERN.match(key) and key.startswith(f"rtk_{record.key_id}_")
    ident = store.authenticate(key)
    assert ident.principal.user == "alice" and ident.principal.groups == frozenset({"legal", "staff"})
    assert (ident.role, ident.kind, ident.credential_id) == (Role.EDITOR, "api_key", record.key_id)
    other_record, other = store.create("bob", [], "reader")
    assert other != key and store.authenticate(other).principal.user == "bob"
    assert [r.key_id for r in store.list()] == [record.key_id, other_record.key_id]


def test_wrong_unknown_malformed_and_revoked_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    record, key = store.create("alice", [], Role.READER)
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    refused(store, wrong_secret, "invalid_key")
    refused(store, "rtk_0123456789abcdef_" + key.split("_", 2)[2], "invalid_key")  # unknown id, real secret
    for bad in ("rtk_", "rtk_nothex_xyz", key + "x", key[:-1], "sk-" + key[4:], key.upper()):
        refused(store, bad, "malformed_credentials")
    store.revoke(record.key_id)
    refused(store, key, "revoked_key")
    refused(store, wrong_secret, "invalid_key")  # "revoked" is only said to the holder of the real key
    assert store.get(record.key_id).revoked  # type: ignore[union-attr]


def test_the_database_never_holds_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    store = KeyStore(path)
    keys = [store.create(f"user{i}", ["g"], Role.ADMIN)[1] for i in range(5)]
    for key in keys:
        store.authenticate(key)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("keys.sqlite")]
    blob = b"".join(p.read_bytes() for p in files)
    assert b"user3" in blob  # the bytes searched are really the records
    for key in keys:
        secret = key.split("_", 2)[2]
        assert key.encode() not in blob and secret.encode() not in blob
        assert secret[:16].encode() not in blob


def test_files_are_owner_only_and_a_shared_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "service" / "keys.sqlite"
    store = KeyStore(path)
    store.create("alice", [], Role.READER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for side in (path.with_name("keys.sqlite-wal"), path.with_name("keys.sqlite-shm")):
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        KeyStore(path).list()


def test_last_used_is_set_and_written_at_most_once_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / "keys.sqlite", clock=clock)
    record, key = store.create("alice", [], Role.READER)
    assert record.last_used_at is None
    store.authenticate(key)
    first = store.get(record.key_id).last_used_at  # type: ignore[union-attr]
    assert first == clock.now
    clock.now += LAST_USED_EVERY_S / 2
    store.authenticate(key)
    assert store.get(record.key_id).last_used_at == first  # type: ignore[union-attr]
    clock.now += LAST_USED_EVERY_S
    store.authenticate(key)
    assert store.get(record.key_id).last_used_at == clock.now  # type: ignore[union-attr]


def test_verify_only_reads_and_says_when_last_used_is_due(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / "keys.sqlite", clock=clock)
    record, key = store.create("alice", ["hr"], Role.READER)
    identity, due = store.verify(key)
    assert (identity.principal.user, identity.credential_id, due) == ("alice", record.key_id, True)
    assert store.get(record.key_id).last_used_at is None  # type: ignore[union-attr]  # nothing written
    store.touch(record.key_id)
    assert store.verify(key)[1] is False
    clock.now += LAST_USED_EVERY_S
    assert store.verify(key)[1] is True


def test_the_reused_reader_sees_revocations_and_a_replaced_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    server = KeyStore(path)  # the server's store: one reader connection per thread, kept between checks
    _, key = server.create("alice", [], Role.READER)
    record2, key2 = server.create("bob", [], Role.READER)
    server.verify(key)
    server.verify(key2)
    KeyStore(path).revoke(record2.key_id)  # as `ragtune keys revoke` does, from another process
    refused(server, key2, "revoked_key")
    assert server.verify(key)[0].principal.user == "alice"
    for suffix in ("", "-wal", "-shm"):  # the admin moves the whole store away and starts a new one
        if Path(f"{path}{suffix}").exists():
            os.rename(f"{path}{suffix}", f"{path}.old{suffix}")
    _, key3 = KeyStore(path).create("carol", [], Role.READER)
    refused(server, key, "invalid_key")
    assert server.verify(key3)[0].principal.user == "carol"


@pytest.mark.parametrize("user, groups", [("", []), ("two words", []), ("a,b", []), ("alice", ["ok", ""]),
                                          ("alice", ["has space"]), ("alice", ["x,y"]), ('al"ice', [])])
def test_user_and_group_names_are_validated(tmp_path: Path, user: str, groups: list[str]) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    with pytest.raises(AclError, match="invalid (user|group) name"):
        store.create(user, groups, Role.READER)
    assert not (tmp_path / "keys.sqlite").exists() or store.list() == []


def test_revoke_unknown_and_bad_ids(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    record, _ = store.create("alice", [], Role.READER)
    assert store.revoke("0123456789abcdef") is None
    with pytest.raises(ConfigError, match="not a key id"):
        store.revoke("alice")
    first = store.revoke(f"rtk_{record.key_id}")
    assert first is not None and first.revoked
    again = store.revoke(record.key_id)  # idempotent: the first revocation time is kept
    assert again is not None and again.revoked_at == first.revoked_at


WORKER = """
import json, sys, time
from pathlib import Path
from ragtune.service.keys import KeyStore
path, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = KeyStore(Path(path))
while time.time() < start:  # both processes begin at the same moment, on a store neither has created
    time.sleep(0.001)
print(json.dumps([store.create(f"{name}{i}", ["g"], "reader")[1] for i in range(25)]))
"""


def test_processes_creating_keys_at_once_all_succeed(tmp_path: Path) -> None:
    # Regression: processes opening a new store together got "database is locked" from the switch to WAL
    # (SQLite takes that lock without waiting for the busy timeout).
    path = tmp_path / "fresh" / "keys.sqlite"
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), name, str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b", "c")]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outputs]
    assert time.time() > start  # the creates really ran after the common start time
    store = KeyStore(path)
    for name, (stdout, _) in zip(("a", "b", "c"), outputs, strict=True):
        keys = json.loads(stdout)
        assert len(keys) == 25
        assert [store.authenticate(k).principal.user for k in keys] == [f"{name}{i}" for i in range(25)]
    assert len(store.list()) == 75
