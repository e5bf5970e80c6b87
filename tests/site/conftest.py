"""Fixtures for the tests of the built website (_build/html, made by `make book`).

The site is served on 127.0.0.1 by a server in this process and opened in Debian's
chromium, driven by Playwright (never `playwright install`: it downloads a browser).
"""

import os

import pytest
from sitekit import AXE_JS, CHROMIUM, CHROMIUM_ARGS, INSTALL_HINT, SITE, STATS, PageLog, serve, source_of, toc_pages


@pytest.fixture(scope="session")
def site():
    if not (SITE / "index.html").exists():
        pytest.fail("no built site in _build/html: run `make book` (`make test` builds it first)")
    stale = [
        page for page in toc_pages()
        if not (SITE / f"{page}.html").exists()
        or (SITE / f"{page}.html").stat().st_mtime < source_of(page).stat().st_mtime
    ]
    if stale:
        pytest.fail(f"_build/html is older than {', '.join(stale)}: run `make book` (`make test` builds it first)")
    return SITE


@pytest.fixture(scope="session")
def axe_js():
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS.relative_to(SITE.parents[1])} is missing: run `make book` (it installs site/package.json)")
    return AXE_JS


@pytest.fixture(scope="session")
def server(site):
    """Base URL of the built site, served on 127.0.0.1 (an ephemeral port) for this session."""
    with serve(site) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests of the site. {INSTALL_HINT}")
        pytest.skip(f"browser tests of the site skipped. {INSTALL_HINT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_tab(browser):
    """Opens a tab on a site served at a base URL, in a fresh browser context (a first-time
    reader: empty storage and cache) whose system prefers `color_scheme` ("light" or "dark";
    the site follows it). Returns the page and its PageLog."""
    contexts = []

    def open_tab(base, color_scheme="light"):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=color_scheme)
        contexts.append(context)
        log = PageLog(base)
        context.route("**/*", log.route)
        page = context.new_page()
        log.attach(page)
        return page, log

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def page_and_log(new_tab, server):
    return new_tab(server)


def pytest_terminal_summary(terminalreporter):
    if not STATS["pages"] and not STATS["dark_pages"]:
        return
    write = terminalreporter.write_line
    terminalreporter.section("website checked in chromium")
    if STATS["pages"]:
        write(f"{STATS['pages']} pages, {STATS['images']} images, {STATS['equations']} equations rendered by MathJax")
    if STATS["screenshots"]:
        write(f"screenshots, e.g. {STATS['screenshots'][0]}")
    if STATS["dark_pages"]:
        write(f"dark mode: {STATS['dark_pages']} pages, {STATS['dark_figures']} figures on their white card")
    if STATS["dark_screenshots"]:
        write(f"dark-mode screenshots, e.g. {STATS['dark_screenshots'][0]}")
    for rule, where in sorted(STATS["theme_a11y"].items()):
        write(f"axe-core, left in the theme (not this book's content): {rule} on {', '.join(sorted(where))}")
