"""Browser fixtures: Debian's Chromium through Playwright's sync API, against a real uvicorn
subprocess with a throw-away SQLite file.

The Playwright driver and the browser are module-scoped (the suite's asyncio mode runs each
async test in its own loop; a session-wide sync Playwright would sit under them); each test
gets a fresh context and page. Under CI=true a missing browser fails the tests; elsewhere
it skips them. A failing test leaves a screenshot in tests/browser/artifacts/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.chromium import chromium_missing, launch
from tests.browser.server import PageServer
from tests.conftest import Databases, free_port

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def browser(server: PageServer) -> Iterator[Browser]:
    # After the server: sync Playwright runs its own event loop in this thread for as long as
    # it lives, and the server's database is made with asyncio.run (alembic) before it.
    missing = chromium_missing()
    if missing is not None:
        if IN_CI:
            pytest.fail(f"CI=true and the browser tests cannot run: {missing}")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def start_page_server(databases: Databases, tmp: Path, **settings: str) -> PageServer:
    url = databases.sqlite()
    return PageServer(url, free_port(), tmp / "uvicorn.log", **settings).start()


@pytest.fixture(scope="module")
def server_settings() -> dict[str, str]:
    """Override in a module to run its server with other settings."""
    return {}


@pytest.fixture(scope="module")
def server(databases: Databases, tmp_path_factory: pytest.TempPathFactory,
           server_settings: dict[str, str]) -> Iterator[PageServer]:
    server = start_page_server(databases, tmp_path_factory.mktemp("page-server"),
                               **server_settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser, server: PageServer) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    problems: list[str] = []
    # A page that breaks its own Content-Security-Policy or throws is a failure, even when
    # the scenario's assertions happen to pass.
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    # A scenario may fail in a fixture that drives the page (signing up) or in the test.
    reports = [getattr(request.node, f"report_{when}", None) for when in ("setup", "call")]
    if any(report is not None and report.failed for report in reports):
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert not problems, problems
