"""The web UI is usable by everyone: axe-core finds no serious or critical violation on any page, every page
renders under its CSP with one ``<h1>`` in ``<main>``, the chat works from the keyboard, and narrow (390 px)
screens need no horizontal scrolling."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, expect

from .browser import PAGES, UiServer, describe, finished_answer, login, open_page, serious_violations, settle
from .conftest import NewContext


def test_axe_reports_a_known_violation(new_context: NewContext, axe_js: Path) -> None:
    """The harness itself works: axe runs in the page and reports an image without alternative text, so an
    empty list below means no violations, not a silent failure to run."""
    page = new_context().new_page()
    page.set_content('<html lang="en"><head><title>t</title></head><body><main><h1>t</h1>'
                     '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></main></body></html>')
    assert "image-alt" in {v["id"] for v in serious_violations(page, axe_js)}


@pytest.mark.parametrize("name", PAGES)
def test_no_serious_or_critical_accessibility_violations(name: str, ui: UiServer, new_context: NewContext,
                                                         axe_js: Path) -> None:
    # bypass_csp for the accessibility context only: add_script_tag(path=) inserts axe's source as an inline
    # <script>, which the UI's CSP (script-src 'self') rightly refuses. The other tests keep the CSP on.
    page, status = open_page(name, new_context(bypass_csp=True), ui)
    assert status == 200, f"/ui page {name} answered {status}"
    settle(page)
    violations = serious_violations(page, axe_js)
    assert not violations, f"axe-core on {name} ({page.url}):\n{describe(violations)}"


@pytest.mark.parametrize("name", PAGES)
def test_each_page_renders_under_its_csp_with_one_h1_in_main(name: str, ui: UiServer,
                                                             new_context: NewContext) -> None:
    context = new_context()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    context.on("console", on_console)
    context.on("weberror", lambda error: problems.append(f"uncaught: {error.error}"))
    page, status = open_page(name, context, ui)
    assert status == 200, f"/ui page {name} answered {status}"
    settle(page)
    expect(page.locator("main#main")).to_have_count(1)
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("main#main h1")).to_have_count(1)
    # the page's scripts and styles all loaded (a refused inline script or style logs a CSP error)
    assert not problems, f"{name}: " + "\n".join(problems)


@pytest.mark.parametrize("path", ["/ui/", "/ui/documents"])
def test_a_390px_wide_screen_needs_no_horizontal_scrolling(path: str, ui: UiServer, new_context: NewContext) -> None:
    page = login(new_context(viewport={"width": 390, "height": 844}), ui.url, ui.keys["editor"])
    page.goto(ui.url + path)
    if path == "/ui/":
        answer_before = page.locator("article.answer").count()
        page.get_by_label("Question").fill("How long are backups kept, and in how many regions are they stored?")
        page.get_by_role("button", name="Ask").click()
        finished_answer(page, answer_before)
        page.locator("details.latency summary").first.click()  # the widest part: the latency table
    settle(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{path} is {width} px wide on a 390 px screen"


def test_the_question_box_is_reached_with_tab_and_the_form_sent_with_the_keyboard(
        ui: UiServer, new_context: NewContext) -> None:
    page = login(new_context(), ui.url, ui.keys["ops"])
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "question":
            break
    else:
        pytest.fail("Tab never reached the question box (#question)")
    page.keyboard.type("How long are backups kept?")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Ask")).to_be_focused()
    page.keyboard.press("Enter")
    answer = finished_answer(page, 0)
    expect(answer.locator("ol.citations a.citation").first).to_be_visible()
