"""Pipelines and the model registry over HTTP (issue 18): a pipeline runs as the caller (labels from a real
registered classifier, an answer from what the caller may read) and is audited as ``api:run``; the registry
routes are for admins and show cards without server paths. Own project and server, so the shared fixture's
registry is left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import pytest
from helpers import OPS_PIPELINE as PIPELINE
from helpers import TOPIC_TRAIN as TRAIN
from helpers import serve_project as serve
from helpers import write

from ragtune.audit.log import log_path
from ragtune.project import Project
from ragtune.tuning.head import HeadClassifier
from ragtune.tuning.registry import new_card

from .live import small_project

Live = tuple[str, dict[str, str], Project]



@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("ops")
    project = small_project(root)
    clf = HeadClassifier().fit([t for t, _ in TRAIN], [lab for _, lab in TRAIN])
    project.registry.register("topic", clf, new_card("head", clf, "abc123", str(root / "secret" / "train.csv")))
    write(project.settings.project_dir / "pipelines" / "ops-qa.yaml", PIPELINE)
    keys = {name: project.key_store.create(user, groups, role)[1] for name, user, groups, role in [
        ("ops", "otto", ["ops"], "reader"), ("hr", "hana", ["hr"], "reader"), ("admin", "ada", ["ops"], "admin"),
        ("editor", "eve", ["ops"], "editor")]}
    with serve(project) as url:
        yield url, keys, project


def client(live: Live, key: str) -> httpx2.Client:
    return httpx2.Client(base_url=live[0], headers={"Authorization": f"Bearer {live[1][key]}"}, timeout=60)


def test_a_pipeline_runs_as_the_caller_with_labels_route_and_answer(live: Live) -> None:
    with client(live, "ops") as c:
        r = c.post("/v1/pipelines/ops-qa/run", json={"text": "How long are backups kept?"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["labels"]["topic"]["label"] == "backups" and out["route"] == "backups-team"
    assert not out["answer"]["abstained"] and "ninety days" in out["answer"]["text"]
    assert out["user"] == "otto"
    with client(live, "hr") as c:  # same pipeline, a caller who may not read the ops document
        hr = c.post("/v1/pipelines/ops-qa/run", json={"text": "How long are backups kept?"}).json()
    assert hr["answer"]["abstained"] and "ninety" not in json.dumps(hr["answer"])
    log = log_path(live[2].settings)
    runs = [rec for rec in map(json.loads, log.read_text().splitlines()) if rec.get("route") == "api:run"]
    assert [(rec["principal"]["user"] if isinstance(rec["principal"], dict) else rec["principal"])
            for rec in runs] == ["otto", "hana"]  # each run, as its caller


@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("nope", {"text": "x"}, 404, "pipeline_not_found"),
    ("ragtune.yaml", {"text": "x"}, 404, "pipeline_not_found"),  # never a file path on the server
    ("ops-qa", {"text": ""}, 422, "invalid_request"),
    ("ops-qa", {"text": "x", "user": "root"}, 400, "principal_in_request"),
])
def test_bad_pipeline_runs_are_refused(live: Live, name: str, body: dict[str, str],
                                       status: int, code: str) -> None:
    with client(live, "ops") as c:
        r = c.post(f"/v1/pipelines/{name}/run", json=body)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text


def test_registry_routes_need_admin_and_hide_paths(live: Live) -> None:
    for key in ("ops", "editor"):
        with client(live, key) as c:
            assert c.get("/v1/registry/models").status_code == 403
            assert c.get("/v1/registry/models/topic").status_code == 403
    with client(live, "admin") as c:
        listing = c.get("/v1/registry/models")
        one = c.get("/v1/registry/models/topic")
        missing = c.get("/v1/registry/models/nope")
    assert listing.status_code == 200 and [m["name"] for m in listing.json()["models"]] == ["topic"]
    card = one.json()
    assert card["version"] == 1 and card["versions"] == [1] and card["classes"] == ["backups", "card"]
    assert card["method"] == "head" and card["data_file"] == "train.csv"
    assert "secret" not in one.text and "secret" not in listing.text
    assert str(live[2].settings.project_dir) not in one.text
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"

