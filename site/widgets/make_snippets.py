"""Write the HTML snippets of the book's explorable figures: `python site/widgets/make_snippets.py`.

Each widget of site/widgets/assets/bnwidgets.js is included in its chapter by one markdown cell,

    ```{raw} html
    :file: ../site/widgets/batch_noise.html
    ```

and that file is what a reader without JavaScript sees: the widget in its default state, its
plots as inline SVG, its key numbers and its caption, the controls hidden. The script draws it
with `BNWidgets.snippet(name)` in Debian's chromium (the browser the site tests use), so the
static figure is exactly what the live widget draws first; tests/site/test_widgets.py fails
when a committed snippet differs (run this script after changing bnwidgets.js, then rebuild the
site). `--check` only compares, and exits 1 when a snippet is stale.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "assets" / "bnwidgets.js"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def snippets(browser):
    """{path of the snippet: its text} for every widget, drawn in a blank page of `browser`."""
    page = browser.new_page()
    try:
        page.set_content("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'></head><body></body></html>")
        page.add_script_tag(content=SCRIPT.read_text(encoding="utf-8"))
        drawn = page.evaluate("() => BNWidgets.names.map((name) => [BNWidgets.files[name], BNWidgets.snippet(name)])")
    finally:
        page.close()
    return {HERE / f"{file}.html": text for file, text in drawn}


def stale(drawn):
    """The snippets whose committed text differs from the drawn one."""
    return [path for path, text in drawn.items() if not path.exists() or path.read_text(encoding="utf-8") != text]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a snippet is stale")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"make_snippets.py: {CHROMIUM} is missing (`sudo apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            drawn = snippets(browser)
        finally:
            browser.close()
    changed = stale(drawn)
    if args.check:
        for path in changed:
            print(f"stale: {path.relative_to(HERE.parents[1])}")
        sys.exit(1 if changed else 0)
    for path in changed:
        path.write_text(drawn[path], encoding="utf-8")
    for path in drawn:
        print(f"{'wrote' if path in changed else 'unchanged'}: {path.relative_to(HERE.parents[1])}")


if __name__ == "__main__":
    main()
