#!/usr/bin/env bash
# PostgreSQL 15 and pgvector for ragtune's PostgreSQL store tests (tests/store/pg_cluster.py). Idempotent.
#
# Debian bookworm ships PostgreSQL 15 but no pgvector package; trixie's source package has pgvector 0.8
# (iterative index scans, which the store relies on). So: enable deb-src for bookworm and trixie, install the
# server and its development headers, fetch Debian's pgvector source and build it against PostgreSQL 15.
# Run as root (apt and `make install` write system folders). Does nothing when pgvector is already installed.
set -euo pipefail

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
CONTROL=/usr/share/postgresql/$PG_MAJOR/extension/vector.control
SOURCES=/etc/apt/sources.list.d/ragtune-src.sources

if [ -f "$CONTROL" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ]; then
    echo "setup_postgres: PostgreSQL $PG_MAJOR with pgvector $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$CONTROL") is installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup_postgres: run as root (sudo bash $0): it installs packages with apt and pgvector with make install" >&2
    exit 1
fi

cat > "$SOURCES" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR dpkg-dev build-essential

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt downloads as its unprivileged _apt user when that user may write here (else it warns and uses root)
if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
cd "$work"
apt-get source -q pgvector
src=$(find . -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
if [ -z "$src" ]; then
    echo "setup_postgres: apt-get source pgvector unpacked nothing; check $SOURCES and apt-get update" >&2
    exit 1
fi
cd "$src"
make PG_CONFIG="$PG_CONFIG"
make PG_CONFIG="$PG_CONFIG" install

version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$CONTROL")
case "$version" in
    0.[0-7].*|"")
        echo "setup_postgres: built pgvector '$version', but ragtune needs 0.8 or later (hnsw.iterative_scan)" >&2
        exit 1 ;;
esac
echo "setup_postgres: installed pgvector $version for PostgreSQL $PG_MAJOR"
