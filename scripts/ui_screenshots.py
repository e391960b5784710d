"""Screenshots of every web UI page (docs/ui/*.png), taken in headless Chromium against a real server.

Builds a small demo project in a temporary folder (the sample policy corpus of examples/data/policies; the admin
may read the retail, media and public policies), serves it on 127.0.0.1, logs in as the admin, asks one of the
demo questions, rates the answer, and saves each page 1280 px wide, plus the chat 390 px wide (chat-390.png).

    .venv/bin/python scripts/ui_screenshots.py [--out docs/ui] [--project DIR]

Needs the dev extra (Playwright) and Debian's Chromium at /usr/bin/chromium (``python tests/ui/setup_browser.py``
installs it). Exits 1 naming each page that did not answer 200.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragtune.project import Project

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "data" / "policies" / "corpus"
QUESTION = "Do you share my personal information with vendors who help fulfill my purchases?"
CHROMIUM = Path("/usr/bin/chromium")
PAGES = [("documents", "/ui/documents"), ("history", "/ui/history"), ("pipelines", "/ui/pipelines"),
         ("classify", "/ui/classify"), ("models", "/ui/models"), ("advisor", "/ui/advisor"),
         ("metrics", "/ui/metrics"), ("feedback", "/ui/feedback")]


def build_project(folder: Path) -> tuple[Project, str]:
    """The demo project in ``folder`` (created and ingested unless it exists) and a fresh admin key."""
    from ragtune.config import init_project
    from ragtune.project import Project

    if not (folder / "ragtune.yaml").exists():
        init_project(folder)
        Project.open(folder).ingest(CORPUS)
    project = Project.open(folder)
    _, key = project.key_store.create("ada", ["retail", "media"], "admin")
    return project, key


def shrink(path: Path) -> None:
    """Re-save a screenshot with a 256-colour palette: a third of the size, and the UI's flat colours survive."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def shoot(url: str, key: str, out: Path) -> list[str]:
    """Save every page's screenshot under ``out``; returns the problems (pages that did not answer 200)."""
    from playwright.sync_api import Page, expect, sync_playwright

    problems: list[str] = []

    def save(page: Page, name: str, status: int | None, full_page: bool = True) -> None:
        if status != 200:
            problems.append(f"{name}: {page.url} answered {status}")
        page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)
        shrink(out / f"{name}.png")
        print(f"  {out / f'{name}.png'} ({status})")

    def ask(page: Page) -> None:
        page.get_by_label("Question").fill(QUESTION)
        page.get_by_role("button", name="Ask").click()
        expect(page.locator("article.answer").last).to_have_attribute("data-done", "1", timeout=120_000)

    def log_in(page: Page) -> None:
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{url}/ui/")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        response = page.goto(f"{url}/ui/login")
        save(page, "login", response.status if response else None)
        log_in(page)
        ask(page)
        answer = page.locator("article.answer").last
        if answer.locator("form.feedback").count():
            answer.get_by_label("Comment").fill("Clear, and the citation points at the right paragraph.")
            answer.get_by_role("button", name="Helpful", exact=True).click()
            answer.locator("p.thanks").wait_for()
        save(page, "chat", 200)
        citation = answer.locator("a.citation").first
        if citation.count():
            citation.click()
            page.wait_for_url("**/ui/documents/**")
            page.evaluate("document.getElementById('hl').scrollIntoView({block: 'center'})")
            # the viewport around the highlighted passage: a whole policy document makes a huge PNG
            save(page, "document", 200 if page.locator("mark#hl").count() else None, full_page=False)
        else:
            problems.append("document: the answer had no citation to open")
        for name, path in PAGES:
            response = page.goto(url + path)
            save(page, name, response.status if response else None)

        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(f"{url}/ui/login")
        log_in(page)
        ask(page)
        save(page, "chat-390", 200)
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots; 1 when a prerequisite is missing or a page did not answer 200."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ui", help="folder for the PNGs")
    parser.add_argument("--project", type=Path, help="reuse (or create) the demo project here instead of a "
                                                     "temporary folder (saves the ingest on later runs)")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing; install it with: python tests/ui/setup_browser.py "
              "(or apt-get install -y chromium, as root)", file=sys.stderr)
        return 1
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("error: Playwright is missing; install the dev extra: pip install -e '.[dev]'", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ragtune-ui-") as tmp:
        project, key = build_project(args.project or Path(tmp) / "demo")
        print("serving the demo project; taking screenshots:")
        from ragtune.server.local import serve_in_thread

        with serve_in_thread(project) as url:
            problems = shoot(url, key, args.out)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
