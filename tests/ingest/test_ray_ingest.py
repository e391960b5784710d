"""``ragtune ingest --ray`` on a real 2-node Ray cluster (loopback only) gives exactly what a local ingest gives."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write

sys.path.insert(0, str(Path(__file__).parent))  # the cluster helper beside this file

from ray_cluster import BIN, RayCluster, is_loopback, netns_missing, ray_missing, require, start_cluster  # noqa: E402

from ragtune.ingest.acl import parse_acl_option  # noqa: E402
from ragtune.ingest.sync import SyncReport  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402

pytestmark = pytest.mark.integration

YAML = "chunking:\n  max_tokens: 64\n  overlap_tokens: 8\n"  # small chunks: several embedding batches, fast
DEFAULT_ACL = "group:staff"
KEYS = ("doc_id", "source_path", "title", "section_path", "page", "char_start", "char_end", "ordinal", "text",
        "search_text", "content_hash", "doc_hash", "mtime", "acl")


def _policy(name: str, n: int) -> str:
    sentences = [f"Clause {j} of the {name} policy says a request of type {j} is answered within {j + 2} working "
                 f"days by the {name} desk." for j in range(n)]
    return f"# {name.title()} policy\n\n" + " ".join(sentences[: n // 2]) + "\n\n## Details\n\n" + \
        " ".join(sentences[n // 2:]) + "\n"


def _corpus(root: Path) -> Path:
    """md with front matter ACLs, txt and html under an _acl.yaml, files with no ACL (the --acl default), and a
    corrupt PDF."""
    write(root / "handbook.md", "---\nacl: public\n---\n" + _policy("vacation", 16))
    write(root / "hr" / "salaries.md", "---\nacl: {users: [carol], groups: [hr]}\n---\n" + _policy("salary", 12))
    write(root / "legal" / "_acl.yaml", "acl: {groups: [legal]}\n")
    write(root / "legal" / "retention.md", _policy("retention", 14))
    write(root / "legal" / "contracts.txt", _policy("contract", 10).replace("#", ""))
    write(root / "legal" / "page.html", "<html><head><title>Travel</title></head><body><h1>Travel</h1><p>"
          + _policy("travel", 10).replace("#", "") + "</p></body></html>")
    for i in range(4):
        write(root / "ops" / f"runbook-{i}.md", _policy(f"runbook{i}", 8))
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    return root


def _project(folder: Path) -> Path:
    write(folder / "ragtune.yaml", YAML)
    return folder


def _rows(project: Path) -> dict[str, dict[str, Any]]:
    store = LanceStore(Project.open(project).settings.index_dir)
    return {r["chunk_id"]: r for r in store.table.to_arrow().to_pylist()}


def _assert_same_index(ray_project: Path, local_project: Path) -> None:
    got, want = _rows(ray_project), _rows(local_project)
    assert sorted(got) == sorted(want) and len(want) >= 32, (len(got), len(want))
    for chunk_id, row in want.items():
        assert {k: got[chunk_id][k] for k in KEYS} == {k: row[k] for k in KEYS}, chunk_id
    diff = max(float(np.abs(np.asarray(got[c]["vector"]) - np.asarray(want[c]["vector"])).max()) for c in want)
    assert diff <= 1e-5
    acls = {d.source_path: d.acl for d in Project.open(local_project).store.documents()}
    assert {d.source_path: d.acl for d in Project.open(ray_project).store.documents()} == acls


def _summary(report: SyncReport) -> str:
    return (f"{report.ingested} ingested, {report.unchanged} unchanged, {report.updated} updated, "
            f"{report.reacl} re-permissioned, {report.deleted} deleted, {len(report.failed)} failed")


def _nodes(output: str, verb: str) -> list[str]:
    found = re.search(rf"ray: {verb} on \d+ node\(s\): ([0-9a-f, ]+)", output)
    assert found, output
    return found.group(1).split(", ")


@dataclass
class Run:
    """The first ingest, via Ray into one project and locally into another, of the same folder."""

    cluster: RayCluster
    docs: Path
    ray_project: Path
    local_project: Path
    ray: subprocess.CompletedProcess[str]
    local: SyncReport


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    require(ray_missing() is None, ray_missing() or "")
    require(netns_missing() is None, netns_missing() or "")
    running = start_cluster(tmp_path_factory.mktemp("ray"))
    yield running
    running.stop()


def _ingest(cluster: RayCluster, docs: Path, project: Path, address: str) -> subprocess.CompletedProcess[str]:
    return cluster.run([str(BIN / "ragtune"), "ingest", str(docs), "-p", str(project), "--ray", address,
                        "--acl", DEFAULT_ACL], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def first(cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("ingest")
    docs = _corpus(base / "docs")
    ray_project, local_project = _project(base / "via-ray"), _project(base / "local")
    ray = _ingest(cluster, docs, ray_project, cluster.address)
    local = Project.open(local_project).ingest(docs, parse_acl_option(DEFAULT_ACL))
    return Run(cluster, docs, ray_project, local_project, ray, local)


def test_ray_ingest_gives_the_local_chunk_ids_texts_acls_and_vectors(first: Run) -> None:
    assert first.ray.returncode == 3, first.ray.stderr  # the corrupt PDF, as locally
    assert "Traceback" not in first.ray.stderr
    assert _summary(first.local) in first.ray.stdout
    assert first.local.ingested == 9 and first.local.no_acl == []
    _assert_same_index(first.ray_project, first.local_project)
    acls = {Path(d.source_path).name: d.acl for d in Project.open(first.ray_project).store.documents()}
    assert acls["salaries.md"] == ("group:hr", "user:carol") and acls["page.html"] == ("group:legal",)
    assert acls["handbook.md"] == ("public",) and acls["runbook-1.md"] == ("group:staff",)


def test_a_corrupt_file_is_reported_by_name_exactly_as_locally(first: Run) -> None:
    [(path, reason)] = first.local.failed
    assert path.endswith("broken.pdf")
    assert f"failed {path}: {reason}" in first.ray.stdout
    assert "exit status 3" in first.ray.stderr


def test_both_nodes_parsed_and_embedded(first: Run) -> None:
    parsed, embedded = _nodes(first.ray.stdout, "parsed"), _nodes(first.ray.stdout, "embedded")
    assert len(set(parsed)) == 2 and set(parsed) == set(embedded)


def test_the_cluster_listens_on_loopback_only(first: Run) -> None:
    cluster = first.cluster
    assert cluster.interfaces() == ["lo"]
    listeners = cluster.listeners()
    processes = " ".join(p for _, p in listeners)
    assert "gcs_server" in processes and "raylet" in processes  # we looked at the cluster's own sockets
    assert [a for a, _ in listeners if not is_loopback(a)] == []
    # Every process of the cluster lives in the namespace: none with its temp dir runs outside it.
    import psutil

    inside = cluster.pids()
    outside = [p.pid for p in psutil.process_iter(["cmdline"])
               if str(cluster.temp) in " ".join(p.info["cmdline"] or []) and p.pid not in inside]
    assert outside == []


def test_changes_sync_through_ray_as_locally(first: Run) -> None:
    """A second ingest: an edited file is re-embedded, a re-permissioned folder's files only re-permissioned,
    the rest unchanged, exactly as locally."""
    write(first.docs / "ops" / "runbook-0.md", _policy("runbook0", 9))
    write(first.docs / "legal" / "_acl.yaml", "acl: {groups: [legal, audit]}\n")  # its 3 files: new ACL only
    again = _ingest(first.cluster, first.docs, first.ray_project, first.cluster.address)
    local = Project.open(first.local_project).ingest(first.docs, parse_acl_option(DEFAULT_ACL))
    assert (local.updated, local.reacl, local.unchanged) == (1, 3, 5)
    assert again.returncode == 3 and _summary(local) in again.stdout, again.stdout + again.stderr
    _assert_same_index(first.ray_project, first.local_project)


def test_an_unreachable_address_fails_clearly_and_leaves_the_index_untouched(tmp_path: Path) -> None:
    require(ray_missing() is None, ray_missing() or "")
    docs = _corpus(tmp_path / "docs")
    project = _project(tmp_path / "p")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        done = subprocess.run([str(BIN / "ragtune"), "ingest", str(docs), "-p", str(project), "--ray", address],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "COLUMNS": "200", "RAY_USAGE_STATS_ENABLED": "0"})
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert f"cannot reach the Ray cluster at {address}" in done.stderr
        assert "ray start --head" in done.stderr and "leave --ray out" in done.stderr
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_ray_addresses_are_split_with_ray_defaults() -> None:
    require(ray_missing() is None, ray_missing() or "")
    from ragtune.errors import ConfigError
    from ragtune.ingest.ray_exec import split_address

    assert split_address("ray://head.svc:10001") == ("head.svc", 10001, True)
    assert split_address("ray://head") == ("head", 10001, True)
    assert split_address("10.0.0.5:6380") == ("10.0.0.5", 6380, False)
    assert split_address("10.0.0.5") == ("10.0.0.5", 6379, False)
    assert split_address("[::1]:6379") == ("::1", 6379, False)
    with pytest.raises(ConfigError, match="not a Ray address"):
        split_address("head:port")


AUTO = """
import json, psutil
from ragtune.config import Settings
from ragtune.ingest.ray_exec import ray_executor
from ragtune.models.embedder import MiniLMEmbedder
fingerprint = MiniLMEmbedder().fingerprint
with ray_executor("auto", Settings(project_dir={folder!r}), fingerprint) as ex:
    tree = {{p.pid for p in psutil.Process().children(recursive=True)}}
    listening = [f"{{c.laddr.ip}}:{{c.laddr.port}}" for c in psutil.net_connections("inet")
                 if c.pid in tree and c.status == psutil.CONN_LISTEN]
    print(json.dumps({{"cpus": ex.cpus, "listening": listening}}))
"""


def test_auto_without_ray_address_starts_a_local_ray_on_loopback_only(tmp_path: Path) -> None:
    require(ray_missing() is None, ray_missing() or "")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64)
    with tempfile.TemporaryDirectory(prefix="ray-auto-", dir="/tmp") as ray_tmp:  # short: Unix socket paths
        env["RAY_TMPDIR"] = ray_tmp  # the local Ray's session folder, instead of /tmp/ray
        done = subprocess.run([sys.executable, "-c", AUTO.format(folder=str(tmp_path))], capture_output=True,
                              text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["cpus"] >= 1 and got["listening"]
    assert [a for a in got["listening"] if not is_loopback(a)] == []


def _actor_pids(cluster: RayCluster) -> list[int]:
    import psutil

    out = []
    for pid in cluster.pids():
        with contextlib.suppress(psutil.Error):
            if " ".join(psutil.Process(pid).cmdline()).startswith("ray::_EmbedActor"):
                out.append(pid)
    return out


def _kill_actors_while_embedding(cluster: RayCluster, run: subprocess.Popen[str], how_many: int) -> None:
    """Once both embedding actors run and have had time to load the model, SIGKILL ``how_many`` of them."""
    deadline = time.monotonic() + 120
    while len(actors := _actor_pids(cluster)) < 2:
        assert run.poll() is None and time.monotonic() < deadline, "the embedding actors never started"
        time.sleep(0.2)
    time.sleep(3)
    assert run.poll() is None, "the ingest ended before a worker could be killed: give it more to embed"
    for pid in actors[:how_many]:
        os.kill(pid, signal.SIGKILL)


def _ingest_killing_actors(cluster: RayCluster, docs: Path, project: Path, how_many: int) -> tuple[int, str, str]:
    """``ragtune ingest --ray`` into ``project`` with ``how_many`` embedding actors killed mid-way: its exit
    status, stdout and stderr."""
    run = subprocess.Popen(cluster.command([str(BIN / "ragtune"), "ingest", str(docs), "-p", str(project), "--ray",
                                            cluster.address]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=cluster.env)
    _kill_actors_while_embedding(cluster, run, how_many)
    stdout, stderr = run.communicate(timeout=300)
    return run.returncode, stdout, stderr


@pytest.mark.slow
def test_a_dead_embedding_worker_is_replaced_and_a_dead_pool_fails_cleanly_then_resumes(
    cluster: RayCluster, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    for i in range(40):
        write(docs / f"bulk-{i:02d}.md", "---\nacl: public\n---\n" + _policy(f"bulk{i}", 48))
    local = _project(tmp_path / "local")
    Project.open(local).ingest(docs)
    # One of the two actors dies mid-way: its pieces go to the other one and the result is the local one.
    one = _project(tmp_path / "one-dies")
    returncode, stdout, stderr = _ingest_killing_actors(cluster, docs, one, 1)
    assert returncode == 0, stdout + stderr
    _assert_same_index(one, local)
    # Both die: a clear error, only complete batches in the index, and the same command finishes the job.
    both = _project(tmp_path / "both-die")
    returncode, stdout, stderr = _ingest_killing_actors(cluster, docs, both, 2)
    assert returncode == 1 and "lost its workers while embedding chunks" in stderr, stdout + stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    assert Project.open(both).check().ok
    again = _ingest(cluster, docs, both, cluster.address)
    assert again.returncode == 0, again.stdout + again.stderr
    _assert_same_index(both, local)
