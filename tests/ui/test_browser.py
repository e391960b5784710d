"""The web UI end to end in a real headless Chromium against a real server: who sees what, uploads, citations,
feedback, history, escaping, log-in and log-out, CSRF, the session cookie and the CSP header."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Dialog, Page, expect

from ragtune.core import Principal

from .browser import OPS_TEXT, SCRIPT, SCRIPT_TEXT, UiServer, ask, cited_doc_ids, csrf_of, login, status_of
from .conftest import NewContext

BOTH = "How long is parental leave and how long are backups kept?"
READER_NAV = {"Chat", "History", "Documents", "Pipelines", "Classify", "Advisor"}
ADMIN_NAV = {"Models", "Metrics", "Feedback"}


def nav_links(page: Page) -> set[str]:
    """The link texts of the main navigation."""
    return {t.strip() for t in page.get_by_role("navigation", name="Main").get_by_role("link").all_text_contents()}


def test_two_users_asking_the_same_question_see_only_their_own_departments_citations(
        ui: UiServer, new_context: NewContext) -> None:
    hr, ops = ui.doc_ids("hr"), ui.doc_ids("ops")
    for key, own, other, leaked in [("hr", hr, ops, "ninety days"), ("ops", ops, hr, "sixteen weeks")]:
        page = login(new_context(), ui.url, ui.keys[key])
        answer = ask(page, BOTH)
        cited = cited_doc_ids(answer)
        assert cited, f"{key}: the answer cites nothing"
        assert set(cited) <= own, f"{key}: cites documents outside its department: {set(cited) - own}"
        assert not set(cited) & other
        assert leaked not in (answer.text_content() or "")


def test_reader_sees_no_admin_navigation_and_admin_pages_answer_403(ui: UiServer, new_context: NewContext) -> None:
    reader = login(new_context(), ui.url, ui.keys["hr"])
    expect(reader.locator("span.who")).to_have_text("hana (reader)")
    links = nav_links(reader)
    assert links == READER_NAV, f"a reader's navigation: {sorted(links)}; the contract's: {sorted(READER_NAV)}"
    for path in ("/ui/metrics", "/ui/feedback"):
        response = reader.goto(ui.url + path)
        assert status_of(response) == 403, path
        expect(reader.locator("h1")).to_have_text("Forbidden")
    assert reader.context.request.get(ui.url + "/ui/feedback.jsonl").status == 403

    # The same checks pass for an admin, so the reader's result is not a broken locator or route.
    admin = login(new_context(), ui.url, ui.keys["admin"])
    links = nav_links(admin)
    assert links == READER_NAV | ADMIN_NAV
    for path in ("/ui/metrics", "/ui/feedback"):
        assert status_of(admin.goto(ui.url + path)) == 200, path


def test_editor_upload_appears_in_the_documents_table_after_the_sync_job(
        ui: UiServer, new_context: NewContext, tmp_path: Path) -> None:
    upload = tmp_path / "canteen-hours.md"
    upload.write_text("# Canteen\n\nLunch is served from noon until two in the canteen.\n", encoding="utf-8")
    page = login(new_context(), ui.url, ui.keys["editor"])
    page.goto(ui.url + "/ui/documents")
    table = page.locator("table#documents")
    expect(table).to_be_visible()
    expect(table).not_to_contain_text("canteen-hours")
    page.get_by_label("Files").set_input_files(upload)
    page.get_by_role("button", name="Upload and sync").click()
    job = page.locator("#job")
    expect(job.locator(".job-done, .job-failed")).to_be_visible(timeout=90_000)
    assert job.locator(".job-failed").count() == 0, job.text_content()
    page.goto(ui.url + "/ui/documents")
    expect(page.locator("table#documents tr", has_text="canteen-hours")).to_have_count(1)
    assert any(d.source_path.endswith("canteen-hours.md") for d in ui.project.sources())
    # with the form's ACL left empty the upload is readable by the uploader's groups only (ops, not hr)
    for key, sees in [("ops", 1), ("hr", 0)]:
        reader = login(new_context(), ui.url, ui.keys[key])
        reader.goto(ui.url + "/ui/documents")
        expect(reader.locator("table#documents tr", has_text="canteen-hours")).to_have_count(sees)


def test_a_reader_sees_no_upload_form(ui: UiServer, new_context: NewContext) -> None:
    page = login(new_context(), ui.url, ui.keys["hr"])
    page.goto(ui.url + "/ui/documents")
    expect(page.locator("table#documents")).to_contain_text("leave")
    expect(page.locator("table#documents")).not_to_contain_text("backups")
    assert page.locator("input#files").count() == 0
    assert page.get_by_role("button", name="Sync now").count() == 0


def test_a_citation_opens_the_document_with_the_cited_passage_highlighted(
        ui: UiServer, new_context: NewContext) -> None:
    page = login(new_context(), ui.url, ui.keys["ops"])
    answer = ask(page, "How long are backups kept?")
    link = answer.locator("a.citation").first
    href = link.get_attribute("href") or ""
    chunk_id = re.search(r"chunk=([^#&]+)", href)
    assert chunk_id, href
    link.click()
    page.wait_for_url(re.compile(r"/ui/documents/"))
    mark = page.locator("mark#hl")
    expect(mark).to_be_visible()
    text = " ".join((mark.text_content() or "").split())
    assert OPS_TEXT in text
    doc_id = ui.doc_id("backups.md")
    chunks = {c.chunk_id: c for c in ui.project.document_chunks(doc_id, Principal("otto", frozenset({"ops"})))}
    assert chunk_id.group(1) in chunks, "the highlighted chunk is not the backups document's"
    assert " ".join(chunks[chunk_id.group(1)].text.split()) == text
    # the passage is part of the document page (in a section of main), not a separate view
    expect(page.locator("main section.chunk mark#hl")).to_have_count(1)


def test_feedback_is_recorded_and_the_admin_exports_it(ui: UiServer, new_context: NewContext) -> None:
    question = "Is parental leave paid in full?"
    comment = "Please also say when it starts (feedback test)."
    page = login(new_context(), ui.url, ui.keys["hr"])
    answer = ask(page, question)
    form = answer.locator("form.feedback")
    form.get_by_label("Comment").fill(comment)
    form.get_by_role("button", name="Not helpful").click()
    expect(answer.locator("p.thanks")).to_be_visible()
    expect(answer.locator("form.feedback")).to_have_count(0)

    admin = login(new_context(), ui.url, ui.keys["admin"])
    admin.goto(ui.url + "/ui/feedback")
    expect(admin.locator("main table")).to_contain_text(comment)
    expect(admin.get_by_role("link", name="Export JSONL")).to_have_attribute("href", "/ui/feedback.jsonl")
    response = admin.context.request.get(ui.url + "/ui/feedback.jsonl")
    assert response.status == 200
    rows = [json.loads(line) for line in response.text().splitlines() if line.strip()]
    mine = [r for r in rows if r.get("question") == question]
    assert mine, f"the export has no row for the question: {rows}"
    assert mine[-1]["verdict"] == "down" and mine[-1]["comment"] == comment, mine[-1]


def test_one_users_history_never_appears_for_another(ui: UiServer, new_context: NewContext) -> None:
    first, hana_q, otto_q = "What is the leave policy?", "Does parental leave come at full pay?", "Where are backups?"
    hana = login(new_context(), ui.url, ui.keys["hr"])
    ask(hana, first)
    ask(hana, hana_q)
    otto = login(new_context(), ui.url, ui.keys["ops"])
    ask(otto, otto_q)
    for page, own, other in [(hana, hana_q, otto_q), (otto, otto_q, hana_q)]:
        page.goto(ui.url + "/ui/history")
        items = page.locator("li.history-item")
        expect(items.filter(has_text=own)).to_have_count(1)
        expect(items.filter(has_text=other)).to_have_count(0)
        assert other not in (page.content())
    expect(hana.locator("li.history-item").first).to_contain_text(hana_q)  # newest first
    expect(hana.locator("li.history-item").nth(1)).to_contain_text(first)


def test_a_script_tag_in_a_document_renders_as_text(ui: UiServer, new_context: NewContext) -> None:
    dialogs: list[str] = []
    page = login(new_context(), ui.url, ui.keys["hr"])

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    doc_id = ui.doc_id("notice.md")
    assert status_of(page.goto(f"{ui.url}/ui/documents/{doc_id}")) == 200
    assert SCRIPT_TEXT in (page.locator("main").text_content() or "")  # the passage
    expect(page.locator("h1")).to_have_text(f"Security {SCRIPT} notice")  # the title from the front matter
    assert page.locator("main script").count() == 0
    page.goto(ui.url + "/ui/documents")
    assert SCRIPT in (page.locator("table#documents").text_content() or "")
    page.goto(ui.url + "/ui/")
    answer = ask(page, "When are phishing mails reported?")
    assert doc_id in cited_doc_ids(answer)
    assert SCRIPT in (answer.text_content() or ""), "the streamed answer should show the cited tag as text"
    assert answer.locator("script").count() == 0
    page.goto(ui.url + "/ui/history")
    assert SCRIPT in (page.locator("main").text_content() or "")
    assert dialogs == [], f"a script from a document ran: {dialogs}"


def test_a_wrong_key_shows_an_error_and_sets_no_session(ui: UiServer, new_context: NewContext) -> None:
    context = new_context()
    page = context.new_page()
    page.goto(ui.url + "/ui/login")
    page.get_by_label("API key").fill("rtk_this-is-not-a-key")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert page.url == ui.url + "/ui/login"
    assert "ragtune_session" not in {c["name"] for c in context.cookies()}
    page.goto(ui.url + "/ui/")
    assert page.url == ui.url + "/ui/login"


def test_log_out_ends_the_session(ui: UiServer, new_context: NewContext) -> None:
    context = new_context()
    page = login(context, ui.url, ui.keys["hr"])
    stolen = [c for c in context.cookies() if c["name"] == "ragtune_session"]
    assert stolen
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(ui.url + "/ui/login")
    page.goto(ui.url + "/ui/")
    assert page.url == ui.url + "/ui/login"
    # the server forgot the session: its old cookie, sent again from another browser, opens nothing
    other = new_context()
    other.add_cookies(stolen)  # type: ignore[arg-type]
    again = other.new_page()
    again.goto(ui.url + "/ui/history")
    assert again.url == ui.url + "/ui/login"


def test_pages_without_a_session_redirect_to_log_in(ui: UiServer, new_context: NewContext) -> None:
    page = new_context().new_page()
    for path in ("/ui/", "/ui/history", "/ui/documents", "/ui/metrics"):
        page.goto(ui.url + path)
        assert page.url == ui.url + "/ui/login", path


def test_a_form_post_without_the_csrf_token_is_refused(ui: UiServer, new_context: NewContext) -> None:
    context = new_context()
    page = login(context, ui.url, ui.keys["hr"])
    request = context.request  # shares the context's cookies: the session cookie goes with each request
    forms: list[dict[str, str | float | bool]] = [{}, {"csrf": "not-the-token"}]
    for form in forms:
        response = request.post(ui.url + "/ui/logout", form=form, max_redirects=0)
        assert response.status == 403, (form, response.status)
    assert status_of(page.goto(ui.url + "/ui/history")) == 200 and page.url.endswith("/ui/history")
    # with the page's token the same request works, so the refusals above were the token's doing
    response = request.post(ui.url + "/ui/logout", form={"csrf": csrf_of(page)}, max_redirects=0)
    assert response.status == 303
    page.goto(ui.url + "/ui/history")
    assert page.url == ui.url + "/ui/login"


def test_the_session_cookie_is_httponly_and_samesite_lax(ui: UiServer, new_context: NewContext) -> None:
    context = new_context()
    page = login(context, ui.url, ui.keys["hr"])
    [cookie] = [c for c in context.cookies() if c["name"] == "ragtune_session"]
    assert cookie.get("httpOnly") is True
    assert cookie.get("sameSite") == "Lax"
    assert page.evaluate("document.cookie").find("ragtune_session") == -1


def test_the_csp_header_is_present_and_allows_no_inline_code(ui: UiServer, new_context: NewContext) -> None:
    page = new_context().new_page()
    login_page = page.goto(ui.url + "/ui/login")
    assert login_page is not None
    csp = login_page.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'self'" in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    page = login(new_context(), ui.url, ui.keys["admin"])
    chat = page.goto(ui.url + "/ui/")
    assert chat is not None and "unsafe-inline" not in chat.headers.get("content-security-policy", "x-missing")
    assert "content-security-policy" in chat.headers
