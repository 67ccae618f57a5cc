"""Browser tests of the BUILT book (``_build/html``), in headless Chromium driven by Playwright.

They are not part of the normal test run: ``pytest`` (testpaths ``tests`` and ``book``) runs before the
book is built, so this folder is left out of collection unless one of these holds:

- the environment has ``VNCA_BROWSER_TESTS=1`` (what ``.ci/run`` uses, after the book build);
- this folder, or a file in it, is named on the command line (``pytest tests/browser``).

Run them by hand after a build::

    tools/vendor_js.sh && .venv/bin/jupyter-book build . -W --keep-going   # an offline-ready book
    .venv/bin/pip install -e ".[browser]"     # Playwright (the Python package; no browser download)
    apt-get install -y chromium               # Debian's Chromium, used at /usr/bin/chromium
    VNCA_BROWSER_TESTS=1 .venv/bin/python -m pytest tests/browser -q

If ``_build/html`` does not exist, the tests are skipped with that reason. Everything else that is
missing (Playwright, Chromium) is an error, not a skip. Settings, all optional:

- ``VNCA_BOOK_HTML``: the built book to test (default ``<repo>/_build/html``);
- ``VNCA_CHROMIUM``: the Chromium executable (default ``/usr/bin/chromium``, else ``chromium`` on PATH);
- ``VNCA_SCREENSHOTS``: where the full-page screenshots go (default ``<book html>/../screenshots``, i.e.
  ``_build/screenshots/<page>.png``), with ``report.json``: what each page loaded, blocked and logged.

The session fixtures serve the book with ``http.server`` on a free 127.0.0.1 port, start one Chromium,
and visit each page once (``visit``, cached); the tests then check what the visit recorded.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ENV_FLAG = "VNCA_BROWSER_TESTS"


def _named_on_command_line(config) -> bool:
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    invocation_dir = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (invocation_dir / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    """Leave tests/browser out of the default run (see the module docstring)."""
    if os.environ.get(ENV_FLAG) == "1" or _named_on_command_line(config):
        return None
    return True


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List, in the test log, the requests that the tests blocked (everything not on localhost)."""
    browser_book = sys.modules.get("browser_book")  # imported by the tests, if any ran
    visits = browser_book.VISITS if browser_book else None
    if not visits:
        return
    tr = terminalreporter
    tr.section("browser: requests blocked (not localhost)")
    total = 0
    for page, report in sorted(visits.items()):
        for url in report.blocked:
            tr.write_line(f"{page}: {url}")
            total += 1
    tr.write_line(f"{total} blocked request(s) on {len(visits)} page(s); every check above ran without them")
    shots = browser_book.screenshot_dir()
    if shots.is_dir():
        (shots / "report.json").write_text(
            json.dumps({page: r.as_json() for page, r in sorted(visits.items())}, indent=1))
        tr.write_line(f"screenshots and report.json: {shots}")


# --- session fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def book_url():
    """The base URL of _build/html, served by http.server on a free 127.0.0.1 port."""
    import browser_book

    with browser_book.BookServer(browser_book.html_dir()) as server:
        yield server.base_url


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the session, driven by Playwright (no Playwright browser download)."""
    import browser_book
    from playwright.sync_api import sync_playwright

    shots = browser_book.screenshot_dir()
    if shots.is_dir():  # screenshots of an earlier run would look current
        for old in [*shots.rglob("*.png"), shots / "report.json"]:
            old.unlink(missing_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=browser_book.chromium_path(),
                                      args=browser_book.CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def visit(browser, book_url):
    """visit(page) -> PageReport: the page opened once per session (cached), everything recorded."""
    import browser_book

    return lambda page: browser_book.visit(browser, book_url, page)
