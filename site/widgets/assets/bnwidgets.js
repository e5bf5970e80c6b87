/* The book's four explorable figures ("widgets"), in plain JavaScript: no library, no
   request, works from file:// and from a server.

   Each widget is a <figure class="bnw" data-bnw="NAME"> that one markdown cell of its chapter
   includes (```{raw} html / :file: ../site/widgets/NAME.html```). That HTML snippet is written
   by site/widgets/make_snippets.py from `BNWidgets.snippet(NAME)` below: the widget in its
   default state, with its plots as inline SVG, its key numbers as text and its caption, and the
   controls hidden. Without JavaScript the reader sees exactly that (a static figure); with it,
   the script below (added to every page by `html_js_files` in _config.yml) shows the controls
   and redraws the plots and numbers from the same code whenever a control changes. The default
   render of a live widget is the committed snippet, character for character
   (tests/site/test_widgets.py checks it).

   Random draws come from a seeded generator (mulberry32, normal values by Box-Muller), so a
   widget shows the same batches on every visit and every browser. Each widget shows its key
   numbers as text (`[data-bnw-value=KEY]`, with the unrounded number in `data-value`), and
   `BNWidgets.data(figure)` returns the values behind them, so that the test can recompute
   them with bnhelpers. */
(function () {
  "use strict";

  // ---------------------------------------------------------------- random numbers
  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** n standard normal values from a seed (Box-Muller, both values of each pair used). */
  function normals(seed, n) {
    const uniform = mulberry32(seed);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i += 2) {
      const u1 = 1 - uniform(); // in (0, 1]: log is finite
      const u2 = uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }

  // ---------------------------------------------------------------- statistics
  function mean(xs) {
    let s = 0;
    for (let i = 0; i < xs.length; i++) s += xs[i];
    return s / xs.length;
  }

  /** The biased variance (divides by n), as training-mode BN uses it. */
  function variance(xs) {
    const mu = mean(xs);
    let s = 0;
    for (let i = 0; i < xs.length; i++) s += (xs[i] - mu) * (xs[i] - mu);
    return s / xs.length;
  }

  /** Quantile with linear interpolation between order statistics (NumPy's default). */
  function quantile(sorted, p) {
    const h = (sorted.length - 1) * p;
    const lo = Math.floor(h);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
  }

  // BN's epsilon in the widgets that do not vary it: Keras's default.
  const KERAS_EPSILON = 1e-3;

  // The moving-average quantities of bnhelpers.core.moving_average.
  function stepsToForget(momentum, remaining) {
    if (momentum === 0) return 1;
    let steps = Math.ceil(Math.log(remaining) / Math.log(momentum));
    while (steps > 1 && Math.pow(momentum, steps - 1) <= remaining) steps -= 1;
    while (Math.pow(momentum, steps) > remaining) steps += 1;
    return steps;
  }
  const driftLag = (momentum) => momentum / (1 - momentum);
  const noiseFactor = (momentum) => Math.sqrt((1 - momentum) / (1 + momentum));

  /** The moving average after each value (Keras's update: momentum weighs the old average). */
  function ema(values, momentum, init) {
    const out = new Float64Array(values.length);
    let average = init;
    for (let i = 0; i < values.length; i++) {
      average = momentum * average + (1 - momentum) * values[i];
      out[i] = average;
    }
    return out;
  }

  // ---------------------------------------------------------------- text
  const SUPERSCRIPT = { "-": "\u207b", 0: "\u2070", 1: "\u00b9", 2: "\u00b2", 3: "\u00b3", 4: "\u2074",
    5: "\u2075", 6: "\u2076", 7: "\u2077", 8: "\u2078", 9: "\u2079" };
  const superscript = (n) => String(n).split("").map((c) => SUPERSCRIPT[c]).join("");
  const MINUS = "\u2212";

  /** Fixed decimals with a typographic minus sign ("-0.000" becomes "0.000"). */
  function fixed(x, digits) {
    let text = x.toFixed(digits);
    if (/^-0\.?0*$/.test(text)) text = text.slice(1);
    return text.replace("-", MINUS);
  }

  /** Three significant digits; below 0.001 or from 10000 on, as "3.16 × 10⁻⁴". */
  function sig3(x) {
    if (x === 0) return "0";
    const exponent = Math.floor(Math.log10(Math.abs(x)));
    if (exponent >= -3 && exponent < 4) return fixed(x, Math.max(0, 2 - exponent));
    let mantissa = x / Math.pow(10, exponent);
    let e = exponent;
    if (Math.abs(Number(mantissa.toFixed(2))) >= 10) { mantissa /= 10; e += 1; }
    return `${fixed(mantissa, 2)} \u00d7 10${superscript(e)}`;
  }

  /** A power of ten as "10⁻³" when it is one, otherwise three significant digits. */
  function power(x) {
    const exponent = Math.round(Math.log10(x));
    if (Math.abs(x / Math.pow(10, exponent) - 1) < 1e-9) return `10${superscript(exponent)}`;
    return sig3(x);
  }

  const escapeHtml = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

  /** A key number: its text, and the unrounded value for tests. */
  const value = (key, x, text) => `<span data-bnw-value="${key}" data-value="${x}">${text}</span>`;

  const n1 = (v) => (Math.round(v * 10) / 10).toFixed(1); // SVG coordinates: 0.1 px

  // ---------------------------------------------------------------- SVG plots
  const COLORS = { ink: "#222", axis: "#555", grid: "#e3e3e3", blue: "#1f77b4", orange: "#d35400",
    grey: "#8a8a8a", lightgrey: "#c4c4c4", shade: "#eeeeee", population: "#555" };
  // A panel is 360 x 260 (a phone's width, or one of a grid of panels); a widget with a single
  // plot is drawn 600 x 300 where its box is wide enough (a laptop), so that its text keeps
  // about the page's size. The static snippet is the narrow drawing.
  const NARROW = { width: 360, height: 260 };
  const WIDE = { width: 600, height: 300 };
  const MARGIN = { left: 50, right: 12, bottom: 42 };
  const LEGEND_ROW = 14;

  function scale(axis, lo, hi) {
    if (axis.log) {
      const a = Math.log10(axis.min);
      const b = Math.log10(axis.max);
      return (v) => lo + ((Math.log10(v) - a) / (b - a)) * (hi - lo);
    }
    return (v) => lo + ((v - axis.min) / (axis.max - axis.min)) * (hi - lo);
  }

  /** Legend entries [kind, colour, text] laid out in rows under the title: [{x, row, ...}]. */
  function legendLayout(entries, x0, x1) {
    const placed = [];
    let x = x0;
    let row = 0;
    for (const [kind, color, text] of entries) {
      const width = 22 + 5.6 * text.length;
      if (x > x0 && x + width > x1) { x = x0; row += 1; }
      placed.push({ kind, color, text, x, row });
      x += width + 12;
    }
    return { placed, rows: placed.length ? row + 1 : 0 };
  }

  function legendMarkup(layout, top) {
    const parts = [];
    for (const { kind, color, text, x, row } of layout.placed) {
      const y = top + row * LEGEND_ROW;
      if (kind === "bar") parts.push(`<rect x="${x}" y="${y - 4}" width="14" height="8" fill="${color}"/>`);
      else if (kind === "ring") parts.push(`<circle cx="${x + 7}" cy="${y}" r="4.5" fill="none" stroke="${color}" stroke-width="2"/>`);
      else if (kind === "dot") parts.push(`<circle cx="${x + 7}" cy="${y}" r="3" fill="${color}"/>`);
      else parts.push(`<line x1="${x}" x2="${x + 16}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2"${kind === "dash" ? ' stroke-dasharray="4 3"' : ""}/>`);
      parts.push(`<text x="${x + 21}" y="${y}" dy="0.32em" font-size="10">${text}</text>`);
    }
    return parts.join("");
  }

  /** A plot frame: title, legend, axes with ticks and labels. Returns the scales and the
   *  opening of the <svg> (close it with `f.close`). */
  function frame(spec) {
    const size = spec.size || NARROW;
    const x0 = MARGIN.left;
    const x1 = size.width - MARGIN.right;
    const legend = legendLayout(spec.legend || [], 8, x1);
    const y1 = 34 + legend.rows * LEGEND_ROW;
    const y0 = size.height - MARGIN.bottom;
    const sx = scale(spec.x, x0, x1);
    const sy = scale(spec.y, y0, y1);
    const parts = [];
    for (const t of spec.y.ticks) {
      const y = n1(sy(t.v));
      parts.push(`<line x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" stroke="${COLORS.grid}"/>`);
      parts.push(`<text x="${x0 - 5}" y="${y}" dy="0.32em" text-anchor="end">${t.label}</text>`);
    }
    for (const t of spec.x.ticks) {
      const x = n1(sx(t.v));
      parts.push(`<line x1="${x}" x2="${x}" y1="${y0}" y2="${y0 + 4}" stroke="${COLORS.axis}"/>`);
      parts.push(`<text x="${x}" y="${y0 + 15}" text-anchor="middle">${t.label}</text>`);
    }
    parts.push(`<text x="${(x0 + x1) / 2}" y="${size.height - 8}" text-anchor="middle">${spec.x.label}</text>`);
    parts.push(`<text transform="translate(13 ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">${spec.y.label}</text>`);
    parts.push(`<text x="8" y="15" font-weight="bold">${spec.title}</text>`);
    parts.push(legendMarkup(legend, 29));
    return {
      sx, sy, x0, x1, y0, y1,
      open: `<svg viewBox="0 0 ${size.width} ${size.height}" role="img" aria-label="${escapeHtml(spec.alt)}" `
        + `font-family="sans-serif" font-size="11" fill="${COLORS.ink}">` + parts.join(""),
      // The axes last, over what is drawn.
      close: `<line x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}" stroke="${COLORS.axis}"/>`
        + `<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y1}" stroke="${COLORS.axis}"/></svg>`,
      inside: (x) => Math.max(x0, Math.min(x1, x)),
    };
  }

  function linearTicks(min, max, step, digits) {
    const ticks = [];
    for (let k = Math.ceil(min / step - 1e-9); k * step <= max + 1e-9; k++) {
      const v = k * step;
      ticks.push({ v, label: fixed(v, digits) });
    }
    return ticks;
  }

  function powerTicks(lo, hi, every) {
    const ticks = [];
    for (let e = lo; e <= hi; e += every) ticks.push({ v: Math.pow(10, e), label: `10${superscript(e)}` });
    return ticks;
  }

  /** A "nice" upper limit for counts, and ticks up to it. */
  function countAxis(maxCount, label) {
    const steps = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000];
    const step = steps.find((s) => maxCount / s <= 4) || 1000;
    const max = Math.max(step, Math.ceil((maxCount * 1.05) / step) * step);
    return { min: 0, max, ticks: linearTicks(0, max, step, 0), label };
  }

  function histogram(values, lo, hi, bins) {
    const counts = new Array(bins).fill(0);
    const width = (hi - lo) / bins;
    for (const v of values) {
      const k = Math.floor((v - lo) / width);
      if (k >= 0 && k < bins) counts[k] += 1;
      else if (v === hi) counts[bins - 1] += 1;
    }
    return { counts, lo, hi, width };
  }

  function bars(f, h, color) {
    const parts = [];
    h.counts.forEach((c, k) => {
      if (!c) return;
      const xa = f.sx(h.lo + k * h.width);
      const xb = f.sx(h.lo + (k + 1) * h.width);
      const y = f.sy(c);
      parts.push(`<rect x="${n1(xa)}" y="${n1(y)}" width="${n1(Math.max(0.6, xb - xa - 0.6))}" height="${n1(f.y0 - y)}" fill="${color}"/>`);
    });
    return parts.join("");
  }

  function path(f, xs, ys, attrs) {
    let d = "";
    for (let i = 0; i < xs.length; i++) d += `${i ? "L" : "M"}${n1(f.sx(xs[i]))} ${n1(f.sy(ys[i]))}`;
    return `<path d="${d}" fill="none" ${attrs}/>`;
  }

  function vline(f, x, attrs) {
    const px = n1(f.sx(x));
    return `<line x1="${px}" x2="${px}" y1="${f.y0}" y2="${f.y1}" ${attrs}/>`;
  }

  /** A horizontal bar from a to b (clipped to the plot) at height y (a fraction of the plot's height). */
  function hbar(f, a, b, where, attrs) {
    const y = n1(f.y0 + (f.y1 - f.y0) * where);
    return `<line x1="${n1(f.inside(f.sx(a)))}" x2="${n1(f.inside(f.sx(b)))}" y1="${y}" y2="${y}" ${attrs}/>`;
  }

  const normalPdf = (x, mu, sd) => Math.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * Math.sqrt(2 * Math.PI));

  function curve(f, lo, hi, fn, attrs) {
    const xs = [];
    const ys = [];
    for (let i = 0; i <= 120; i++) {
      const x = lo + ((hi - lo) * i) / 120;
      xs.push(x);
      ys.push(fn(x));
    }
    return path(f, xs, ys, attrs);
  }

  // ---------------------------------------------------------------- widgets
  // A control is a native range input over a list of values (`values`) or a range
  // (`min`, `max`, `step`); `text(v)` is what it shows and what a screen reader says.
  // `compute(state)` draws and measures; `render(data)` returns {plots, numbers, alt}.

  const POPULATION = { mean: 5, sd: 2 }; // chapter 6's feature (sigma = 2)
  const BATCHES = 2000;

  const batchCache = {};
  /** BATCHES batches of m values from the population, as BATCHES rows of m (seeded by m). */
  function batchesOf(m) {
    if (!batchCache[m]) {
      const z = normals(1000 + m, BATCHES * m);
      for (let i = 0; i < z.length; i++) z[i] = POPULATION.mean + POPULATION.sd * z[i];
      const means = new Float64Array(BATCHES);
      for (let b = 0; b < BATCHES; b++) means[b] = mean(z.subarray(b * m, (b + 1) * m));
      const mu = mean(means);
      batchCache[m] = { values: z, means, spread: Math.sqrt(variance(means)), meanOfMeans: mu };
    }
    return batchCache[m];
  }

  const BATCH_SIZES = [2, 4, 8, 16, 32, 64, 128, 256];

  const batchNoise = {
    name: "batch-noise",
    file: "batch_noise",
    title: "Batch size and the noise of batch statistics",
    controls: [
      { key: "m", label: "batch size m", values: BATCH_SIZES, initial: 16, text: (v) => String(v) },
    ],
    buttons: [{ key: "draw", label: "Draw another batch" }],
    caption: "One batch of m values of a feature with population mean 5 and standard deviation "
      + "\u03c3 = 2, before and after batch normalization (\u03b5 = 10\u207b\u00b3, \u03b3 = 1, \u03b2 = 0), "
      + "and where its batch mean falls among the means of 2,000 batches of the same size. "
      + "Move the slider: the batch mean and variance wander less as m grows, and the spread of "
      + "the batch means follows \u03c3/\u221am (dashed), halving each time m quadruples. "
      + "After BN every batch has mean 0 and variance 1 (just under, by \u03b5): BN hides "
      + "how far the batch was from the population.",
    compute(state) {
      const m = state.m;
      const all = batchesOf(m);
      const index = state.draw % BATCHES;
      const batch = Array.from(all.values.subarray(index * m, (index + 1) * m));
      const mu = mean(batch);
      const v = variance(batch);
      const normalized = batch.map((x) => (x - mu) / Math.sqrt(v + KERAS_EPSILON));
      const spreads = BATCH_SIZES.map((size) => batchesOf(size).spread);
      return {
        m, index, batch, normalized, mean: mu, variance: v, bnMean: mean(normalized), bnVariance: variance(normalized),
        means: Array.from(all.means), spread: all.spread, theory: POPULATION.sd / Math.sqrt(m),
        sizes: BATCH_SIZES, spreads, epsilon: KERAS_EPSILON, population: POPULATION, batches: BATCHES,
      };
    },
    render(d) {
      const P = POPULATION;
      const dashed = `stroke="${COLORS.population}" stroke-width="1.2" stroke-dasharray="4 3"`;
      const blue = `stroke="${COLORS.blue}" stroke-width="2"`;
      // (a) the batch before BN, with the population's density scaled to counts
      const hBefore = histogram(d.batch, -3, 13, 32);
      const expected = (x) => d.m * hBefore.width * normalPdf(x, P.mean, P.sd);
      let f = frame({
        title: "Before BN: one batch",
        alt: `Histogram of one batch of ${d.m} values: batch mean ${fixed(d.mean, 2)} and standard deviation ${fixed(Math.sqrt(d.variance), 2)}; the population has mean 5 and standard deviation 2.`,
        legend: [["bar", COLORS.lightgrey, "batch"], ["line", COLORS.blue, "its mean \u00b1 sd"], ["dash", COLORS.population, "population"]],
        x: { min: -3, max: 13, ticks: linearTicks(-3, 13, 2, 0), label: "feature value x" },
        y: countAxis(Math.max(expected(P.mean), ...hBefore.counts), "count in the batch"),
      });
      const a = f.open + bars(f, hBefore, COLORS.lightgrey) + curve(f, -3, 13, expected, dashed)
        + vline(f, d.mean, blue) + hbar(f, d.mean - Math.sqrt(d.variance), d.mean + Math.sqrt(d.variance), 0.9, blue) + f.close;
      // (b) the same batch after BN
      const hAfter = histogram(d.normalized, -4, 4, 32);
      const standard = (x) => d.m * hAfter.width * normalPdf(x, 0, 1);
      f = frame({
        title: "After BN: the same batch",
        alt: `Histogram of the same batch after BN: mean ${fixed(d.bnMean, 2)}, variance ${fixed(d.bnVariance, 3)}.`,
        legend: [["bar", COLORS.lightgrey, "normalized"], ["line", COLORS.blue, "mean \u00b1 sd"], ["dash", COLORS.population, "N(0, 1)"]],
        x: { min: -4, max: 4, ticks: linearTicks(-4, 4, 1, 0), label: "normalized value x\u0302" },
        y: countAxis(Math.max(standard(0), ...hAfter.counts), "count in the batch"),
      });
      const b = f.open + bars(f, hAfter, COLORS.lightgrey) + curve(f, -4, 4, standard, dashed)
        + vline(f, d.bnMean, blue) + hbar(f, d.bnMean - Math.sqrt(d.bnVariance), d.bnMean + Math.sqrt(d.bnVariance), 0.9, blue) + f.close;
      // (c) the means of many batches of this size
      const hMeans = histogram(d.means, 0, 10, 50);
      const sampling = (x) => BATCHES * hMeans.width * normalPdf(x, P.mean, d.theory);
      f = frame({
        title: `Means of ${BATCHES.toLocaleString("en-US")} batches of ${d.m}`,
        alt: `Histogram of the means of ${BATCHES} batches of ${d.m}: spread ${fixed(d.spread, 3)}, against sigma over root m ${fixed(d.theory, 3)}; this batch's mean is ${fixed(d.mean, 2)}.`,
        legend: [["bar", COLORS.lightgrey, "batch means"], ["line", COLORS.blue, "this batch"], ["dash", COLORS.population, "N(5, \u03c3\u00b2/m)"]],
        x: { min: 0, max: 10, ticks: linearTicks(0, 10, 1, 0), label: "batch mean" },
        y: countAxis(Math.max(sampling(P.mean), ...hMeans.counts), "number of batches"),
      });
      const c = f.open + bars(f, hMeans, COLORS.lightgrey) + curve(f, 0, 10, sampling, dashed) + vline(f, d.mean, blue) + f.close;
      // (d) the spread against m, log-log
      f = frame({
        title: "Spread of the batch mean",
        alt: `Log-log plot of the spread of the batch mean against the batch size: the measured points lie on the line sigma over root m; at m = ${d.m}, ${fixed(d.spread, 3)}.`,
        legend: [["dot", COLORS.blue, "measured"], ["dash", COLORS.population, "\u03c3/\u221am"], ["ring", COLORS.orange, `m = ${d.m}`]],
        x: { min: 1.6, max: 320, log: true, ticks: BATCH_SIZES.map((s) => ({ v: s, label: String(s) })), label: "batch size m" },
        y: { min: 0.08, max: 2.5, log: true, ticks: [0.1, 0.2, 0.5, 1, 2].map((v) => ({ v, label: String(v) })), label: "sd of the batch mean" },
      });
      const k = d.sizes.indexOf(d.m);
      const e = f.open
        + path(f, [1.6, 320], [P.sd / Math.sqrt(1.6), P.sd / Math.sqrt(320)], dashed)
        + d.sizes.map((size, i) => `<circle cx="${n1(f.sx(size))}" cy="${n1(f.sy(d.spreads[i]))}" r="3" fill="${COLORS.blue}"/>`).join("")
        + `<circle cx="${n1(f.sx(d.m))}" cy="${n1(f.sy(d.spreads[k]))}" r="7" fill="none" stroke="${COLORS.orange}" stroke-width="2"/>`
        + f.close;
      const numbers = `<span class="bnw-line">Batch ${d.index + 1} of m = ${value("m", d.m, d.m)}: `
        + `mean ${value("batch-mean", d.mean, fixed(d.mean, 3))}, variance ${value("batch-variance", d.variance, fixed(d.variance, 3))} `
        + "(population: mean 5, variance 4).</span> "
        + `<span class="bnw-line">After BN: mean ${value("bn-mean", d.bnMean, fixed(d.bnMean, 3))}, `
        + `variance ${value("bn-variance", d.bnVariance, fixed(d.bnVariance, 3))}.</span> `
        + `<span class="bnw-line">Spread of the batch means over ${BATCHES.toLocaleString("en-US")} batches `
        + `${value("spread", d.spread, fixed(d.spread, 3))}, \u03c3/\u221am = ${value("theory", d.theory, fixed(d.theory, 3))}.</span>`;
      return { plots: [a, b, c, e], numbers };
    },
  };

  const EPSILONS = [-6, -5.5, -5, -4.5, -4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0];
  const FEATURE_VARIANCES = [];
  for (let e = -8; e <= 2 + 1e-9; e += 0.25) FEATURE_VARIANCES.push(Math.round(e * 100) / 100);

  const epsilon = {
    name: "epsilon",
    file: "epsilon",
    single: true,
    title: "What epsilon does to a feature's variance",
    controls: [
      { key: "logEpsilon", label: "\u03b5", values: EPSILONS, initial: -3, text: (v) => power(Math.pow(10, v)) },
      { key: "logVariance", label: "feature variance \u03c3\u00b2", values: FEATURE_VARIANCES, initial: -4, text: (v) => power(Math.pow(10, v)) },
    ],
    buttons: [],
    caption: "The variance of a feature after batch normalization, \u03c3\u00b2/(\u03c3\u00b2 + \u03b5), "
      + "against its variance \u03c3\u00b2 in the batch, on log axes (\u03b3 = 1). Above \u03b5 the output "
      + "variance is 1, as BN intends; below \u03b5 it falls in proportion to \u03c3\u00b2 (slope 1): "
      + "\u03b5 shrinks nearly constant features instead of blowing their noise up to unit variance. "
      + "At \u03c3\u00b2 = \u03b5 (dotted line) the output keeps half. The grey curve is Keras's default "
      + "\u03b5 = 10\u207b\u00b3; the dot is the chosen feature.",
    compute(state) {
      const eps = Math.pow(10, state.logEpsilon);
      const v = Math.pow(10, state.logVariance);
      const out = v / (v + eps);
      return { epsilon: eps, variance: v, outputVariance: out, outputStd: Math.sqrt(out) };
    },
    render(d, size) {
      const f = frame({
        size,
        title: "Output variance against input variance",
        alt: `Log-log plot of the output variance, sigma squared over sigma squared plus epsilon, for epsilon ${sig3(d.epsilon)}: a line of slope one below epsilon, flat at one above it; the chosen feature, with variance ${sig3(d.variance)}, keeps ${sig3(d.outputVariance)}.`,
        legend: [["line", COLORS.blue, `\u03b5 = ${power(d.epsilon)}`], ["line", COLORS.lightgrey, "\u03b5 = 10\u207b\u00b3 (Keras)"], ["dot", COLORS.orange, "chosen feature"]],
        x: { min: 1e-8, max: 1e2, log: true, ticks: powerTicks(-8, 2, 2), label: "variance of the feature in the batch, \u03c3\u00b2" },
        y: { min: 1e-8, max: 3, log: true, ticks: powerTicks(-8, 0, 2), label: "output variance" },
      });
      const xs = [];
      for (let i = 0; i <= 200; i++) xs.push(Math.pow(10, -8 + (10 * i) / 200));
      const out = (eps) => xs.map((x) => Math.max(1e-8, x / (x + eps)));
      const plot = f.open
        + path(f, xs, out(KERAS_EPSILON), `stroke="${COLORS.lightgrey}" stroke-width="3"`)
        + vline(f, d.epsilon, `stroke="${COLORS.grey}" stroke-width="1.2" stroke-dasharray="2 3"`)
        + path(f, xs, out(d.epsilon), `stroke="${COLORS.blue}" stroke-width="2"`)
        + `<circle cx="${n1(f.sx(d.variance))}" cy="${n1(f.sy(Math.max(1e-8, d.outputVariance)))}" r="5" fill="${COLORS.orange}" stroke="#fff" stroke-width="1.5"/>`
        + f.close;
      const numbers = `<span class="bnw-line">\u03b5 = ${value("epsilon", d.epsilon, power(d.epsilon))}, `
        + `feature variance \u03c3\u00b2 = ${value("variance", d.variance, power(d.variance))}:</span> `
        + `<span class="bnw-line">output variance \u03c3\u00b2/(\u03c3\u00b2 + \u03b5) = ${value("output-variance", d.outputVariance, sig3(d.outputVariance))}, `
        + `output standard deviation ${value("output-std", d.outputStd, sig3(d.outputStd))}.</span>`;
      return { plots: [plot], numbers };
    },
  };

  const MOMENTA = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99];
  const DRIFTS = [];
  for (let k = 0; k <= 10; k++) DRIFTS.push(Math.round(k * 0.002 * 1000) / 1000);
  const EMA = { steps: 1000, driftFrom: 500, level: 3, noise: 0.5, remaining: 0.01 };

  const momentum = {
    name: "momentum",
    file: "momentum",
    single: true,
    title: "The moving average: warm-up, lag and noise",
    controls: [
      { key: "momentum", label: "momentum (decay) d", values: MOMENTA, initial: 0.9, text: (v) => String(v) },
      { key: "drift", label: "drift per step", values: DRIFTS, initial: 0.01, text: (v) => v.toFixed(3) },
    ],
    buttons: [{ key: "draw", label: "New batch noise" }],
    caption: "The moving mean of one feature (blue), updated at every step with that step's batch "
      + "mean (grey dots: the true mean, black, plus noise of standard deviation 0.5) and starting "
      + "at 0, as Keras's moving mean does; dashed: the same average without the noise. The shaded "
      + "steps are the warm-up, until the start weighs under 1 %; after step 500 the true mean "
      + "drifts, and the average trails it. Raise the momentum: the average gets smoother (noise "
      + "factor \u221a((1 \u2212 d)/(1 + d))) but warms up later and lags further (d/(1 \u2212 d) steps).",
    compute(state) {
      const d = state.momentum;
      const z = normals(3000 + state.draw, EMA.steps);
      const truth = new Float64Array(EMA.steps);
      const observed = new Float64Array(EMA.steps);
      for (let k = 0; k < EMA.steps; k++) {
        truth[k] = EMA.level + state.drift * Math.max(0, k - EMA.driftFrom);
        observed[k] = truth[k] + EMA.noise * z[k];
      }
      const average = ema(observed, d, 0);
      const clean = ema(truth, d, 0);
      const warmUp = stepsToForget(d, EMA.remaining);
      const deviation = [];
      for (let k = warmUp; k < EMA.steps; k++) deviation.push(average[k] - clean[k]);
      return {
        momentum: d, drift: state.drift, draw: state.draw, truth: Array.from(truth), observed: Array.from(observed),
        average: Array.from(average), clean: Array.from(clean), warmUp, lagSteps: driftLag(d), lag: state.drift * driftLag(d),
        noiseFactor: noiseFactor(d), noiseSd: EMA.noise * noiseFactor(d), measuredLag: truth[EMA.steps - 1] - clean[EMA.steps - 1],
        measuredNoise: Math.sqrt(variance(deviation)) / EMA.noise, settings: EMA,
      };
    },
    render(d, size) {
      const top = EMA.level + d.drift * (EMA.steps - 1 - EMA.driftFrom) + 2;
      const f = frame({
        size,
        title: `Moving mean, momentum ${d.momentum}, drift ${d.drift.toFixed(3)} per step`,
        alt: `Line plot over ${EMA.steps} steps: noisy batch means around a true mean of 3 that drifts by ${d.drift.toFixed(3)} per step after step 500, and their moving average with momentum ${d.momentum}, which warms up in ${d.warmUp} steps and trails the drift by ${fixed(d.lagSteps, 1)} steps.`,
        legend: [["dot", COLORS.lightgrey, "batch means"], ["line", "#000", "true mean"], ["line", COLORS.blue, "moving mean"], ["dash", COLORS.blue, "without the noise"]],
        x: { min: 0, max: EMA.steps, ticks: linearTicks(0, EMA.steps, 200, 0), label: "training step" },
        y: { min: -1, max: top, ticks: linearTicks(0, top, top > 10 ? 2 : 1, 0), label: "mean of one feature" },
      });
      let dots = "";
      for (let k = 0; k < EMA.steps; k++) dots += `M${n1(f.sx(k))} ${n1(f.sy(Math.max(-1, Math.min(top, d.observed[k]))))}h0`;
      // The lines at a resolution finer than a pixel (the true mean is straight between its corners).
      const every = (n) => d.truth.map((_, k) => k).filter((k) => k % n === 0 || k === EMA.steps - 1);
      const corners = [0, EMA.driftFrom, EMA.steps - 1];
      const warm = Math.min(d.warmUp, EMA.steps);
      const plot = f.open
        + `<rect x="${f.x0}" y="${f.y1}" width="${n1(f.sx(warm) - f.x0)}" height="${f.y0 - f.y1}" fill="${COLORS.shade}"/>`
        + `<path d="${dots}" stroke="${COLORS.lightgrey}" stroke-width="2.6" stroke-linecap="round"/>`
        + path(f, corners, corners.map((k) => d.truth[k]), `stroke="#000" stroke-width="1.4"`)
        + path(f, every(4), every(4).map((k) => d.clean[k]), `stroke="${COLORS.blue}" stroke-width="1.2" stroke-dasharray="4 3"`)
        + path(f, every(2), every(2).map((k) => d.average[k]), `stroke="${COLORS.blue}" stroke-width="1.8"`)
        + `<text x="${n1(f.sx(warm) + 3)}" y="${f.y1 + 11}" font-size="10">\u2190 warm-up, ${d.warmUp} steps</text>`
        + f.close;
      const numbers = `<span class="bnw-line">Warm-up: the start weighs under 1 % after ${value("warm-up", d.warmUp, d.warmUp)} steps.</span> `
        + `<span class="bnw-line">Lag: d/(1 \u2212 d) = ${value("lag-steps", d.lagSteps, fixed(d.lagSteps, 1))} steps, `
        + `${value("lag", d.lag, fixed(d.lag, 3))} below a mean drifting by ${value("drift", d.drift, d.drift.toFixed(3))} per step `
        + `(the average without the noise trails by ${value("measured-lag", d.measuredLag, fixed(d.measuredLag, 3))} at the last step).</span> `
        + `<span class="bnw-line">Noise: the average keeps \u221a((1 \u2212 d)/(1 + d)) = ${value("noise-factor", d.noiseFactor, fixed(d.noiseFactor, 3))} `
        + `of the batch noise, sd ${value("noise-sd", d.noiseSd, fixed(d.noiseSd, 3))} of 0.5 `
        + `(in this run, after the warm-up: ${value("measured-noise", d.measuredNoise, fixed(d.measuredNoise, 3))}).</span>`;
      return { plots: [plot], numbers };
    },
  };

  const INPUTS = [];
  for (let k = -2; k <= 24; k++) INPUTS.push(k / 2);
  const TI_SIZES = [2, 4, 8, 16, 32, 64, 128];

  const othersCache = {};
  /** The m - 1 other examples of each of BATCHES batches, drawn from the population (seeded by m). */
  function othersOf(m) {
    if (!othersCache[m]) {
      const z = normals(2000 + m, BATCHES * (m - 1));
      for (let i = 0; i < z.length; i++) z[i] = POPULATION.mean + POPULATION.sd * z[i];
      othersCache[m] = z;
    }
    return othersCache[m];
  }

  const trainInfer = {
    name: "train-infer",
    file: "train_infer",
    single: true,
    title: "One input in training mode and in inference mode",
    controls: [
      { key: "x", label: "the input x", values: INPUTS, initial: 8, text: (v) => fixed(v, 1) },
      { key: "m", label: "batch size m", values: TI_SIZES, initial: 8, text: (v) => String(v) },
    ],
    buttons: [],
    caption: "BN's output for one fixed input x of a feature whose population has mean 5 and "
      + "variance 4 (\u03b5 = 10\u207b\u00b3, \u03b3 = 1, \u03b2 = 0). In inference mode BN uses the "
      + "population statistics, and x always gets the same output (blue line). In training mode it "
      + "uses the statistics of x's batch, and the output depends on the m \u2212 1 other examples: "
      + "the histogram shows it over 2,000 random batches. Small batches spread it widely and pull it "
      + "towards 0 (with m = 2 it is close to +1 or \u22121); large ones concentrate it near the inference output.",
    compute(state) {
      const m = state.m;
      const others = othersOf(m);
      const outputs = new Float64Array(BATCHES);
      const batch = new Float64Array(m);
      for (let b = 0; b < BATCHES; b++) {
        batch[0] = state.x;
        batch.set(others.subarray(b * (m - 1), (b + 1) * (m - 1)), 1);
        outputs[b] = (state.x - mean(batch)) / Math.sqrt(variance(batch) + KERAS_EPSILON);
      }
      const sorted = Array.from(outputs).sort((p, q) => p - q);
      return {
        x: state.x, m, others: Array.from(others), outputs: Array.from(outputs), epsilon: KERAS_EPSILON, population: POPULATION,
        inference: (state.x - POPULATION.mean) / Math.sqrt(POPULATION.sd ** 2 + KERAS_EPSILON),
        mean: mean(outputs), sd: Math.sqrt(variance(outputs)), low: quantile(sorted, 0.05), high: quantile(sorted, 0.95), batches: BATCHES,
      };
    },
    render(d, size) {
      const h = histogram(d.outputs, -4, 4, 64);
      const f = frame({
        size,
        title: `BN's output for x = ${fixed(d.x, 1)}, batches of ${d.m}`,
        alt: `Histogram of BN's training-mode output for x = ${fixed(d.x, 1)} over ${BATCHES} batches of ${d.m}: mean ${fixed(d.mean, 2)}, standard deviation ${fixed(d.sd, 2)}; the inference-mode output is ${fixed(d.inference, 3)}.`,
        legend: [["bar", COLORS.lightgrey, "training mode, each batch"], ["dash", COLORS.orange, "their mean"], ["line", COLORS.blue, "inference mode"]],
        x: { min: -4, max: 4, ticks: linearTicks(-4, 4, 1, 0), label: "BN output for x" },
        y: countAxis(Math.max(...h.counts), "number of batches"),
      });
      const plot = f.open + bars(f, h, COLORS.lightgrey)
        + vline(f, Math.max(-4, Math.min(4, d.mean)), `stroke="${COLORS.orange}" stroke-width="1.6" stroke-dasharray="4 3"`)
        + vline(f, Math.max(-4, Math.min(4, d.inference)), `stroke="${COLORS.blue}" stroke-width="2.2"`)
        + f.close;
      const numbers = `<span class="bnw-line">Inference mode, population statistics: (x \u2212 5)/\u221a(4 + \u03b5) = `
        + `${value("inference", d.inference, fixed(d.inference, 3))} for x = ${value("x", d.x, fixed(d.x, 1))}.</span> `
        + `<span class="bnw-line">Training mode, ${BATCHES.toLocaleString("en-US")} batches of m = ${value("m", d.m, d.m)}: `
        + `mean ${value("train-mean", d.mean, fixed(d.mean, 3))}, sd ${value("train-sd", d.sd, fixed(d.sd, 3))}, `
        + `90 % between ${value("train-low", d.low, fixed(d.low, 3))} and ${value("train-high", d.high, fixed(d.high, 3))}.</span>`;
      return { plots: [plot], numbers };
    },
  };

  const WIDGETS = {};
  for (const w of [batchNoise, epsilon, momentum, trainInfer]) WIDGETS[w.name] = w;

  // ---------------------------------------------------------------- markup
  function initialState(w) {
    const state = { draw: 0 };
    for (const c of w.controls) state[c.key] = c.initial;
    return state;
  }

  function controlMarkup(c) {
    const index = c.values.indexOf(c.initial);
    const text = c.text(c.initial);
    return `<label class="bnw-control"><span class="bnw-label">${c.label}: <output data-bnw-shows="${c.key}">${text}</output></span>`
      + `<input type="range" min="0" max="${c.values.length - 1}" step="1" value="${index}" data-bnw-control="${c.key}" aria-valuetext="${escapeHtml(text)}"></label>`;
  }

  function body(w, state, size) {
    const d = w.compute(state);
    const r = w.render(d, size || NARROW);
    return { data: d, plots: r.plots.map((svg) => `<div class="bnw-plot">${svg}</div>`).join(""), numbers: r.numbers };
  }

  /** The widget's whole figure in its default state: the HTML snippet a chapter includes. */
  function snippet(name) {
    const w = WIDGETS[name];
    const b = body(w, initialState(w));
    const controls = w.controls.map(controlMarkup).join("")
      + w.buttons.map((button) => `<button type="button" class="bnw-button" data-bnw-button="${button.key}">${button.label}</button>`).join("");
    return `<!-- Generated by site/widgets/make_snippets.py from site/widgets/assets/bnwidgets.js: do not edit by hand. -->\n`
      + `<figure class="bnw" id="bnw-${w.name}" data-bnw="${w.name}">\n`
      + `<div class="bnw-controls" hidden>${controls}</div>\n`
      + `<div class="bnw-plots">${b.plots}</div>\n`
      + `<p class="bnw-numbers" aria-live="polite">${b.numbers}</p>\n`
      + `<p class="bnw-nojs">A picture of the default setting: with JavaScript on, the controls above the plot change it.</p>\n`
      + `<figcaption><p><span class="bnw-title">${w.title}.</span> ${w.caption}</p></figcaption>\n`
      + `</figure>\n`;
  }

  // ---------------------------------------------------------------- live widgets
  const live = new WeakMap();

  function mount(figure) {
    const w = WIDGETS[figure.dataset.bnw];
    if (!w || live.has(figure)) return;
    const state = initialState(w);
    const plots = figure.querySelector(".bnw-plots");
    const numbers = figure.querySelector(".bnw-numbers");
    const entry = { state, data: null };
    live.set(figure, entry);

    // A single plot is drawn wide where its box has room for it (see NARROW and WIDE).
    const sizeNow = () => (w.single && plots.clientWidth >= WIDE.width - 40 ? WIDE : NARROW);
    let size = sizeNow();

    function update() {
      for (const c of w.controls) {
        const input = figure.querySelector(`input[data-bnw-control="${c.key}"]`);
        const v = c.values[Number(input.value)];
        state[c.key] = v;
        const text = c.text(v);
        input.setAttribute("aria-valuetext", text);
        figure.querySelector(`output[data-bnw-shows="${c.key}"]`).textContent = text;
      }
      const b = body(w, state, size);
      entry.data = b.data;
      if (plots.innerHTML !== b.plots) plots.innerHTML = b.plots;
      if (numbers.innerHTML !== b.numbers) numbers.innerHTML = b.numbers;
      figure.dataset.bnwRendered = String(Number(figure.dataset.bnwRendered || 0) + 1);
    }

    figure.querySelectorAll("input[data-bnw-control]").forEach((input) => input.addEventListener("input", update));
    figure.querySelectorAll("button[data-bnw-button]").forEach((button) => button.addEventListener("click", () => {
      state[button.dataset.bnwButton] += 1;
      update();
    }));
    figure.querySelector(".bnw-controls").hidden = false;
    figure.querySelector(".bnw-nojs").hidden = true;
    size = sizeNow();
    window.addEventListener("resize", () => {
      if (sizeNow() !== size) { size = sizeNow(); update(); }
    });
    update();
    figure.classList.add("bnw-live");
  }

  function mountAll() {
    document.querySelectorAll("figure.bnw[data-bnw]").forEach(mount);
  }

  window.BNWidgets = {
    names: Object.keys(WIDGETS),
    files: Object.fromEntries(Object.values(WIDGETS).map((w) => [w.name, w.file])),
    snippet,
    /** The values a control steps through (its slider's positions 0, 1, ...). */
    values: (name, key) => WIDGETS[name].controls.find((c) => c.key === key).values.slice(),
    /** The values behind what a live widget shows (its draws included), for tests. */
    data: (figure) => (live.get(figure) || {}).data,
    mountAll,
  };

  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
    else mountAll();
  }
})();
