"""The project, server and logged-in HTTP clients of the page tests (tests/ui/test_pages.py): plain HTTP against a
real uvicorn server, no browser.

The project holds hr and ops documents (one hr document's title holds a ``<script>`` tag), a small real
classifier ``topic`` (a head over the packaged MiniLM; v1, promoted, with an evaluation report, and v2), the
project pipeline ``ops-qa``, an advisor evidence report and, outside the registry, an HTML file the report route
must never serve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx2
from helpers import OPS_PIPELINE as PIPELINE
from helpers import TOPIC_TRAIN as TRAIN
from helpers import write

from ragtune.config import init_project
from ragtune.project import Project
from ragtune.reporting import write_markdown_and_html

SCRIPT_TITLE = "Notice <script>alert(1)</script>"
ADVISOR_REPORT = "# ragtune advisor report\n\n**Recommendation: rag**\n\n- <script>alert(2)</script> stays text\n"
# (key name, user, groups, role)
USERS = [("hr", "hana", ["hr"], "reader"), ("ops", "otto", ["ops"], "reader"),
         ("editor", "eve", ["ops"], "editor"), ("admin", "ada", ["hr", "ops"], "admin")]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class PagesServer:
    """The running server, its project and each user's API key (by key name)."""

    url: str
    project: Project
    keys: dict[str, str]

    def doc_id(self, path_end: str) -> str:
        """The id of the one document whose source path ends with ``path_end``."""
        found = [d.doc_id for d in self.project.sources() if d.source_path.endswith(path_end)]
        assert len(found) == 1, f"expected one document ending {path_end!r}, found {found}"
        return found[0]

    def anonymous(self) -> httpx2.Client:
        """A client without a session (redirects are not followed)."""
        return httpx2.Client(base_url=self.url, timeout=60, follow_redirects=False)

    def login(self, key: str) -> UiClient:
        """A client logged in through the log-in form as the user of ``key``."""
        client = self.anonymous()
        form = client.get("/ui/login")
        match = _CSRF.search(form.text)
        assert match, form.text
        done = client.post("/ui/login", data={"api_key": self.keys[key], "csrf": match.group(1)})
        assert done.status_code == 303 and done.headers["location"] == "/ui/", done.text
        page = client.get("/ui/")
        token = _CSRF.search(page.text)
        assert page.status_code == 200 and token, page.text
        return UiClient(client, token.group(1))


@dataclass
class UiClient:
    """A logged-in HTTP client and its session's CSRF token."""

    http: httpx2.Client
    csrf: str


def build_project(root: Path) -> tuple[Project, dict[str, str]]:
    """The project under test and key name -> key text."""
    from ragtune.tuning.head import HeadClassifier
    from ragtune.tuning.registry import new_card

    write(root / "docs" / "hr" / "_acl.yaml", "acl: {groups: [hr]}\n")
    write(root / "docs" / "hr" / "leave.md", "# Leave\n\nParental leave lasts sixteen weeks at full pay.\n")
    md_title = SCRIPT_TITLE.replace("<", "\\<")  # escaped, so Markdown keeps the tag as text in the title
    write(root / "docs" / "hr" / "notice.md", f"# {md_title}\n\nReport odd form fields to security.\n")
    write(root / "docs" / "ops" / "_acl.yaml", "acl: {groups: [ops]}\n")
    write(root / "docs" / "ops" / "backups.md", "# Backups\n\nBackups are kept for ninety days in two regions.\n")
    init_project(root / "p")
    project = Project.open(root / "p")
    # The tests share this server and poll its job fragments: no rate limit gets in their way here.
    project.settings = project.settings.model_copy(update={
        "service": project.settings.service.model_copy(update={"rate_limit_per_minute": 1_000_000})})
    project.ingest(root / "docs")
    clf = HeadClassifier().fit([t for t, _ in TRAIN], [lab for _, lab in TRAIN])
    card = project.registry.register("topic", clf, new_card("head", clf, "abc123", str(root / "train.csv")))
    write_markdown_and_html(project.registry.path("topic", card.version), "Model topic v1",
                            "# Model topic v1\n\naccuracy 1.0\n")
    project.registry.register("topic", clf, new_card("head", clf, "abc123", str(root / "train.csv")))  # v2, no report
    project.registry.promote("topic", 1)
    project_dir = project.settings.project_dir
    write(project_dir / "pipelines" / "ops-qa.yaml", PIPELINE)
    write(project_dir / "advisor-reports" / "first" / "report.md", ADVISOR_REPORT)
    write(project_dir / "secret.html", "<p>outside the registry</p>")
    keys = {name: project.key_store.create(user, groups, role)[1] for name, user, groups, role in USERS}
    return project, keys
