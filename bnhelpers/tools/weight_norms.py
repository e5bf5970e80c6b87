"""Weight norms under BN: kernel and gradient norms, the angle between them, the effective learning rate.

A kernel whose layer's output goes straight into a BN layer that normalizes with the
batch's statistics (training mode) is *scale-invariant*: multiplying it by ``c > 0``
multiplies every pre-activation of a unit and its batch mean and standard deviation by
``c``, so BN's output, and the loss, do not change (exactly when BN's ``epsilon`` is 0;
up to terms of order ``epsilon / variance`` otherwise). It holds per output unit (each
unit has its own mean and variance), so for each unit ``j`` with kernel slice ``w_j``
(van Laarhoven 2017; Zhang et al. 2019):

- ``<w_j, grad_j> = 0``: the gradient is orthogonal to the weights (differentiate
  ``L(c w) = L(w)`` at ``c = 1``);
- ``grad L(c w) = grad L(w) / c``: the gradient shrinks as the weights grow;
- plain SGD (``w <- w - eta g``) therefore increases the norm,
  ``||w_{t+1}||^2 = ||w_t||^2 + eta^2 ||g_t||^2``, and turns the weights by an angle of
  about ``eta ||g(w_hat)|| / ||w||^2`` (``w_hat = w / ||w||``): the *effective learning
  rate* is ``eta / ||w||^2``. Weight decay shrinks ``||w||`` and so keeps it up.

Conventions:

- a *kernel* is a layer's ``kernel`` variable (``Dense`` ``(in, units)``, ``Conv2D``
  ``(kh, kw, in, filters)``); its *units* are the slices along the last axis;
- gradients are those of sparse softmax cross-entropy of the model's logits against
  integer labels ``y`` (shape ``(N,)``), with BN in training mode, computed through
  ``model.stateless_call``: measuring never changes a weight or a moving statistic;
- ``cos`` is the signed cosine between a whole kernel and its gradient, ``unit_cos``
  the largest ``|cos|`` over its units; ``effective_lr`` is ``learning_rate / ||w||^2``.

- :func:`kernels_before_bn`: the layers of a functional model whose output is a BN layer's input;
- :class:`WeightNormProbe`: ``probe(model)`` returns a ``(layers, len(FIELDS))`` array,
  a probe for :func:`bnhelpers.training.compiled.train_with_evaluation`;
  :meth:`~WeightNormProbe.measure` measures on any batch (e.g. the one a step is about to
  take) and at scaled kernels ``c w``; :meth:`~WeightNormProbe.gradient_scaling` gives
  ``c ||grad L(c w)|| / ||grad L(w)||``; :meth:`~WeightNormProbe.norms` reads the norms only.

Inputs are cast to ``keras.config.floatx()``.

Chapters: 10.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..layers.walk import is_batch_norm, walk_layers

__all__ = ["kernels_before_bn", "WeightNormProbe"]


def _has_kernel(layer) -> bool:
    return getattr(layer, "kernel", None) is not None


def kernels_before_bn(model) -> list:
    """The layers with a ``kernel`` whose output is the input of a BN layer, in :func:`walk_layers` order.

    Works on functional and Sequential models: it compares each layer's ``output``
    with each BN layer's ``input`` (for a layer called more than once, Keras's
    ``output`` is that of its first call). The loss is invariant to the scale of
    such a kernel only if nothing but BN reads the layer's output: a residual
    branch or a second call breaks the invariance (``WeightNormProbe(...).measure()``
    then shows a ``unit_cos`` far from 0). ``ValueError`` when there is none.
    """
    layers = list(walk_layers(model))

    def tensor(layer, attribute):
        try:
            return getattr(layer, attribute)
        except (AttributeError, ValueError):  # not called, or called more than once
            return None

    bn_inputs = [tensor(layer, "input") for layer in layers if is_batch_norm(layer)]
    found = [layer for layer in layers if layer is not model and _has_kernel(layer)
             and any(t is not None and tensor(layer, "output") is t for t in bn_inputs)]
    if not found:
        raise ValueError(f"{getattr(model, 'name', model)!r} has no layer with a kernel whose output goes into BN")
    return found


def _stats(kernels, grads, learning_rate: float) -> dict:
    """Per-kernel norms, gradient norms, cosines and effective learning rates (NumPy arrays, one entry per kernel)."""
    out = {"norm": [], "grad_norm": [], "cos": [], "unit_cos": [], "inner": []}
    for w, g in zip(kernels, grads):
        w = np.asarray(w, dtype=np.float64).reshape(-1, np.shape(w)[-1])   # (fan_in, units)
        g = np.asarray(g, dtype=np.float64).reshape(w.shape)
        wn, gn = np.linalg.norm(w), np.linalg.norm(g)
        inner = float(np.sum(w * g))
        unit_w, unit_g = np.linalg.norm(w, axis=0), np.linalg.norm(g, axis=0)
        unit = np.abs(np.sum(w * g, axis=0)) / np.maximum(unit_w * unit_g, np.finfo(np.float64).tiny)
        out["norm"].append(wn)
        out["grad_norm"].append(gn)
        out["inner"].append(inner)
        out["cos"].append(inner / max(wn * gn, np.finfo(np.float64).tiny))
        out["unit_cos"].append(float(unit.max()))
    out = {k: np.array(v) for k, v in out.items()}
    out["effective_lr"] = learning_rate / out["norm"] ** 2
    return out


class WeightNormProbe:
    """``probe(model) -> array (len(layers), len(FIELDS))``: kernel statistics on a fixed batch ``x, y``.

    ``layers``: layer names or layers with a ``kernel`` (default :func:`kernels_before_bn`);
    ``learning_rate``: a number, or a function of no arguments returning the current one
    (e.g. ``lambda: trainer.learning_rate``), for ``effective_lr``. One probe serves one
    model (its loss and gradient are traced once).
    """

    FIELDS = ("norm", "grad_norm", "cos", "unit_cos", "effective_lr")

    def __init__(self, model, x, y, *, layers: Sequence | None = None,
                 learning_rate: float | Callable[[], float] = 1.0):
        import keras
        import tensorflow as tf

        x, y = np.asarray(x), np.asarray(y)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"x must be a float array, got {x.dtype}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"y must be a 1-D array of integer labels, got {y.dtype} with shape {y.shape}")
        if len(x) != len(y) or len(x) < 2:
            raise ValueError(f"x and y need the same length >= 2, got {len(x)} and {len(y)}")
        if not callable(learning_rate) and (isinstance(learning_rate, bool) or
                                            not isinstance(learning_rate, (int, float)) or not learning_rate > 0):
            raise ValueError(f"learning_rate must be a number > 0 or a function, got {learning_rate!r}")
        if layers is None:
            layers = kernels_before_bn(model)
        layers = [model.get_layer(name) if isinstance(name, str) else name for name in layers]
        if not layers:
            raise ValueError("layers must not be empty")
        for layer in layers:
            if not _has_kernel(layer):
                raise ValueError(f"layer {layer.name!r} has no kernel")
        trainable = model.trainable_variables
        self.index = []
        for layer in layers:
            matches = [i for i, v in enumerate(trainable) if v is layer.kernel]
            if not matches:
                raise ValueError(f"the kernel of {layer.name!r} is not a trainable variable of {model.name!r}")
            self.index.append(matches[0])
        self.model, self.layers = model, layers
        self.names = [layer.name for layer in layers]
        self._learning_rate = learning_rate
        floatx = keras.config.floatx()
        self._x = tf.constant(x.astype(floatx))
        self._y = tf.constant(y.astype(np.int32))
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        index = list(self.index)

        @tf.function(reduce_retracing=True)
        def loss_and_grads(weights, x, y, scale):
            weights = [w * tf.cast(scale[index.index(i)], w.dtype) if i in index else w
                       for i, w in enumerate(weights)]
            with tf.GradientTape() as tape:
                tape.watch(weights)
                non_trainable = [v.value for v in model.non_trainable_variables]
                logits, _ = model.stateless_call(weights, non_trainable, x, training=True)
                loss = loss_fn(y, logits)
            grads = tape.gradient(loss, [weights[i] for i in index])
            return loss, [weights[i] for i in index], grads

        self._loss_and_grads = loss_and_grads

    @property
    def learning_rate(self) -> float:
        value = self._learning_rate() if callable(self._learning_rate) else self._learning_rate
        return float(value)

    def norms(self) -> np.ndarray:
        """``||w||`` of each tracked kernel, shape ``(len(layers),)`` (no gradient computed)."""
        return np.array([np.linalg.norm(np.asarray(layer.kernel, dtype=np.float64)) for layer in self.layers])

    def _scales(self, scale) -> np.ndarray:
        if isinstance(scale, bool):
            raise ValueError(f"scale must be a number > 0 or one per layer, got {scale!r}")
        try:
            scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), (len(self.layers),))
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a number > 0 or one per layer ({len(self.layers)}), "
                             f"got {scale!r}") from None
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise ValueError(f"scale must be > 0, got {scale!r}")
        return scales

    def measure(self, x=None, y=None, *, scale=1.0) -> dict:
        """Loss and per-kernel statistics on ``x, y`` (default: the probe's batch) at kernels ``c * w``.

        ``scale``: ``c``, one number for every tracked kernel or one per kernel (1 leaves a
        kernel as it is). Returns ``"loss"`` (a float), the ``FIELDS`` and ``"inner"``
        (``<w, grad>``), each an array with one entry per tracked layer, all measured at
        the scaled kernels (the other weights as they are). The model is not changed.
        """
        import keras
        import tensorflow as tf

        scales = self._scales(scale)
        if (x is None) != (y is None):
            raise ValueError("give both x and y, or neither")
        if x is None:
            x, y = self._x, self._y
        else:
            if len(x) != len(y):
                raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
            x = tf.constant(np.asarray(x, dtype=keras.config.floatx()))
            y = tf.constant(np.asarray(y).astype(np.int32))
        weights = [v.value for v in self.model.trainable_variables]
        loss, kernels, grads = self._loss_and_grads(weights, x, y, tf.constant(scales, tf.float64))
        result = _stats([k.numpy() for k in kernels], [g.numpy() for g in grads], self.learning_rate)
        result["loss"] = float(loss)
        return result

    def gradient_scaling(self, scales=(0.1, 10.0)) -> np.ndarray:
        """``c * ||grad L(c w)|| / ||grad L(w)||`` for each ``c`` in ``scales`` and each tracked kernel,
        scaled alone (the others as they are): shape ``(len(scales), len(layers))``, 1 for a scale-invariant kernel."""
        scales = np.asarray(scales, dtype=np.float64)
        if scales.ndim != 1 or len(scales) == 0 or not np.all(np.isfinite(scales) & (scales > 0)):
            raise ValueError(f"scales must be a non-empty 1-D list of numbers > 0, got {scales}")
        base = self.measure()["grad_norm"]
        out = np.empty((len(scales), len(self.layers)))
        for i, c in enumerate(scales):
            for j in range(len(self.layers)):
                alone = np.where(np.arange(len(self.layers)) == j, c, 1.0)
                out[i, j] = c * self.measure(scale=alone)["grad_norm"][j] / base[j]
        return out

    def __call__(self, model=None) -> np.ndarray:
        if model is not None and model is not self.model:
            raise ValueError("this probe was built for another model")
        result = self.measure()
        return np.stack([result[k] for k in self.FIELDS], axis=1)
