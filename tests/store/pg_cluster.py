"""A throwaway PostgreSQL 15 + pgvector cluster for the store tests: initdb in a temporary folder as a non-root
user, started with pg_ctl on 127.0.0.1 and a free port (its unix socket inside the folder), stopped and
deleted afterwards.

The application connects over TCP with a password (scram-sha-256), as a role that owns its database but is no
superuser, so the store meets the same authentication and privileges as in production; the superuser (local
socket, trust) only creates the role, the database and the ``vector`` extension.

PostgreSQL or pgvector missing: under CI (``$CI`` set) the tests fail; elsewhere, as root,
``scripts/setup_postgres.sh`` is run once to install them, otherwise the tests fail naming it. Never a skip.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "scripts" / "setup_postgres.sh"
PG_BIN = Path(os.environ.get("RAGTUNE_PG_BIN", "/usr/lib/postgresql/15/bin"))
APP_ROLE = "ragtune_app"
APP_DB = "ragtune_test"


class ClusterError(RuntimeError):
    """The throwaway cluster could not be installed or started (the message says why and what to run)."""


def missing_parts() -> list[str]:
    """What of PostgreSQL + pgvector is not installed (empty when everything is)."""
    missing = [str(PG_BIN / b) for b in ("initdb", "pg_ctl", "postgres", "pg_config") if not (PG_BIN / b).exists()]
    if missing:
        return missing
    share = subprocess.run([str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True)
    control = Path(share.stdout.strip()) / "extension" / "vector.control"
    return [] if control.is_file() else [str(control)]


def ensure_installed() -> None:
    """Install PostgreSQL + pgvector with the setup script where allowed; raise ClusterError where not."""
    missing = missing_parts()
    if not missing:
        return
    what = f"PostgreSQL/pgvector missing ({', '.join(missing)})"
    if os.environ.get("CI"):
        raise ClusterError(f"{what}: CI must install them first (`make test` runs `bash {SETUP_SCRIPT}`)")
    if os.geteuid() != 0:
        raise ClusterError(f"{what}: run `sudo bash {SETUP_SCRIPT}` (or `make test`), then the tests again")
    run = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True)
    if run.returncode != 0 or missing_parts():
        raise ClusterError(f"{what}, and `bash {SETUP_SCRIPT}` did not install them (exit {run.returncode}):\n"
                           f"{(run.stdout + run.stderr)[-3000:]}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    """A running throwaway cluster; ``dsn`` is the application's (password, TCP), ``admin`` the superuser's."""

    root: Path
    port: int
    password: str
    user: str | None  # the OS user the server runs as (None: this process's user)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        """The application DSN: role ``ragtune_app`` with its password, over TCP to 127.0.0.1."""
        return f"postgresql://{APP_ROLE}:{self.password}@127.0.0.1:{self.port}/{APP_DB}"

    def admin(self, dbname: str = APP_DB) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection over the cluster's unix socket (autocommit)."""
        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=dbname,
                               autocommit=True)

    def drop_schema(self, schema: str) -> None:
        """Remove one test's schema and everything in it."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    def _as_user(self, argv: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self.user else list(argv)

    def run(self, argv: Sequence[str], what: str) -> None:
        done = subprocess.run(self._as_user(argv), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise ClusterError(f"{what} failed (exit {done.returncode}): {done.stdout}{done.stderr}{tail}")

    def stop(self) -> None:
        """Stop the server (immediately: the data is thrown away) and delete the folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                         "pg_ctl stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as ``nobody`` when we are root (None: as ourselves)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("nobody")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "ragtune-pg"], check=True)
        return "ragtune-pg"
    return "nobody"


def start_cluster() -> PgCluster:
    """initdb, start, create the application role, its database and the ``vector`` extension."""
    ensure_installed()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="ragtune-pg-"))
    cluster = PgCluster(root=root, port=0, password=secrets.token_urlsafe(16), user=user)
    try:
        pwfile = root / "pw"
        pwfile.write_text(secrets.token_urlsafe(16) + "\n")
        if user:
            shutil.chown(root, user)
            shutil.chown(pwfile, user)
        root.chmod(0o700)
        cluster.run([str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--pwfile", str(pwfile),
                     "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
                     "--no-instructions"], "initdb")
        for attempt in range(3):
            cluster.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {root} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            try:
                cluster.run([str(PG_BIN / "pg_ctl"), "-D", str(cluster.data), "-l", str(root / "server.log"),
                             "-o", options, "-w", "-t", "30", "start"], "pg_ctl start")
                break
            except ClusterError:
                if attempt == 2:
                    raise
        with cluster.admin("postgres") as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(cluster.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DB), sql.Identifier(APP_ROLE)))
        with cluster.admin() as conn:
            conn.execute("CREATE EXTENSION vector")  # not a trusted extension: the superuser installs it
    except BaseException:
        cluster.stop()
        raise
    return cluster


__all__ = ["APP_DB", "APP_ROLE", "SETUP_SCRIPT", "ClusterError", "PgCluster", "ensure_installed", "missing_parts",
           "start_cluster"]
