"""Per-layer diagnostics in the spirit of Karpathy's "Activations & Gradients, BatchNorm" lecture.

One forward and backward pass of a model on one batch ``(x, y)``, measured without
changing the model (BN layers see the batch's statistics through ``stateless_call``, so
their moving averages stay as they are), gives for every hidden layer ``i``:

- ``act_mean``, ``act_std``: mean and standard deviation of the layer's activation
  output ``a_i`` (the output of its ``keras.layers.Activation``, shape ``(N, units)``)
  over all its entries;
- ``saturated``: the share of entries with ``|a_i| > saturation`` (0.97 by default, as
  in the lecture; meaningful for tanh, where the local gradient ``1 - a^2`` there is
  below 0.06). Not the same as :func:`bnhelpers.tools.probes.saturated_tanh_fraction`,
  which counts *units* saturated on most examples;
- ``grad_mean``, ``grad_std``: mean and standard deviation of ``dloss/da_i`` over its entries;
- ``update_ratio``: ``log10(||learning_rate * dloss/dW_i|| / ||W_i||)`` (Frobenius norms),
  the size of one plain-SGD step on the kernel ``W_i`` of the layer's ``Dense`` layer
  relative to the kernel itself. The lecture's rule of thumb is about ``-3``: much
  lower and the layer learns slowly, much higher and it changes too fast.

Conventions: hidden layer ``i`` is the ``i``-th ``keras.layers.Activation`` of
``model.layers`` and the ``i``-th ``keras.layers.Dense`` (so models from
:func:`~bnhelpers.models.mlp.build_mlp`, whose last ``Dense`` gives the logits and has no
``Activation``). ``loss_fn(y, logits)`` defaults to sparse softmax cross-entropy (mean over
the batch). Inputs are cast to ``keras.config.floatx()``; statistics are computed in float64.

- :data:`QUANTITIES`: the names above, in the order of the rows of :class:`LayerRecorder`'s arrays;
- :func:`layer_statistics`: the dict ``name -> (layers,)`` for one model and batch;
- :class:`LayerRecorder`: the same for a fixed batch as a probe ``recorder(model) -> (Q, layers)``
  for :func:`~bnhelpers.training.compiled.train_with_evaluation` and ``train_seeds``;
- :func:`unpack`: ``(..., Q, layers)`` arrays back into ``name -> (..., layers)``.

Chapters: 11.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

__all__ = ["QUANTITIES", "layer_statistics", "LayerRecorder", "unpack"]

QUANTITIES = ("act_mean", "act_std", "saturated", "grad_mean", "grad_std", "update_ratio")


def _hidden_layers(model) -> tuple[list, list]:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not activations:
        raise ValueError(f"model {model.name!r} has no keras.layers.Activation layers")
    if len(dense) < len(activations):
        raise ValueError(f"model {model.name!r} has {len(activations)} Activation layers but only "
                         f"{len(dense)} Dense layers: each hidden layer needs one of each")
    return activations, dense[: len(activations)]


def _check_batch(x, y, learning_rate, saturation):
    x, y = np.asarray(x), np.asarray(y)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a float array, got {x.dtype}")
    if x.ndim < 2 or len(x) < 1:
        raise ValueError(f"x must be a batch of shape (N, ...) with N >= 1, got {x.shape}")
    if len(y) != len(x):
        raise ValueError(f"x and y disagree in length: {len(x)} vs {len(y)}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if isinstance(saturation, bool) or not isinstance(saturation, (int, float, np.floating)) \
            or not 0 < saturation < 1:
        raise ValueError(f"saturation must be in (0, 1), got {saturation!r}")
    return x, y


class LayerRecorder:
    """Per-layer statistics of one fixed batch, as a probe: ``recorder(model)`` returns ``(Q, layers)`` floats.

    Rows follow :data:`QUANTITIES` (see the module docstring); ``recorder.layer_names`` names the
    columns (the Activation layers). Call it with no argument, or with the model it was built for
    (the way :func:`~bnhelpers.training.compiled.train_with_evaluation` calls probes).
    """

    def __init__(self, model, x, y, *, learning_rate: float, loss_fn=None, training: bool = True,
                 saturation: float = 0.97):
        activations, dense = _hidden_layers(model)
        x, y = _check_batch(x, y, learning_rate, saturation)
        if not isinstance(training, bool):
            raise TypeError(f"training must be True or False, got {training!r}")
        self.model, self.training = model, training
        self.learning_rate, self.saturation = float(learning_rate), float(saturation)
        self.loss_fn = loss_fn or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.layer_names = [layer.name for layer in activations]
        self._x = tf.constant(x.astype(keras.config.floatx()))
        self._y = tf.constant(y)
        self._probe = keras.Model(model.inputs, [layer.output for layer in activations] + [model.output])
        self._kernels = [layer.kernel for layer in dense]

    def __call__(self, model=None) -> np.ndarray:
        if model is not None and model is not self.model:
            raise ValueError("this recorder was built for another model")
        probe = self._probe
        trainable = [v.value for v in probe.trainable_variables]
        non_trainable = [v.value for v in probe.non_trainable_variables]
        index = {id(v): i for i, v in enumerate(probe.trainable_variables)}
        kernels = [trainable[index[id(k)]] for k in self._kernels]
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            outputs, _ = probe.stateless_call(trainable, non_trainable, self._x, training=self.training)
            activations = list(outputs[:-1])
            loss = self.loss_fn(self._y, outputs[-1])
        grads = tape.gradient(loss, activations + kernels)
        rows = {name: [] for name in QUANTITIES}
        for i, a in enumerate(activations):
            a, g = np.asarray(a, np.float64), np.asarray(grads[i], np.float64)
            w, gw = np.asarray(kernels[i], np.float64), np.asarray(grads[len(activations) + i], np.float64)
            rows["act_mean"].append(a.mean())
            rows["act_std"].append(a.std())
            rows["saturated"].append(np.mean(np.abs(a) > self.saturation))
            rows["grad_mean"].append(g.mean())
            rows["grad_std"].append(g.std())
            with np.errstate(divide="ignore"):
                rows["update_ratio"].append(np.log10(self.learning_rate * np.linalg.norm(gw) / np.linalg.norm(w)))
        return np.array([rows[name] for name in QUANTITIES], dtype=np.float64)


def layer_statistics(model, x, y, *, learning_rate: float, loss_fn=None, training: bool = True,
                     saturation: float = 0.97) -> dict[str, np.ndarray]:
    """Per-layer statistics of ``model`` on the batch ``(x, y)``: a dict ``name -> (layers,)``, names :data:`QUANTITIES`."""
    recorder = LayerRecorder(model, x, y, learning_rate=learning_rate, loss_fn=loss_fn, training=training,
                             saturation=saturation)
    return unpack(recorder())


def unpack(values) -> dict[str, np.ndarray]:
    """Split an array ``(..., Q, layers)`` of :class:`LayerRecorder` rows (e.g. stacked over probes
    ``(E, Q, layers)``) into ``name -> (..., layers)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2 or values.shape[-2] != len(QUANTITIES):
        raise ValueError(f"values must have shape (..., {len(QUANTITIES)}, layers), got {values.shape}")
    return {name: values[..., q, :] for q, name in enumerate(QUANTITIES)}
