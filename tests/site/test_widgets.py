"""The book's four explorable figures (site/widgets/), on their real pages of the built site, in chromium.

Each widget is a <figure class="bnw"> that its chapter includes with one markdown cell
(```{raw} html / :file: ../site/widgets/NAME.html```), made live by site/widgets/assets/bnwidgets.js.
For each widget, like a reader: set its sliders with the keyboard (several settings), read the
numbers it shows, and compare them with bnhelpers:

- exact quantities (formulas, and statistics of the very draws the widget shows, which
  `BNWidgets.data(figure)` hands over) agree to 1e-9 in the unrounded `data-value`, and the
  text shown agrees to half a unit of its last digit (3 decimals or 3 significant digits);
- sampled quantities (the spread of 2,000 batch means, the spread of BN's training-mode output
  over 2,000 batches) agree with theory or a NumPy simulation within 4 standard errors.

Also: no console error, no request outside the local server, axe-core finds no violation in the
widget (light mode on a laptop, dark mode on a 375-px phone), nothing of the widget extends past
a phone's viewport, keyboard focus is visible, each page includes its widget once, the committed
snippet is what the script draws (site/widgets/make_snippets.py), a page without JavaScript shows
the static figure and its caption, and a page opened from file:// works. Screenshots of every
widget go to _build/widgets/.
"""

import math
import re
import sys

import numpy as np
import pytest
from sitekit import ROOT, SITE, PageLog

from bnhelpers.core import moving_average as ma
from bnhelpers.core.reference import batchnorm_forward, batchnorm_inference

sys.path.insert(0, str(ROOT / "site" / "widgets"))
import make_snippets  # noqa: E402

# widget: (page, snippet file)
WIDGETS = {
    "batch-noise": ("book/06_batch_size", "batch_noise"),
    "epsilon": ("book/01_the_math", "epsilon"),
    "momentum": ("book/04_bn_by_hand", "momentum"),
    "train-infer": ("book/05_training_vs_inference", "train_infer"),
}
SHOTS = ROOT / "_build" / "widgets"
EPSILON = 1e-3  # Keras's default, which the widgets other than epsilon use
POPULATION_MEAN, POPULATION_SD, BATCHES = 5.0, 2.0, 2000
EXACT = 1e-9  # relative, on the unrounded values
SE = 4  # standard errors allowed for sampled quantities

# Each setting: {control: value}, and how often to press the widget's button first.
SETTINGS = {
    "batch-noise": [({"m": 16}, 0), ({"m": 2}, 0), ({"m": 256}, 0), ({"m": 16}, 3)],
    "epsilon": [({"logEpsilon": -3, "logVariance": -4}, 0), ({"logEpsilon": -3, "logVariance": -3}, 0),
                ({"logEpsilon": -6, "logVariance": 0}, 0), ({"logEpsilon": 0, "logVariance": -2}, 0),
                ({"logEpsilon": -1.5, "logVariance": -7.25}, 0)],
    "momentum": [({"momentum": 0.9, "drift": 0.01}, 0), ({"momentum": 0.5, "drift": 0.0}, 0),
                 ({"momentum": 0.99, "drift": 0.02}, 0), ({"momentum": 0.95, "drift": 0.004}, 2)],
    "train-infer": [({"x": 8, "m": 8}, 0), ({"x": 5, "m": 2}, 0), ({"x": 11, "m": 128}, 0), ({"x": -1, "m": 32}, 0)],
}

CONTROLS_JS = """figure => [...figure.querySelectorAll('input[data-bnw-control]')].map(i => i.dataset.bnwControl)"""
SHOWN_JS = """figure => Object.fromEntries([...figure.querySelectorAll('[data-bnw-value]')].map(
  el => [el.dataset.bnwValue, [el.textContent, Number(el.dataset.value)]]))"""
AXE_JS_RUN = """async figure => (await axe.run(figure, {resultTypes: ['violations']})).violations.map(
  v => `${v.id} (${v.help}): ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)"""
OVERFLOW_JS = """figure => [figure, ...figure.querySelectorAll('*')].filter(el => {
  const r = el.getBoundingClientRect();
  return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5);
}).map(el => `${el.tagName.toLowerCase()}.${el.getAttribute('class') || ''}`)"""
FOCUS_JS = """el => ({visible: el.matches(':focus-visible'), style: getComputedStyle(el).outlineStyle,
  width: parseFloat(getComputedStyle(el).outlineWidth)})"""
SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def number(text):
    """A number as a widget writes it: "0.177", "−1.500", "9.09 × 10⁻⁵", "10⁻³"."""
    text = text.strip().replace("\u2212", "-")
    if "10" in text and any(c in text for c in "⁰¹²³⁴⁵⁶⁷⁸⁹"):
        mantissa, _, power = text.rpartition("10")
        mantissa = mantissa.replace("×", "").strip()
        return (float(mantissa) if mantissa else 1.0) * 10.0 ** int(power.translate(SUPERSCRIPTS))
    return float(text)


def half_unit(text):
    """Half a unit of the last digit a number's text shows."""
    text = text.strip().replace("\u2212", "-")
    mantissa, times, power = text.partition("×")
    if not times and "10" in text and any(c in text for c in "⁰¹²³⁴⁵⁶⁷⁸⁹"):
        return 0.0  # an exact power of ten, "10⁻³"
    decimals = len(mantissa.strip().partition(".")[2])
    scale = 10.0 ** int(power.strip()[2:].translate(SUPERSCRIPTS)) if times else 1.0
    return 0.5 * 10.0 ** -decimals * scale


def check_value(shown, key, expected, tolerance=None):
    """The unrounded value equals `expected` (to EXACT, or within `tolerance` when given); the text
    shown equals it to half a unit of its last digit. Returns a problem or None."""
    text, unrounded = shown[key]
    allowed = EXACT * max(1.0, abs(expected)) if tolerance is None else tolerance
    if not abs(unrounded - expected) <= allowed:
        return f"{key}: shows {unrounded!r}, expected {expected!r} within {allowed:.3g}"
    if not abs(number(text) - expected) <= half_unit(text) + allowed + 1e-12 * max(1.0, abs(expected)):
        return f"{key}: text {text!r}, expected {expected!r}"
    return None


def open_widget(browser, server, name, tab_options=None, color_scheme="light"):
    """A fresh context on the widget's page; returns (tab, log, figure locator)."""
    page, _ = WIDGETS[name]
    options = {"viewport": {"width": 1280, "height": 2000}, "color_scheme": color_scheme, **(tab_options or {})}
    context = browser.new_context(**options)
    log = PageLog(server)
    context.route("**/*", log.route)
    tab = context.new_page()
    log.attach(tab)
    tab.goto(f"{server}{page}.html", wait_until="load")
    figure = tab.locator(f"figure#bnw-{name}")
    assert figure.count() == 1, (
        f"{page}.html has no widget {name}: its chapter needs the markdown cell "
        f"```{{raw}} html / :file: ../site/widgets/{WIDGETS[name][1]}.html```, then rebuild the site")
    if options.get("java_script_enabled", True):
        tab.wait_for_selector(f"figure#bnw-{name}[data-bnw-rendered]")
    return context, tab, log, figure


def set_control(tab, figure, key, value):
    """Moves a slider to `value` with the keyboard (arrow keys, Home, End); checks the focus is visible."""
    values = tab.evaluate("([name, key]) => BNWidgets.values(name, key)", [figure.get_attribute("data-bnw"), key])
    index = min(range(len(values)), key=lambda i: abs(values[i] - value))
    assert math.isclose(values[index], value, abs_tol=1e-9), f"{key}: {value} is not one of {values}"
    slider = figure.locator(f'input[data-bnw-control="{key}"]')
    slider.focus()
    current = int(slider.input_value())
    if index == 0:
        slider.press("Home")
    elif index == len(values) - 1:
        slider.press("End")
    for _ in range(abs(index - int(slider.input_value()))):
        slider.press("ArrowRight" if index > current else "ArrowLeft")
    focus = slider.evaluate(FOCUS_JS)
    assert focus["visible"] and focus["style"] != "none" and focus["width"] >= 2, f"focus ring of {key}: {focus}"
    assert slider.input_value() == str(index)


def apply(tab, figure, setting):
    controls, presses = setting
    for key, value in controls.items():
        set_control(tab, figure, key, value)
    for _ in range(presses):
        button = figure.locator("button[data-bnw-button]")
        button.focus()
        button.press("Enter")
    return tab.evaluate(SHOWN_JS, figure.element_handle()), tab.evaluate("f => BNWidgets.data(f)", figure.element_handle())


# ---------------------------------------------------------------- what each widget must show

def expect_batch_noise(controls, shown, data):
    m = controls["m"]
    batch = np.array(data["batch"])
    assert batch.shape == (m,) and len(data["means"]) == BATCHES
    y, _ = batchnorm_forward(batch[:, None], np.ones(1), np.zeros(1), epsilon=EPSILON)
    theory = POPULATION_SD / math.sqrt(m)
    means = np.array(data["means"])
    problems = [
        check_value(shown, "m", m),
        check_value(shown, "batch-mean", batch.mean()),
        check_value(shown, "batch-variance", batch.var()),
        check_value(shown, "bn-mean", y.mean()),
        check_value(shown, "bn-variance", y.var()),
        check_value(shown, "theory", theory),
        check_value(shown, "spread", means.std()),
        # sampled: the spread of 2,000 batch means against sigma / sqrt(m); the sample standard
        # deviation of n normal values has a standard error of about sd / sqrt(2 (n - 1))
        check_value(shown, "spread", theory, tolerance=SE * theory / math.sqrt(2 * (BATCHES - 1))),
    ]
    assert abs(y.var() - batch.var() / (batch.var() + EPSILON)) < 1e-12
    assert abs(means.mean() - POPULATION_MEAN) < SE * theory / math.sqrt(BATCHES)
    for size, spread in zip(data["sizes"], data["spreads"]):  # every point of the log-log panel
        sd = POPULATION_SD / math.sqrt(size)
        if abs(spread - sd) > SE * sd / math.sqrt(2 * (BATCHES - 1)):
            problems.append(f"spread of the means at m = {size}: {spread:.4f}, sigma/sqrt(m) = {sd:.4f}")
    return problems, f"m = {m}: spread {shown['spread'][0]} vs sigma/sqrt(m) {theory:.3f}"


def expect_epsilon(controls, shown, data):
    eps, variance = 10.0 ** controls["logEpsilon"], 10.0 ** controls["logVariance"]
    base = np.random.default_rng(0).standard_normal((256, 1))
    base = (base - base.mean()) / base.std()  # biased variance 1
    y, _ = batchnorm_forward(math.sqrt(variance) * base, np.ones(1), np.zeros(1), epsilon=eps)
    out = y.var()
    # relative to the (tiny) values, not to 1
    tol = lambda v: 1e-9 * v  # noqa: E731
    problems = [
        check_value(shown, "epsilon", eps, tolerance=tol(eps)),
        check_value(shown, "variance", variance, tolerance=tol(variance)),
        check_value(shown, "output-variance", out, tolerance=1e-6 * out),
        check_value(shown, "output-std", math.sqrt(out), tolerance=1e-6 * math.sqrt(out)),
    ]
    assert abs(out - variance / (variance + eps)) <= 1e-9 * out
    return problems, f"eps = {eps:.3g}, var = {variance:.3g}: output variance {shown['output-variance'][0]}"


def expect_momentum(controls, shown, data):
    m, drift = controls["momentum"], controls["drift"]
    steps = np.arange(1000)
    truth = 3.0 + drift * np.maximum(0, steps - 500)
    observed = np.array(data["observed"])
    np.testing.assert_allclose(np.array(data["truth"]), truth, rtol=0, atol=1e-12)
    average, clean = ma.ema(observed, m, init=0.0), ma.ema(truth, m, init=0.0)
    np.testing.assert_allclose(np.array(data["average"]), average, rtol=0, atol=1e-9)
    warm = ma.steps_to_forget(m, 0.01)
    lag = drift * ma.drift_lag(m)
    noise = (average - clean)[warm:].std() / 0.5
    problems = [
        check_value(shown, "warm-up", warm),
        check_value(shown, "lag-steps", ma.drift_lag(m)),
        check_value(shown, "drift", drift),
        check_value(shown, "lag", lag),
        check_value(shown, "noise-factor", ma.noise_factor(m)),
        check_value(shown, "noise-sd", 0.5 * ma.noise_factor(m)),
        check_value(shown, "measured-lag", truth[-1] - clean[-1]),
        check_value(shown, "measured-noise", noise),
        # the noise-free average trails the drift by d/(1-d) steps once the ramp's start is forgotten
        check_value(shown, "measured-lag", lag, tolerance=lag * m**499 + 3 * m**1000 + 1e-9),
    ]
    # the noise itself is random: about 1000 (1 - m) / (1 + m) independent values after the warm-up
    independent = (1000 - warm) * (1 - m) / (1 + m)
    if independent > 100:
        problems.append(check_value(shown, "measured-noise", ma.noise_factor(m),
                                    tolerance=SE * ma.noise_factor(m) / math.sqrt(2 * independent)))
    return problems, (f"momentum {m}, drift {drift}: warm-up {shown['warm-up'][0]}, lag {shown['lag'][0]}, "
                      f"noise factor {shown['noise-factor'][0]}")


SIMULATED = 50_000


def simulate_train_mode(x, m, batches=SIMULATED, seed=0):
    """BN's training-mode output for x in `batches` random batches of m (NumPy), for the sampled check."""
    others = np.random.default_rng(seed).normal(POPULATION_MEAN, POPULATION_SD, (batches, m - 1))
    batch = np.concatenate([np.full((batches, 1), x), others], axis=1)
    return (x - batch.mean(axis=1)) / np.sqrt(batch.var(axis=1) + EPSILON)


def expect_train_infer(controls, shown, data):
    x, m = float(controls["x"]), controls["m"]
    others = np.array(data["others"]).reshape(BATCHES, m - 1)
    batches = np.concatenate([np.full((BATCHES, 1), x), others], axis=1).T  # (m, batches): one "feature" per batch
    y, _ = batchnorm_forward(batches, np.ones(BATCHES), np.zeros(BATCHES), epsilon=EPSILON)
    outputs = y[0]
    inference = batchnorm_inference(np.array([[x]]), np.ones(1), np.zeros(1), np.full(1, POPULATION_MEAN),
                                    np.full(1, POPULATION_SD**2), epsilon=EPSILON)[0, 0]
    low, high = np.quantile(outputs, [0.05, 0.95])
    simulated = simulate_train_mode(x, m)
    sd = simulated.std()
    kurtosis = np.mean((simulated - simulated.mean()) ** 4) / sd**4
    problems = [
        check_value(shown, "x", x),
        check_value(shown, "m", m),
        check_value(shown, "inference", inference),
        check_value(shown, "train-mean", outputs.mean()),
        check_value(shown, "train-sd", outputs.std()),
        check_value(shown, "train-low", low),
        check_value(shown, "train-high", high),
        # sampled: against 50,000 batches drawn by NumPy (both samples' errors counted)
        check_value(shown, "train-mean", simulated.mean(), tolerance=SE * sd * math.sqrt(1 / BATCHES + 1 / SIMULATED)),
        check_value(shown, "train-sd", sd, tolerance=SE * sd * math.sqrt(max(kurtosis - 1, 0.01) / 4 * (1 / BATCHES + 1 / SIMULATED))),
    ]
    return problems, (f"x = {x}, m = {m}: inference {shown['inference'][0]}, training mean {shown['train-mean'][0]} "
                      f"(NumPy {simulated.mean():.3f}), sd {shown['train-sd'][0]} (NumPy {sd:.3f})")


EXPECT = {"batch-noise": expect_batch_noise, "epsilon": expect_epsilon, "momentum": expect_momentum,
          "train-infer": expect_train_infer}


# ---------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def screenshot(figure, path):
    figure.evaluate("f => { document.activeElement?.blur(); f.scrollIntoView({block: 'center'}); }")
    figure.screenshot(path=str(path))
    assert path.stat().st_size > 0
    print(f"screenshot: {path.relative_to(ROOT)}")


@pytest.mark.parametrize("name", list(WIDGETS))
def test_widget_values_agree_with_bnhelpers(name, browser, server, axe_js, shots):
    context, tab, log, figure = open_widget(browser, server, name)
    try:
        assert figure.locator(".bnw-controls").is_visible() and not figure.locator(".bnw-nojs").is_visible()
        controls = tab.evaluate(CONTROLS_JS, figure.element_handle())
        problems, lines = [], []
        for setting in SETTINGS[name]:
            assert set(setting[0]) == set(controls)
            shown, data = apply(tab, figure, setting)
            found, line = EXPECT[name](setting[0], shown, data)
            problems += [f"{setting}: {p}" for p in found if p]
            lines.append(line)
        print("\n".join(lines))
        assert not problems, "\n".join(problems)
        apply(tab, figure, SETTINGS[name][0])  # back to the default for the picture
        screenshot(figure, shots / f"{name}.png")
        tab.add_script_tag(path=str(axe_js))
        assert tab.evaluate(AXE_JS_RUN, figure.element_handle()) == []
        assert (log.errors, log.foreign, log.failed) == ([], [], [])
    finally:
        context.close()


@pytest.mark.parametrize("name", list(WIDGETS))
def test_widget_on_a_phone_in_dark_mode(name, browser, server, axe_js, shots):
    """375 px wide (an iPhone SE), the reader's system dark: the widget fits, sits on its white
    card, passes axe-core (colour contrast included) and still responds to its sliders."""
    context, tab, log, figure = open_widget(browser, server, name, {"viewport": {"width": 375, "height": 2000}}, "dark")
    try:
        assert tab.evaluate("() => document.documentElement.dataset.theme") == "dark"
        assert tab.evaluate(OVERFLOW_JS, figure.element_handle()) == []
        assert figure.evaluate("f => f.scrollWidth <= f.clientWidth")
        assert figure.evaluate("f => getComputedStyle(f).backgroundColor") == "rgb(255, 255, 255)"
        before = tab.evaluate(SHOWN_JS, figure.element_handle())
        first = SETTINGS[name][1]
        shown, data = apply(tab, figure, first)
        assert shown != before
        problems, _ = EXPECT[name](first[0], shown, data)
        assert not [p for p in problems if p]
        apply(tab, figure, SETTINGS[name][0])
        assert tab.evaluate(OVERFLOW_JS, figure.element_handle()) == []
        screenshot(figure, shots / f"{name}-phone-dark.png")
        tab.add_script_tag(path=str(axe_js))
        assert tab.evaluate(AXE_JS_RUN, figure.element_handle()) == []
        assert (log.errors, log.foreign, log.failed) == ([], [], [])
    finally:
        context.close()


def test_committed_snippets_are_what_the_script_draws(browser):
    """site/widgets/*.html (the static figures) are `BNWidgets.snippet(name)`: run
    `.venv/bin/python site/widgets/make_snippets.py` after changing bnwidgets.js."""
    drawn = make_snippets.snippets(browser)
    assert sorted(path.stem for path in drawn) == sorted(file for _, file in WIDGETS.values())
    stale = make_snippets.stale(drawn)
    assert not stale, f"stale: {[p.name for p in stale]}: run `.venv/bin/python site/widgets/make_snippets.py`"


@pytest.mark.parametrize("name", list(WIDGETS))
def test_each_page_includes_its_widget_once(name, site):
    page, file = WIDGETS[name]
    html = (SITE / f"{page}.html").read_text(encoding="utf-8")
    assert html.count(f'id="bnw-{name}"') == 1, f"{page}.html must include site/widgets/{file}.html once"
    snippet = (ROOT / "site" / "widgets" / f"{file}.html").read_text(encoding="utf-8")
    assert snippet.split("\n", 1)[1].strip() in html, f"{page}.html includes an older {file}.html: rebuild the site"
    assert len(re.findall(r'\bid="', snippet)) == 1  # one id per widget: no clash with the page's own
    for other, (other_page, _) in WIDGETS.items():
        if other_page != page:
            assert f'id="bnw-{other}"' not in html


def test_without_javascript_the_static_figure_and_caption_show(browser, server, shots):
    name = "batch-noise"
    context, tab, log, figure = open_widget(browser, server, name, {"java_script_enabled": False})
    try:
        assert figure.get_attribute("data-bnw-rendered") is None  # the script did not run
        assert figure.locator(".bnw-controls").is_hidden()
        plots = figure.locator(".bnw-plot svg")
        assert plots.count() == 4 and all(plots.nth(i).bounding_box()["height"] > 100 for i in range(4))
        assert figure.locator(".bnw-nojs").is_visible()
        caption = figure.locator("figcaption")
        assert caption.is_visible() and caption.inner_text().startswith("Batch size and the noise of batch statistics.")
        numbers = figure.locator(".bnw-numbers").inner_text()
        assert "σ/√m = 0.500" in numbers and "m = 16" in numbers, numbers
        screenshot(figure, shots / f"{name}-no-javascript.png")
        assert log.foreign == []  # (the theme's preloaded scripts are refused: JavaScript is off)
    finally:
        context.close()


def test_from_file_url(browser, site):
    """The page opened from disk (file://): the widget runs and responds, nothing is fetched from a host."""
    page, _ = WIDGETS["train-infer"]
    context = browser.new_context(viewport={"width": 1280, "height": 2000})
    log = PageLog("file://")
    context.route("**/*", log.route)
    tab = context.new_page()
    log.attach(tab)
    try:
        tab.goto((SITE / f"{page}.html").as_uri(), wait_until="load")
        tab.wait_for_selector("figure#bnw-train-infer[data-bnw-rendered]")
        figure = tab.locator("figure#bnw-train-infer")
        setting = SETTINGS["train-infer"][2]
        shown, data = apply(tab, figure, setting)
        problems, line = expect_train_infer(setting[0], shown, data)
        assert not [p for p in problems if p], problems
        assert (log.errors, log.foreign) == ([], [])
        print(f"file://: {line}")
    finally:
        context.close()


def test_the_value_check_catches_a_wrong_number():
    """Control: the comparison fails on a wrong value or a wrongly rounded text, reads the
    widgets' number formats, and passes on a right one."""
    assert number("\u22121.500") == -1.5 and number("10⁻³") == 1e-3 and number("1.78 × 10⁻⁶") == 1.78e-6
    assert half_unit("0.177") == 0.0005 and half_unit("10⁻³") == 0.0 and math.isclose(half_unit("9.09 × 10⁻⁵"), 5e-8)
    assert check_value({"spread": ("0.177", 0.1771)}, "spread", 0.1771) is None
    assert check_value({"spread": ("0.177", 0.1771)}, "spread", 0.1781) is not None  # the value is off
    assert check_value({"spread": ("0.178", 0.1771)}, "spread", 0.1771) is not None  # the text is off
    assert check_value({"spread": ("0.180", 0.180)}, "spread", 0.177, tolerance=0.005) is None
