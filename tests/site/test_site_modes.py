"""The site's light and dark modes, as readers get them.

_config.yml sets `default_mode: auto`: a first-time reader sees the mode their system prefers,
and the header's switch button cycles auto, dark and light (kept in the browser's storage).
test_site_pages.py opens every page as a reader who prefers light; here every page is opened
again as a reader who prefers dark, with the same checks (no console error, axe-core's rules
including colour contrast, images, math) plus: the page really is dark, and each of the book's
figures (matplotlib PNGs drawn on white) is shown on its own white card with its own colours
(site/css/bnbook.css), not dimmed by the theme's image filter, so black-on-white axes stay
readable (control: with bnbook.css switched off, the check fails on every figure). Also: the
switch button cycles the modes and the choice holds on the next page, and the theme is set
before the page is first drawn (site/bnbook_site.py), even with the theme's script blocked.
"""

import io

import pytest
from PIL import Image
from sitekit import SITE, STATS, contrast, css_rgb, luminance, toc_pages
from test_site_pages import check_page

CHAPTER_WITH_FIGURES = "book/01_the_math"

PAGE_COLOURS_JS = """() => {
  const body = getComputedStyle(document.body);
  return {theme: document.documentElement.dataset.theme, mode: document.documentElement.dataset.mode,
          background: body.backgroundColor, color: body.color};
}"""

# The book's figures: images in the article, in a <figure> or a notebook cell's output.
FIGURES = "article.bd-article figure img, article.bd-article div.cell_output img"
FIGURE_STYLES_JS = """selector => [...document.querySelectorAll(selector)].map(img => {
  const style = getComputedStyle(img);
  return {src: img.getAttribute('src'), filter: style.filter, background: style.backgroundColor,
          padding: ['Top', 'Right', 'Bottom', 'Left'].map(side => parseFloat(style['padding' + side]))};
})"""

# Channel levels: the figures' own background is white (255); the theme's filter shows it as 219.
WHITE_ENOUGH = 240
SAME_LEVEL = 8
MIN_PADDING_PX = 4
MIN_CARD_CONTRAST = 7  # white card against the dark page: about 18


def page_colours(tab):
    seen = tab.evaluate(PAGE_COLOURS_JS)
    seen["background"] = css_rgb(seen["background"])
    seen["color"] = css_rgb(seen["color"])
    return seen


def assert_dark(seen, mode):
    assert (seen["mode"], seen["theme"]) == (mode, "dark")
    assert luminance(seen["background"]) < 0.03, f"page background {seen['background']} is not dark"
    assert contrast(seen["color"], seen["background"]) >= 7, f"text {seen['color']} on {seen['background']}"


def assert_light(seen, mode):
    assert (seen["mode"], seen["theme"]) == (mode, "light")
    assert luminance(seen["background"]) > 0.9, f"page background {seen['background']} is not light"
    assert contrast(seen["color"], seen["background"]) >= 7, f"text {seen['color']} on {seen['background']}"


def source_corner(src):
    """Mean colour of the top-left 6x6 pixels of a figure's PNG as stored in the site, over
    white where it is transparent (the card shows through)."""
    with Image.open(SITE / "_images" / src.rsplit("/", 1)[-1]) as png:
        rgba = png.convert("RGBA")
    corner = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB").crop((0, 0, 6, 6))
    pixels = list(corner.getdata())
    return [sum(p[i] for p in pixels) / len(pixels) for i in range(3)]


def figure_problems(tab, page_background):
    """What keeps each figure of the page from being readable in dark mode, read from the
    pixels the browser draws (filters included): its padding must be a white card with
    contrast against the page, and the picture must show its own colours (its corner as in
    the PNG). Returns (number of figures, problems)."""
    styles = tab.evaluate(FIGURE_STYLES_JS, FIGURES)
    problems = []
    for index, style in enumerate(styles):
        name = style["src"].rsplit("/", 1)[-1][:12]
        left, top = int(style["padding"][3]), int(style["padding"][0])
        if min(style["padding"]) < MIN_PADDING_PX:
            problems.append(f"{name}: padding {style['padding']} px, no card around the picture")
        png = tab.locator(FIGURES).nth(index).screenshot(type="png", timeout=15000)
        shot = Image.open(io.BytesIO(png)).convert("RGB")
        width, height = shot.size
        if left >= 3:
            strip = shot.crop((1, height // 4, left - 1, 3 * height // 4))
            card = [min(channel) for channel in zip(*strip.getdata())]
            if min(card) < WHITE_ENOUGH:
                problems.append(f"{name}: card drawn as {card}, not white "
                                f"(background {style['background']}, filter {style['filter']})")
            elif contrast(card, page_background) < MIN_CARD_CONTRAST:
                problems.append(f"{name}: card {card} has contrast {contrast(card, page_background):.1f} with the page")
        corner = shot.crop((left + 1, top + 1, left + 7, top + 7))
        drawn = [sum(channel) / 36 for channel in zip(*corner.getdata())]
        stored = source_corner(style["src"])
        if max(abs(d - s) for d, s in zip(drawn, stored)) > SAME_LEVEL:
            problems.append(f"{name}: picture drawn as {[round(d) for d in drawn]} where the PNG has "
                            f"{[round(s) for s in stored]} (filter {style['filter']})")
    return len(styles), problems


@pytest.mark.parametrize("page", toc_pages())
def test_page_in_dark_mode(page, new_tab, server, axe_js, tmp_path):
    """A reader whose system prefers dark: the page is dark, passes every check of
    test_site_pages.py (axe-core's colour contrast included), and its figures sit on a card."""
    tab, log = new_tab(server, color_scheme="dark")
    shot = tmp_path / f"{page.replace('/', '_')}_dark.jpg"
    problems, seen = check_page(tab, log, f"{server}{page}.html", axe_js, shot)
    found = {kind: items for kind, items in problems.items() if items}
    assert found == {}, "\n".join(f"{kind}:\n  " + "\n  ".join(map(str, items)) for kind, items in found.items())
    colours = page_colours(tab)
    assert_dark(colours, "auto")
    figures, figure_faults = figure_problems(tab, colours["background"])
    assert figure_faults == [], "\n".join(figure_faults)
    if page == CHAPTER_WITH_FIGURES:
        assert figures >= 2, f"{figures} figures found in {page}: the figure check looks at nothing"
    dark = luminance(colours["background"])
    print(f"{page}: dark, background luminance {dark:.3f}, {figures} figures on a white card")
    STATS["dark_pages"] += 1
    STATS["dark_figures"] += figures
    STATS["dark_screenshots"].append(str(shot))


def test_the_figure_check_fails_without_the_card(new_tab, server):
    """Control: with site/css/bnbook.css switched off (the theme's own dark mode: a filter that
    dims every image, a grey box around output images), every figure fails the check."""
    tab, _ = new_tab(server, color_scheme="dark")
    tab.goto(f"{server}{CHAPTER_WITH_FIGURES}.html", wait_until="load")
    tab.wait_for_load_state("networkidle")
    colours = page_colours(tab)
    figures, problems = figure_problems(tab, colours["background"])
    assert figures >= 2 and problems == []
    switched_off = tab.evaluate("""() => [...document.styleSheets]
      .filter(sheet => (sheet.href || '').includes('/bnbook.css')).map(sheet => sheet.disabled = true).length""")
    assert switched_off == 1
    figures_off, problems_off = figure_problems(tab, colours["background"])
    print(f"{figures_off} figures, {len(problems_off)} problems without bnbook.css, e.g. {problems_off[:2]}")
    assert figures_off == figures
    assert sum("not white" in p for p in problems_off) == figures
    assert sum("where the PNG has" in p for p in problems_off) == figures


def test_the_switch_button_cycles_the_modes(new_tab, server):
    """A reader who prefers light clicks the header's switch button: dark, then light, then
    back to following the system; the choice holds on the next page they open."""
    tab, log = new_tab(server, color_scheme="light")
    tab.goto(f"{server}{CHAPTER_WITH_FIGURES}.html", wait_until="load")
    tab.wait_for_load_state("networkidle")
    assert_light(page_colours(tab), "auto")
    button = tab.locator(".theme-switch-button:visible")
    assert button.count() == 1
    for mode, check in (("dark", assert_dark), ("light", assert_light), ("auto", assert_light), ("dark", assert_dark)):
        button.click()
        tab.wait_for_function(f"document.documentElement.dataset.mode === '{mode}'", timeout=5000)
        check(page_colours(tab), mode)
    tab.goto(f"{server}book/02_keras_easy_way.html", wait_until="load")
    tab.wait_for_load_state("networkidle")
    assert_dark(page_colours(tab), "dark")
    assert log.errors == [] and log.failed == [] and log.foreign == []
    print("switch button: auto (light) -> dark -> light -> auto -> dark, kept on the next page")


# (system preference, what the last visit stored: None or {mode, theme}, the theme expected)
FIRST_PAINT = [
    ("dark", None, "dark"),  # a first visit: the page says data-theme="auto"
    ("light", None, "light"),
    ("dark", {"mode": "auto", "theme": "light"}, "dark"),  # the system turned dark since the last visit
    ("light", {"mode": "auto", "theme": "dark"}, "light"),
    ("light", {"mode": "dark", "theme": "dark"}, "dark"),  # the reader chose dark with the button
]


def test_the_theme_is_set_before_the_theme_script_runs(new_tab, server):
    """The built page says data-theme="auto" (which no style sheet matches), and the theme's
    deferred script resolves it only after the page may have been drawn; site/bnbook_site.py's
    inline script in <head> sets the right theme first. Here the theme's script never runs."""
    html = (SITE / f"{CHAPTER_WITH_FIGURES}.html").read_text()
    assert 'data-theme="auto"' in html.split("<head>", 1)[0]
    tab, _ = new_tab(server)
    tab.route("**/pydata-sphinx-theme.js*", lambda route: route.abort())
    url = f"{server}{CHAPTER_WITH_FIGURES}.html"
    tab.goto(url, wait_until="domcontentloaded")
    for scheme, stored, expected in FIRST_PAINT:
        tab.emulate_media(color_scheme=scheme)
        tab.evaluate("stored => { localStorage.clear(); "
                     "Object.entries(stored).forEach(([k, v]) => localStorage.setItem(k, v)); }", stored or {})
        # The inline script has run once the page is parsed (DOMContentLoaded), before MathJax loads.
        tab.goto(url, wait_until="domcontentloaded")
        seen = page_colours(tab)
        # The theme's script never ran: it would have stored the mode it set.
        assert tab.evaluate("localStorage.getItem('mode')") == (stored or {}).get("mode")
        (assert_dark if expected == "dark" else assert_light)(seen, (stored or {}).get("mode", "auto"))
        print(f"{scheme} system, stored {stored}, theme script blocked: data-theme={seen['theme']}")
