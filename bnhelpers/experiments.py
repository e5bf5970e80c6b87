"""Small tools for the paper reproductions: summaries over seeds, learning-curve read-outs,
activation percentiles and Ioffe & Szegedy's Algorithm 2 statistics.

Conventions: per-seed results are stacked along axis 0 (shape ``(seeds, ...)``);
"spread" is the sample standard deviation over seeds (``ddof=1``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["mean_sd", "format_mean_sd", "first_step_reaching", "gap_recovered",
           "LayerInputPercentiles", "percentile_drift", "algorithm2_statistics", "format_table",
           "format_bound"]


def mean_sd(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single seed) along ``axis``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or values.shape[axis] == 0:
        raise ValueError("need at least one value")
    sd = values.std(axis=axis, ddof=1) if values.shape[axis] > 1 else np.zeros_like(values.mean(axis=axis))
    return values.mean(axis=axis), sd


def format_mean_sd(values, scale: float = 1.0, digits: int = 1) -> str:
    """``"m ± s"`` of a 1-D list of per-seed values times ``scale``, rounded to ``digits``
    (``"not reached in k/n seeds"`` if some value is infinite, e.g. from :func:`first_step_reaching`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D (one per seed), got shape {values.shape}")
    missing = int(np.sum(~np.isfinite(values)))
    if missing:
        return f"not reached in {missing}/{len(values)} seeds"
    m, s = mean_sd(values * scale)
    return f"{round(float(m), digits) + 0.0:.{digits}f} ± {round(float(s), digits) + 0.0:.{digits}f}"


def first_step_reaching(steps, values, threshold: float) -> float:
    """The first entry of ``steps`` whose ``values`` entry is ``>= threshold``; ``inf`` if none."""
    steps, values = np.asarray(steps), np.asarray(values)
    if steps.shape != values.shape or steps.ndim != 1:
        raise ValueError(f"steps and values must be 1-D of one length, got {steps.shape} and {values.shape}")
    hit = np.flatnonzero(values >= threshold)
    return float(steps[hit[0]]) if len(hit) else float("inf")


def gap_recovered(broken, repaired, reference):
    """Fraction of the gap ``reference - broken`` that ``repaired`` closes: 0 none, 1 all of it."""
    broken, repaired, reference = (np.asarray(v, dtype=np.float64) for v in (broken, repaired, reference))
    gap = reference - broken
    if np.any(gap == 0):
        raise ValueError("broken and reference are equal: there is no gap to recover")
    return (repaired - broken) / gap


class LayerInputPercentiles:
    """``probe(model) -> (len(q), units)``: percentiles over ``x`` of the input to layer ``layer_name``.

    ``training=True`` runs the network in training mode (BN uses the statistics
    of ``x`` as one batch) through ``stateless_call``, so the moving statistics
    are not touched; ``training=False`` uses the moving statistics.
    """

    def __init__(self, model, layer_name: str, x, q: Sequence[float] = (15, 50, 85), training: bool = True):
        import keras
        import tensorflow as tf

        q = np.asarray(q, dtype=np.float64)
        if q.ndim != 1 or np.any((q < 0) | (q > 100)):
            raise ValueError(f"q must be percentiles in [0, 100], got {q}")
        self.model, self.q, self.training = model, q, bool(training)
        self._sub = keras.Model(model.input, model.get_layer(layer_name).input)
        self._x = tf.constant(np.asarray(x, dtype=keras.config.floatx()))
        sub = self._sub

        @tf.function
        def values():
            trainable = [v.value for v in sub.trainable_variables]
            non_trainable = [v.value for v in sub.non_trainable_variables]
            out, _ = sub.stateless_call(trainable, non_trainable, self._x, training=self.training)
            return out

        self._values = values

    def values(self) -> np.ndarray:
        """The layer input for every example of ``x``: ``(N, units)``."""
        return self._values().numpy()

    def __call__(self, model=None) -> np.ndarray:
        if model is not None and model is not self.model:
            raise ValueError("this probe was built for another model")
        return np.percentile(self.values(), self.q, axis=0)


def percentile_drift(trace) -> dict:
    """How much a distribution moves over training, from a trace of 3 percentiles (low, median, high).

    ``trace``: ``(T, 3, units)``, e.g. stacked :class:`LayerInputPercentiles`
    results. Returns per unit (arrays of shape ``(units,)``):
    ``median_travel``, the largest distance of the median from its first value
    divided by the mean low-to-high spread over time; and ``spread_ratio``, the
    largest spread over the smallest.
    """
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 3 or trace.shape[1] != 3 or trace.shape[0] < 2:
        raise ValueError(f"trace must have shape (T >= 2, 3, units), got {trace.shape}")
    spread = trace[:, 2] - trace[:, 0]
    if np.any(spread < 0):
        raise ValueError("percentiles must be ordered low, median, high")
    tiny = np.finfo(np.float64).tiny
    travel = np.abs(trace[:, 1] - trace[0, 1]).max(axis=0) / np.maximum(spread.mean(axis=0), tiny)
    return {"median_travel": travel, "spread_ratio": spread.max(axis=0) / np.maximum(spread.min(axis=0), tiny)}


def algorithm2_statistics(batches) -> tuple[np.ndarray, np.ndarray]:
    """Population mean and variance by Ioffe & Szegedy's Algorithm 2.

    ``batches``: ``(n_batches, m, C)``, a layer's inputs over ``n_batches``
    mini-batches of ``m`` examples. Returns ``E[x]``, the mean of the batch
    means, and ``Var[x] = m/(m-1) * mean of the (biased) batch variances``, both ``(C,)``.
    """
    batches = np.asarray(batches, dtype=np.float64)
    if batches.ndim != 3:
        raise ValueError(f"batches must have shape (n_batches, m, C), got {batches.shape}")
    n_batches, m, _ = batches.shape
    if n_batches < 1 or m < 2:
        raise ValueError(f"need at least one batch of at least 2 examples, got {batches.shape}")
    return batches.mean(axis=1).mean(axis=0), m / (m - 1) * batches.var(axis=1).mean(axis=0)


def format_bound(value) -> str:
    """``"below 1e-15"``: the smallest power of ten above ``|value|`` (``"0"`` for zero).

    For differences that are round-off: their digits change from CPU to CPU, their order of magnitude only
    when the value sits close to a power of ten, so that is all a notebook prints of them.
    """
    value = abs(float(value))
    if not np.isfinite(value):
        raise ValueError(f"value must be finite, got {value}")
    if value == 0:
        return "0"
    return f"below 1e{int(np.floor(np.log10(value))) + 1}"


def format_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A fixed-width text table (what the notebooks print, so nbval checks every cell)."""
    header = [str(h) for h in header]
    rows = [[str(c) for c in row] for row in rows]
    if any(len(row) != len(header) for row in rows):
        raise ValueError("every row needs one entry per column")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), "-+-".join("-" * w for w in widths), *map(line, rows)])
