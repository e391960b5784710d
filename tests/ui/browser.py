"""Helpers of the browser tests: the project and server under test, logging in, asking, and running axe-core.

The server is a real uvicorn on 127.0.0.1 (a free port) in a thread over a real project with two departments'
documents, a document whose text holds a ``<script>`` tag, and API keys for a reader of each department, an
editor and an admin.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import write
from playwright.sync_api import BrowserContext, Locator, Page, Response, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from ragtune.config import init_project
from ragtune.core import Principal
from ragtune.project import Project

HR_TEXT = "Parental leave lasts sixteen weeks at full pay."
OPS_TEXT = "Backups are kept for ninety days in two regions."
SCRIPT = "<script>alert(1)</script>"
SCRIPT_TEXT = f"Phishing mails with the text {SCRIPT} are reported to the security team within two hours."
SCRIPT_DOC = f'---\ntitle: "Security {SCRIPT} notice"\n---\n# Phishing\n\n{SCRIPT_TEXT}\n'
# (key name, user, groups, role)
USERS = [("hr", "hana", ["hr"], "reader"), ("ops", "otto", ["ops"], "reader"),
         ("editor", "eve", ["ops"], "editor"), ("admin", "ada", ["hr", "ops"], "admin")]
ANSWER_TIMEOUT_MS = 60_000


@dataclass
class UiServer:
    """The running server: its base URL, the project it serves and each user's API key (by key name)."""

    url: str
    project: Project
    keys: dict[str, str]

    def doc_ids(self, group: str) -> set[str]:
        """Ids of the documents whose ACL names ``group``."""
        return {d.doc_id for d in self.project.sources() if f"group:{group}" in d.acl}

    def doc_id(self, path_end: str) -> str:
        """The id of the one document whose source path ends with ``path_end``."""
        found = [d.doc_id for d in self.project.sources() if d.source_path.endswith(path_end)]
        assert len(found) == 1, f"expected one document ending {path_end!r}, found {found}"
        return found[0]


def build_project(root: Path) -> tuple[Project, dict[str, str]]:
    """A project over hr and ops documents (and the ``<script>`` notice, readable by hr) with the four users'
    keys; returns the project and key name -> key text."""
    write(root / "docs" / "hr" / "_acl.yaml", "acl: {groups: [hr]}\n")
    write(root / "docs" / "hr" / "leave.md", f"# Leave\n\n{HR_TEXT}\n")
    write(root / "docs" / "hr" / "notice.md", SCRIPT_DOC)
    write(root / "docs" / "ops" / "_acl.yaml", "acl: {groups: [ops]}\n")
    write(root / "docs" / "ops" / "backups.md", f"# Backups\n\n{OPS_TEXT}\n")
    init_project(root / "p")
    project = Project.open(root / "p")
    # Several tests share this server and poll it (htmx job polling): no per-key throttling here.
    project.settings = project.settings.model_copy(update={
        "service": project.settings.service.model_copy(update={"rate_limit_per_minute": 1_000_000})})
    project.ingest(root / "docs")
    keys = {}
    for name, user, groups, role in USERS:
        _, keys[name] = project.key_store.create(user, groups, role)
    return project, keys


def login(context: BrowserContext, url: str, key: str) -> Page:
    """A new page of ``context`` logged in with ``key`` through the log-in form, on the chat page."""
    page = context.new_page()
    page.goto(f"{url}/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/ui/")
    return page


def ask(page: Page, question: str) -> Locator:
    """Ask ``question`` in the chat form (the page must be on the chat page); returns the finished answer."""
    before = page.locator("article.answer").count()
    page.get_by_label("Question").fill(question)
    page.get_by_role("button", name="Ask").click()
    return finished_answer(page, before)


def finished_answer(page: Page, before: int) -> Locator:
    """The answer article after the first ``before`` ones, once ui.js marks it done."""
    article = page.locator("article.answer").nth(before)
    expect(article).to_have_attribute("data-done", "1", timeout=ANSWER_TIMEOUT_MS)
    return article


def cited_doc_ids(answer: Locator) -> list[str]:
    """The document id of each citation link of an answer (from ``/ui/documents/{doc_id}?chunk=...#hl``)."""
    hrefs = [a.get_attribute("href") or "" for a in answer.locator("ol.citations a.citation").all()]
    ids = []
    for href in hrefs:
        m = re.fullmatch(r"/ui/documents/([^/?#]+)\?chunk=[^#]+#hl", href)
        assert m, f"a citation link does not have the contract's form /ui/documents/ID?chunk=ID#hl: {href!r}"
        ids.append(m.group(1))
    return ids


def status_of(response: Response | None) -> int:
    """The status of a navigation's response (fails if the navigation had none)."""
    assert response is not None, "the navigation got no response"
    return response.status


def csrf_of(page: Page) -> str:
    """The session's CSRF token, from the hidden ``csrf`` field of the page's forms."""
    token = page.locator('input[type="hidden"][name="csrf"]').first.get_attribute("value")
    assert token, "the page's forms carry no hidden csrf field"
    return token


def serious_violations(page: Page, axe_js: Path) -> list[dict[str, Any]]:
    """axe-core's violations of impact serious or critical on ``page`` (which must be in a CSP-bypassing
    context: ``add_script_tag(path=)`` inserts axe as an inline script, which the UI's CSP forbids)."""
    page.add_script_tag(path=str(axe_js))
    result: dict[str, Any] = page.evaluate("axe.run()")
    return [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    """axe violations as readable lines: rule id, impact, help and each offending node's selector and HTML."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} {v.get('helpUrl', '')}")
        for node in v.get("nodes", [])[:8]:
            lines.append(f"    {node.get('target')}: {node.get('html', '')[:200]}")
            if node.get("failureSummary"):
                lines.append("      " + node["failureSummary"].replace("\n", "\n      "))
    return "\n".join(lines)


PAGES = ["login", "chat", "history", "documents", "document", "pipelines", "classify", "models", "advisor",
         "metrics", "feedback"]
_PATHS = {"pipelines": "/ui/pipelines", "classify": "/ui/classify", "models": "/ui/models",
          "advisor": "/ui/advisor", "metrics": "/ui/metrics", "feedback": "/ui/feedback", "documents": "/ui/documents"}


def open_page(name: str, context: BrowserContext, ui: UiServer) -> tuple[Page, int]:
    """One of :data:`PAGES` opened as the admin (the log-in page without a session), with something on it: the
    chat and history pages after a question, the document view on a cited chunk. Returns the page and the status
    of its navigation."""
    if name == "login":
        page = context.new_page()
        return page, status_of(page.goto(f"{ui.url}/ui/login"))
    page = login(context, ui.url, ui.keys["admin"])
    if name in ("chat", "history"):
        status = status_of(page.goto(f"{ui.url}/ui/"))
        ask(page, "How long is parental leave?")
        return page, status if name == "chat" else status_of(page.goto(f"{ui.url}/ui/history"))
    if name == "document":
        doc_id = ui.doc_id("leave.md")
        [chunk, *_] = ui.project.document_chunks(doc_id, Principal("ada", frozenset({"hr", "ops"})))
        return page, status_of(page.goto(f"{ui.url}/ui/documents/{doc_id}?chunk={chunk.chunk_id}#hl"))
    return page, status_of(page.goto(ui.url + _PATHS[name]))


def settle(page: Page) -> None:
    """Wait until the page's own requests (htmx loads) are done, for at most 5 s (a job may keep polling)."""
    with suppress(PlaywrightTimeoutError):
        page.wait_for_load_state("networkidle", timeout=5_000)
