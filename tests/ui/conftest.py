"""Browser tests of the web UI: one real server and one headless Chromium (Playwright) for the whole package.

Prerequisites are installed when missing (tests/ui/setup_browser.py, also run by ``make test``); when one cannot
be installed the fixtures fail with the reason: these tests never skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import serve_project as serve
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from .browser import UiServer, build_project
from .setup_browser import SetupError, ensure_axe, ensure_chromium, ensure_playwright

NewContext = Callable[..., BrowserContext]


@pytest.fixture(scope="package")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """The server under test (the embedder loads once for all browser tests)."""
    project, keys = build_project(tmp_path_factory.mktemp("ui"))
    with serve(project) as url:
        yield UiServer(url, project, keys)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium driven by Playwright (its own browser download does not work here)."""
    try:
        ensure_playwright()
        chromium = ensure_chromium()
    except SetupError as exc:
        pytest.fail(f"the browser tests cannot run: {exc}", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture(scope="package")
def axe_js() -> Path:
    """axe-core's ``axe.min.js`` (npm, cached in .cache/npm)."""
    try:
        return ensure_axe()
    except SetupError as exc:
        pytest.fail(f"the accessibility tests cannot run: {exc}", pytrace=False)


@pytest.fixture
def new_context(browser: Browser) -> Iterator[NewContext]:
    """Make isolated browser contexts (separate cookie jars: one per user); all are closed after the test."""
    made: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        context.set_default_timeout(20_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()
