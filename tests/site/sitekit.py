"""Shared by the site tests: where things are, the table of contents, and a page's log."""

import sys
from pathlib import Path

import yaml

# The pages of the table of contents in reading order (source paths without suffix),
# read by tests/book_toc.py (tests/ is on sys.path: pytest loads tests/conftest.py first).
from book_toc import toc_files as toc_pages  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
# The local server of the site (127.0.0.1, an ephemeral port) and the CJK fonts, as site/make_pdf.py has them.
sys.path.insert(0, str(ROOT / "site"))
from make_pdf import cjk_fonts, serve  # noqa: E402, F401
SITE = ROOT / "_build" / "html"
AXE_JS = ROOT / "site" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
INSTALL_HINT = (
    f"Debian's chromium is not installed ({CHROMIUM}): install it with `sudo apt-get install -y chromium` "
    "(CI's .ci/run does); never `playwright install`, which downloads a browser"
)

# Filled by the tests, printed at the end of the run (what the browser actually checked).
STATS = {"pages": 0, "images": 0, "equations": 0, "screenshots": [], "theme_a11y": {},
         "dark_pages": 0, "dark_figures": 0, "dark_screenshots": []}


def source_of(page):
    """The source file of a table-of-contents page (.ipynb or .md)."""
    for ext in (".ipynb", ".md"):
        if (ROOT / f"{page}{ext}").exists():
            return ROOT / f"{page}{ext}"
    raise FileNotFoundError(page)


def book_config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def css_rgb(color):
    """(r, g, b, alpha) of a computed CSS colour, "rgb(20, 24, 30)" or "rgba(0, 0, 0, 0)"."""
    parts = color[color.index("(") + 1 : color.index(")")].replace("/", ",").replace(",", " ").split()
    r, g, b = (float(x) for x in parts[:3])
    return r, g, b, float(parts[3]) if len(parts) > 3 else 1.0


def luminance(rgb):
    """WCAG relative luminance of an sRGB colour (0 black, 1 white)."""
    def linear(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(rgb1, rgb2):
    """WCAG contrast ratio of two colours, 1 to 21."""
    high, low = sorted((luminance(rgb1), luminance(rgb2)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class PageLog:
    """What one page did in the browser: console errors, uncaught exceptions, requests."""

    def __init__(self, base):
        self.base = base
        self.errors, self.foreign, self.failed = [], [], []

    def attach(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught exception: {exc}"))
        page.on("requestfailed", lambda req: self.failed.append(f"{req.url}: {req.failure}"))
        page.on("response", self._response)

    def _console(self, msg):
        if msg.type == "error":
            self.errors.append(f"{msg.text} (at {msg.location.get('url')})")

    def _response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def route(self, route):
        """Let requests to the local server through; record and block every other one."""
        if route.request.url.startswith(self.base):
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()
