"""The web UI's documents, jobs, pipelines, classify, models, advisor and metrics pages over plain HTTP (a real
uvicorn server, a real project and a real classifier; no browser): who may open each page, what each shows, that
every form needs the session's CSRF token, and that document text and file paths cannot escape their place."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx2
import pytest
from helpers import serve_project as serve

from ragtune.audit.log import log_path
from ragtune.server.ui.pages_metrics import Snapshot, quantile, series, sparkline

from .pages_fixtures import SCRIPT_TITLE, PagesServer, UiClient, build_project

HX = {"HX-Request": "true"}
ROLES = ("hr", "editor", "admin")  # a reader, an editor, an admin
PAGES = [  # (path, the roles that may open it)
    ("/ui/documents", ROLES), ("/ui/pipelines", ROLES), ("/ui/classify", ROLES), ("/ui/advisor", ROLES),
    ("/ui/models", ("admin",)), ("/ui/models/topic", ("admin",)),
    ("/ui/models/topic/report/v1/report.html", ("admin",)), ("/ui/metrics", ("admin",)),
    ("/ui/advisor/reports/advisor-reports/first", ("admin",)),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesServer]:
    project, keys = build_project(tmp_path_factory.mktemp("pages"))
    with serve(project) as url:
        yield PagesServer(url, project, keys)


@pytest.fixture(scope="module")
def users(live: PagesServer) -> Iterator[dict[str, UiClient]]:
    clients = {name: live.login(name) for name in ("hr", "ops", "editor", "admin")}
    yield clients
    for c in clients.values():
        c.http.close()


def table(html: str, table_id: str) -> str:
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert match, f"no table #{table_id} in the page"
    return match.group(1)


def wait_job(client: UiClient, html: str, timeout: float = 90) -> str:
    """Poll the job fragment the page started (as htmx does) until it has finished; returns the last fragment."""
    match = re.search(r'hx-get="/ui/jobs/([0-9a-f]+)"', html)
    assert match, html
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fragment = client.http.get(f"/ui/jobs/{match.group(1)}", headers=HX)
        assert fragment.status_code == 200, fragment.text
        if "hx-get=" not in fragment.text:  # finished: the fragment stops polling
            return fragment.text
        time.sleep(0.3)
    raise AssertionError("the job did not finish in time")


def upload(client: UiClient, files: list[tuple[str, bytes]], acl: str = "group:ops") -> httpx2.Response:
    return client.http.post("/ui/documents/upload", data={"csrf": client.csrf, "acl": acl},
                            files=[("files", (name, body, "application/octet-stream")) for name, body in files])


def test_every_page_redirects_to_the_log_in_without_a_session(live: PagesServer) -> None:
    with live.anonymous() as c:
        for path, _ in [*PAGES, ("/ui/jobs/0123", ())]:
            r = c.get(path)
            assert (r.status_code, r.headers.get("location")) == (303, "/ui/login"), path


@pytest.mark.parametrize(("path", "allowed"), PAGES)
def test_each_page_opens_for_the_roles_allowed_and_is_forbidden_to_the_others(
        users: dict[str, UiClient], path: str, allowed: tuple[str, ...]) -> None:
    for role in ROLES:
        r = users[role].http.get(path)
        if role in allowed:
            assert r.status_code == 200, (role, path, r.text[:500])
            assert "Content-Security-Policy" in r.headers and r.headers["X-Content-Type-Options"] == "nosniff"
            if "report" not in path or "advisor" in path:
                assert r.text.count("<h1") == 1, (role, path)
        else:
            assert r.status_code == 403, (role, path)
            assert "<h1>Forbidden</h1>" in r.text


def test_only_admins_see_the_models_and_metrics_links(users: dict[str, UiClient]) -> None:
    reader, admin = users["hr"].http.get("/ui/documents").text, users["admin"].http.get("/ui/documents").text
    assert 'href="/ui/models"' not in reader and 'href="/ui/metrics"' not in reader
    assert 'href="/ui/models"' in admin and 'href="/ui/metrics"' in admin


def test_readers_see_only_their_documents_and_no_upload_form(live: PagesServer, users: dict[str, UiClient]) -> None:
    hr = users["hr"].http.get("/ui/documents").text
    rows = table(hr, "documents")
    assert "leave.md" in rows and f'href="/ui/documents/{live.doc_id("hr/leave.md")}"' in rows
    assert "backups.md" not in rows and live.doc_id("ops/backups.md") not in hr  # never an ops document
    ops = table(users["ops"].http.get("/ui/documents").text, "documents")
    assert "backups.md" in ops and "leave.md" not in ops
    assert 'id="files"' not in hr and "Upload and sync" not in hr and "Sync now" not in hr
    assert ">ACL<" not in rows  # as in GET /v1/documents, readers are not shown ACLs
    editor = users["editor"].http.get("/ui/documents").text
    assert '<input type="file" id="files" name="files" multiple' in editor
    assert '<label for="files">Files</label>' in editor
    assert "Upload and sync" in editor and "Sync now" in editor and "group:ops" in table(editor, "documents")
    for path in ("/ui/documents/upload", "/ui/documents/sync"):  # the forms' URLs refuse readers too
        r = users["hr"].http.post(path, data={"csrf": users["hr"].csrf}, files=[("files", ("x.md", b"# X\n"))])
        assert r.status_code == 403, path


def test_a_title_with_a_script_tag_is_shown_as_text(live: PagesServer, users: dict[str, UiClient]) -> None:
    assert SCRIPT_TITLE in [d.title for d in live.project.sources()]
    html = users["hr"].http.get("/ui/documents").text
    assert "Notice &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT_TITLE not in html and "<script>alert" not in html


def test_an_editors_upload_runs_as_a_job_and_the_document_is_then_listed(
        live: PagesServer, users: dict[str, UiClient]) -> None:
    editor = users["editor"]
    r = upload(editor, [("runbook.md", b"# Runbook\n\nRestart the ingest worker with the blue button.\n")])
    assert r.status_code == 200, r.text
    assert '<div id="job"' in r.text and 'hx-trigger="load delay:1s"' in r.text  # the page polls the job
    done = wait_job(editor, r.text)
    assert '<p class="job-done">' in done and "job-failed" not in done
    assert 'href="/ui/documents"' in done  # tells the user to reload the list
    assert "Runbook" in table(editor.http.get("/ui/documents").text, "documents")
    assert "Runbook" in table(users["ops"].http.get("/ui/documents").text, "documents")  # acl group:ops
    assert "Runbook" not in table(users["hr"].http.get("/ui/documents").text, "documents")
    with live.anonymous() as c:  # the same job is not another user's to watch
        assert c.get(re.search(r'hx-get="(/ui/jobs/[0-9a-f]+)"', r.text).group(1)).status_code == 303  # type: ignore[union-attr]


def test_an_upload_without_an_acl_is_readable_by_the_uploaders_groups_only(users: dict[str, UiClient]) -> None:
    done = wait_job(users["editor"], upload(users["editor"], [("shifts.md", b"# Shifts\n\nNight shift."
                                                                            b" starts at ten.\n")], acl="").text)
    assert '<p class="job-done">' in done
    assert "group:ops" in table(users["admin"].http.get("/ui/documents").text, "documents").split("Shifts")[1][:300]
    assert "Shifts" not in table(users["hr"].http.get("/ui/documents").text, "documents")


def test_a_corrupt_file_is_listed_as_failed_with_its_reason(live: PagesServer, users: dict[str, UiClient]) -> None:
    editor = users["editor"]
    r = upload(editor, [("broken.pdf", b"%PDF-1.4 this is not really a PDF"),
                        ("fine.md", b"# Fine\n\nThis one is fine.\n")])
    done = wait_job(editor, r.text)
    assert '<p class="job-failed">' in done and "job-done" not in done
    failed = re.findall(r"<li><code>(.*?)</code>: (.+?)</li>", done, re.S)
    assert [name for name, _ in failed] == ["broken.pdf"] and "PDF" in failed[0][1]  # with the parser's reason
    listed = table(editor.http.get("/ui/documents").text, "documents")
    assert "Fine" in listed and "broken.pdf" not in listed
    assert not list((live.project.settings.project_dir / "uploads").glob("*/broken.pdf"))  # nothing kept of it


def test_an_unsupported_format_is_refused_before_any_job(users: dict[str, UiClient]) -> None:
    r = upload(users["editor"], [("tool.exe", b"MZ")])
    assert r.status_code == 415 and "unsupported format" in r.text and 'hx-get="/ui/jobs/' not in r.text
    fragment = users["editor"].http.post("/ui/documents/upload", headers=HX, data={"csrf": users["editor"].csrf,
                                         "acl": "group:ops"}, files=[("files", ("tool.exe", b"MZ"))])
    assert fragment.status_code == 200 and '<p class="error" role="alert">' in fragment.text  # htmx swaps it in


def test_sync_now_runs_a_job_that_an_admin_may_watch_and_a_reader_may_not(users: dict[str, UiClient]) -> None:
    r = users["editor"].http.post("/ui/documents/sync", data={"csrf": users["editor"].csrf})
    assert r.status_code == 200 and "Sync job" in r.text
    done = wait_job(users["editor"], r.text)
    assert '<p class="job-done">' in done
    job = re.search(r'hx-get="(/ui/jobs/[0-9a-f]+)"', r.text).group(1)  # type: ignore[union-attr]
    assert users["admin"].http.get(job, headers=HX).status_code == 200
    assert users["hr"].http.get(job).status_code == 403
    assert users["editor"].http.get("/ui/jobs/" + "0" * 32).status_code == 404


@pytest.mark.parametrize(("path", "data"), [
    ("/ui/documents/sync", {}), ("/ui/pipelines/run", {"name": "ops-qa", "text": "backups?"}),
    ("/ui/classify", {"model": "topic", "texts": "backups?"}), ("/ui/advisor", {"task": "classification"}),
    ("/ui/documents/upload", {"acl": "group:ops"}),
])
def test_a_form_without_the_sessions_csrf_token_is_refused(users: dict[str, UiClient], path: str,
                                                            data: dict[str, str]) -> None:
    editor = users["editor"]
    files = [("files", ("x.md", b"# X\n\nx\n"))] if "upload" in path else None
    for token in ({}, {"csrf": "not-the-token"}):
        r = editor.http.post(path, data={**data, **token}, files=files)
        assert r.status_code == 403 and "CSRF" in r.text, (path, token)


def test_a_pipeline_runs_as_the_user_with_labels_route_answer_and_citations(
        live: PagesServer, users: dict[str, UiClient]) -> None:
    page = users["ops"].http.get("/ui/pipelines").text
    assert '<option value="ops-qa">' in page and '<option value="support-triage">' in page
    ops = users["ops"]
    r = ops.http.post("/ui/pipelines/run", headers=HX, data={"csrf": ops.csrf, "name": "ops-qa",
                                                              "text": "How long are backups kept?"})
    assert r.status_code == 200, r.text
    assert "backups-team" in r.text and re.search(r'<td class="label">backups</td>', r.text)
    assert "ninety days" in r.text and "Time per step" in r.text
    assert f'href="/ui/documents/{live.doc_id("ops/backups.md")}?chunk=' in r.text
    hr = users["hr"]
    other = hr.http.post("/ui/pipelines/run", data={"csrf": hr.csrf, "name": "ops-qa",
                                                     "text": "How long are backups kept?"})
    assert other.status_code == 200 and 'class="abstained"' in other.text and "ninety" not in other.text
    assert other.text.count("<h1") == 1  # without htmx: the whole page with the result
    runs = [rec for rec in map(json.loads, log_path(live.project.settings).read_text().splitlines())
            if rec.get("route") == "ui:run"]
    users_run = [rec["principal"]["user"] if isinstance(rec["principal"], dict) else rec["principal"] for rec in runs]
    assert users_run == ["otto", "hana"]  # each run audited, as its user
    bad = hr.http.post("/ui/pipelines/run", data={"csrf": hr.csrf, "name": "../ragtune", "text": "x"})
    assert bad.status_code == 404 and "no pipeline" in bad.text


def test_classify_shows_the_top_labels_per_text_and_the_threshold(live: PagesServer,
                                                                   users: dict[str, UiClient]) -> None:
    ops = users["ops"]
    assert '<option value="topic">' in ops.http.get("/ui/classify").text
    r = ops.http.post("/ui/classify", headers=HX, data={
        "csrf": ops.csrf, "model": "topic", "texts": "where is the card you sent\nhow many days of backups exist",
        "top_k": "2"})
    assert r.status_code == 200, r.text
    rows = re.findall(r'<tr><th scope="row">(.*?)</th><td class="label[^"]*">(\w+) \(([\d.]+)\)</td>\s*<td>(.*?)</td>',
                      table(r.text, "classified"), re.S)
    assert [(text, label) for text, label, _, _ in rows] == [("where is the card you sent", "card"),
                                                             ("how many days of backups exist", "backups")]
    assert all(len(re.findall(r"<li>", top)) == 2 for *_, top in rows)  # top 2 per text
    threshold = live.project.classifier("topic").threshold
    assert f"abstain threshold <strong>{round(threshold, 3)}</strong>" in r.text
    missing = ops.http.post("/ui/classify", data={"csrf": ops.csrf, "model": "nope", "texts": "x", "top_k": "1"})
    assert missing.status_code == 404 and "no model named" in missing.text


def test_a_models_card_embeds_its_report_in_a_sandboxed_frame(users: dict[str, UiClient]) -> None:
    admin = users["admin"].http
    listing = table(admin.get("/ui/models").text, "models")
    assert 'href="/ui/models/topic"' in listing and "<td>head</td><td>backups, card</td>" in listing
    assert re.search(r"<td>v1</td><td>v1</td>\s*<td>.*v1</a>, .*v2</a></td>", listing)  # serves v1 (promoted)
    assert "no evaluation report" in admin.get("/ui/models/topic?version=2").text
    page = admin.get("/ui/models/topic").text
    assert "Model topic v1" in page and "<td>v1</td>" in page.split("Promoted version")[1][:40]
    frame = re.search(r'<iframe class="report" src="([^"]+)" title="[^"]+" sandbox="">', page)
    assert frame and "train.csv" in page and "/tmp" not in page  # the data file by name, never its path
    report = admin.get(frame.group(1))
    assert report.status_code == 200 and "Model topic v1" in report.text
    csp = report.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script" not in csp


@pytest.mark.parametrize("path", ["..%2F..%2Fsecret.html", "%2E%2E%2F%2E%2E%2Fsecret.html", "..%2Fv1%2Fcard.json",
                                  "v1/card.json", "v1/..%2F..%2F..%2Fsecret.html", "%2Ftmp%2Fx.html"])
def test_the_report_route_serves_nothing_outside_the_models_folder(live: PagesServer, users: dict[str, UiClient],
                                                                   path: str) -> None:
    assert (live.project.settings.project_dir / "secret.html").is_file()
    r = users["admin"].http.get(f"/ui/models/topic/report/{path}")
    assert r.status_code == 404 and "outside the registry" not in r.text


def test_the_advisor_recommends_from_the_forms_answers_with_reasons(users: dict[str, UiClient]) -> None:
    hr = users["hr"]
    form = hr.http.get("/ui/advisor").text
    assert len(re.findall(r'<label for="q-', form)) == 8
    assert "Evidence reports" not in form  # the evidence reports are for admins
    answers = {"task": "answer-generation", "knowledge_change": "weekly", "citations": "yes",
               "structured_output": "no", "examples_per_class": "0", "fast_iteration": "yes", "latency_ms": "0",
               "regulated": "yes"}
    r = hr.http.post("/ui/advisor", headers=HX, data={"csrf": hr.csrf, **answers})
    assert r.status_code == 200 and "Recommendation: RAG" in r.text
    assert "retrieved answers cite the passages" in r.text and "ragtune ingest" in r.text  # reasons, next steps
    bad = hr.http.post("/ui/advisor", data={"csrf": hr.csrf, **answers, "task": ""})
    assert bad.status_code == 422 and "missing answer &#39;task&#39;" in bad.text


def test_advisor_evidence_reports_are_listed_for_admins_and_rendered_as_text(users: dict[str, UiClient]) -> None:
    admin = users["admin"].http
    assert 'href="/ui/advisor/reports/advisor-reports/first"' in admin.get("/ui/advisor").text
    report = admin.get("/ui/advisor/reports/advisor-reports/first").text
    assert "<strong>Recommendation: rag</strong>" in report and "&lt;script&gt;alert(2)&lt;/script&gt;" in report
    assert "<script>alert" not in report and report.count("<h1") == 1
    assert admin.get("/ui/advisor/reports/..%2Fsecret.html").status_code == 404


def test_the_metrics_page_shows_numbers_after_some_requests(live: PagesServer, users: dict[str, UiClient]) -> None:
    for _ in range(3):
        users["hr"].http.get("/ui/documents")
    with httpx2.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.keys['hr']}"}, timeout=60) as c:
        assert c.post("/v1/ask", json={"question": "How long does parental leave last?"}).status_code == 200
        assert c.post("/v1/ask", json={"question": "What is the capital of the moon?"}).status_code == 200
    html = users["admin"].http.get("/ui/metrics").text
    routes = table(html, "routes")
    docs_row = re.search(r'<th scope="row">/ui/documents</th><td class="num">(\d+)</td>', routes)
    assert docs_row and int(docs_row.group(1)) >= 3
    stages = re.findall(r'<th scope="row">(\w+)</th><td class="num">(\d+)</td><td class="num">([\d.]+)</td>',
                        table(html, "stages"))
    assert stages and all(int(count) >= 1 and float(p50) >= 0 for _, count, p50 in stages)
    assert re.search(r'id="abstention-rate">[\d.]+ % \(\d+ of ([2-9]|\d\d+)\)', html)  # both answers counted
    chunks = re.search(r'id="index-chunks">(\d+)<', html)
    assert chunks and int(chunks.group(1)) == live.project.store.count()
    assert re.search(r'<polyline class="spark-line" points="[\d., ]+"', html)  # over time, drawn inline
    assert "style=" not in html  # the CSP allows no inline style


def test_percentiles_are_estimated_from_histogram_buckets_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.95) == pytest.approx(0.19)
    assert quantile([(0.1, 0.0), (0.5, 4.0), (float("inf"), 10.0)], 0.99) == 0.5  # in +Inf: the largest bound
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert sparkline([1.0, 3.0, 2.0], width=100, height=40) == "0.0,38.0 50.0,2.0 100.0,20.0"


def test_the_over_time_series_are_per_interval_between_snapshots() -> None:
    inf = float("inf")
    a = Snapshot(0.0, 10, ((0.1, 10.0), (inf, 10.0)), answers=4, abstentions=1, cache_hits=0, cache_lookups=0)
    b = Snapshot(30.0, 40, ((0.1, 10.0), (inf, 40.0)), answers=8, abstentions=4, cache_hits=3, cache_lookups=4)
    out = series([a, b])  # 30 requests in 30 s, all slower than 0.1 s; 3 of 4 new answers abstained
    assert out == {"requests_per_min": [60.0], "p95_ms": [100.0], "abstention_pct": [75.0], "cache_hit_pct": [75.0]}
    assert series([a]) == {k: [] for k in out}
