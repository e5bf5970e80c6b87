"""Conventions of BN implementations, converters between them, and probes that measure them.

Momentum. Keras (3 and tf-keras) keeps ``momentum`` of the *old* average::

    moving = momentum * moving + (1 - momentum) * batch_statistic      # Keras, default 0.99

PyTorch's ``momentum`` is the weight of the *new* batch (documented)::

    running = (1 - momentum) * running + momentum * batch_statistic    # PyTorch, default 0.1

so ``keras_momentum = 1 - torch_momentum``.

Variance. Every implementation *normalizes* with the biased batch variance
(divide by ``m``, the number of values per channel in the batch: ``N`` for
``(N, C)``, ``N*H*W`` for images). What goes into the moving average differs:
the biased variance in Keras 3 and in tf-keras's unfused path, the unbiased one
(divide by ``m - 1``) in tf-keras's fused path (rank-4 input, the default) and in
PyTorch. :func:`biased_to_unbiased` and :func:`unbiased_to_biased` convert one
batch statistic, and also a moving average of them when every batch had the same
``m``, *except* for the share the initial value still holds (see
:func:`initial_weight`).

Probes. :func:`keras_facts` measures the conventions of whichever Keras this
process uses (Keras 3 by default, tf-keras after ``setup(legacy_keras=True)``);
:func:`legacy_keras_facts` runs it in a fresh Python process with tf-keras,
since a process can hold only one Keras.

Porting. Every implementation uses the stored moving variance *as it is* at
inference. :func:`porting_model` builds a small Conv2D -> BN -> Dense model
from either Keras; :func:`legacy_fused_model` trains it with tf-keras (whose BN
takes the fused path on its rank-4 input and so stores the unbiased variance)
in a fresh process and returns its weights, some inputs and its inference
outputs, so that a Keras 3 copy can be compared with the source.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np

__all__ = [
    "KERAS_DEFAULTS", "TORCH_DEFAULTS", "keras_to_torch_momentum", "torch_to_keras_momentum",
    "biased_to_unbiased", "unbiased_to_biased", "ema_update", "initial_weight", "steps_to_forget",
    "keras_to_torch_config", "torch_to_keras_config", "channel_axis", "reduction_axes",
    "keras_facts", "legacy_keras_facts", "porting_model", "legacy_fused_model",
]

KERAS_DEFAULTS = {"momentum": 0.99, "epsilon": 1e-3, "axis": -1, "moving_mean": 0.0, "moving_variance": 1.0}
# Documented defaults of torch.nn.BatchNorm1d/2d/3d (PyTorch is not a dependency of this book).
TORCH_DEFAULTS = {"momentum": 0.1, "eps": 1e-5, "channel_dim": 1, "running_mean": 0.0, "running_var": 1.0}

CONVENTIONS = ("keras", "torch")


def _check_momentum(momentum, name="momentum"):
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {momentum!r}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {momentum}")
    return float(momentum)


def keras_to_torch_momentum(momentum: float) -> float:
    """Keras ``momentum`` (weight of the old average) -> PyTorch ``momentum`` (weight of the new batch).

    ``1 - momentum``, rounded to 12 decimals so that 0.99 gives 0.01, not 0.010000000000000009.
    """
    return round(1.0 - _check_momentum(momentum), 12)


def torch_to_keras_momentum(momentum: float) -> float:
    """PyTorch ``momentum`` -> Keras ``momentum``; the map is its own inverse (up to the rounding)."""
    return round(1.0 - _check_momentum(momentum), 12)


def _check_count(count):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"count must be an int (values per channel in a batch), got {count!r}")
    if count < 2:
        raise ValueError(f"count must be >= 2: the unbiased variance of {count} value(s) is undefined")
    return int(count)


def biased_to_unbiased(variance, count: int):
    """Multiply by ``m / (m - 1)``; ``count`` = m, the values per channel in one batch."""
    m = _check_count(count)
    return np.asarray(variance, dtype=np.float64) * (m / (m - 1))


def unbiased_to_biased(variance, count: int):
    """Multiply by ``(m - 1) / m``; the inverse of :func:`biased_to_unbiased`."""
    m = _check_count(count)
    return np.asarray(variance, dtype=np.float64) * ((m - 1) / m)


def ema_update(average, batch_value, momentum: float, convention: str = "keras"):
    """One moving-average update in either convention (NumPy, float64)."""
    momentum = _check_momentum(momentum)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    keep = momentum if convention == "keras" else 1.0 - momentum
    return keep * np.asarray(average, dtype=np.float64) + (1.0 - keep) * np.asarray(batch_value, dtype=np.float64)


def initial_weight(momentum: float, steps: int) -> float:
    """Share of the initial value in a Keras-convention moving average after ``steps`` updates: ``momentum**steps``."""
    momentum = _check_momentum(momentum)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    return momentum ** int(steps)


def steps_to_forget(momentum: float, remaining: float = 0.01) -> int:
    """Fewest updates after which the initial value's share is at most ``remaining`` (Keras convention).

    About ``ln(1/remaining) / (1 - momentum)`` for momentum near 1: 459 steps for 0.99 and 1%.
    """
    momentum = _check_momentum(momentum)
    if not 0.0 < remaining < 1.0:
        raise ValueError(f"remaining must be in (0, 1), got {remaining}")
    if momentum == 0.0:
        return 1
    if momentum == 1.0:
        raise ValueError("with momentum 1 the average never changes")
    steps = math.ceil(math.log(remaining) / math.log(momentum))
    # guard against round-off in the logarithms
    while momentum ** (steps - 1) <= remaining:
        steps -= 1
    while momentum**steps > remaining:
        steps += 1
    return steps


def keras_to_torch_config(config: dict) -> dict:
    """Translate ``momentum``/``epsilon`` of a Keras BN config into PyTorch's ``momentum``/``eps``.

    The channel axis needs no argument in PyTorch: its BN layers always take
    channels at dimension 1 (``(N, C)`` or ``(N, C, H, W)``), so channels-last
    images must be transposed to channels-first.
    """
    unknown = set(config) - {"momentum", "epsilon"}
    if unknown:
        raise ValueError(f"unsupported keys {sorted(unknown)}; expected momentum, epsilon")
    merged = {"momentum": KERAS_DEFAULTS["momentum"], "epsilon": KERAS_DEFAULTS["epsilon"], **config}
    if merged["epsilon"] <= 0:
        raise ValueError(f"epsilon must be > 0, got {merged['epsilon']}")
    return {"momentum": keras_to_torch_momentum(merged["momentum"]), "eps": float(merged["epsilon"])}


def torch_to_keras_config(config: dict, data_format: str = "channels_last") -> dict:
    """Translate PyTorch's ``momentum``/``eps`` into Keras arguments for data in ``data_format``."""
    unknown = set(config) - {"momentum", "eps"}
    if unknown:
        raise ValueError(f"unsupported keys {sorted(unknown)}; expected momentum, eps")
    merged = {"momentum": TORCH_DEFAULTS["momentum"], "eps": TORCH_DEFAULTS["eps"], **config}
    if merged["momentum"] is None:
        raise ValueError("momentum=None (PyTorch's cumulative average) has no Keras equivalent; "
                         "see bnhelpers.statistics.precise_bn")
    if merged["eps"] <= 0:
        raise ValueError(f"eps must be > 0, got {merged['eps']}")
    return {"momentum": torch_to_keras_momentum(merged["momentum"]), "epsilon": float(merged["eps"]),
            "axis": channel_axis(data_format)}


def channel_axis(data_format: str) -> int:
    """The Keras ``axis`` argument for ``"channels_last"`` (-1, NHWC) or ``"channels_first"`` (1, NCHW)."""
    axes = {"channels_last": -1, "channels_first": 1}
    if data_format not in axes:
        raise ValueError(f"data_format must be one of {sorted(axes)}, got {data_format!r}")
    return axes[data_format]


def reduction_axes(rank: int, data_format: str = "channels_last") -> tuple[int, ...]:
    """The axes BN averages over: all but the channel axis, e.g. ``(0, 1, 2)`` for NHWC, ``(0, 2, 3)`` for NCHW."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 2:
        raise ValueError(f"rank must be an int >= 2, got {rank!r}")
    keep = channel_axis(data_format) % rank
    return tuple(i for i in range(rank) if i != keep)


def _variance_kind(ratio) -> str:
    ratio = np.asarray(ratio, dtype=np.float64)
    if np.allclose(ratio, 1.0, rtol=1e-4):
        return "biased"
    return "unbiased" if np.allclose(ratio, 8.0 / 7.0, rtol=1e-4) else f"other ({ratio.mean():.4f})"


def keras_facts() -> dict:
    """Measure the BN conventions of the Keras this process uses (call ``bnhelpers.setup`` first).

    Returns a JSON-serializable dict: ``keras`` ("keras 3" or "tf-keras") and
    version, defaults (``momentum``, ``epsilon``, ``axis``, initial moving
    statistics), ``momentum_weighs`` ("old average"/"new batch"), which variance
    goes into the moving average for rank-2 input, rank-4 input by default and
    rank-4 with ``fused=False`` (None where the argument does not exist), each
    with its measured ratio to the biased batch variance (key + ``"_ratio"``,
    averaged over the 3 channels; ``m = 8``, so 1 means biased and 8/7 unbiased), whether
    ``trainable=False`` forces inference mode, and whether
    ``backend.learning_phase`` and ``virtual_batch_size`` exist.
    """
    import inspect

    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tf_keras as keras
        name = "tf-keras"
    else:
        import keras
        name = "keras 3"
    BN = keras.layers.BatchNormalization
    batch4 = np.random.default_rng(0).normal(3.0, 2.0, (2, 2, 2, 3)).astype("float32")  # m = 8 per channel
    batch2 = batch4.reshape(8, 3)
    biased = batch2.var(axis=0)

    ratios = {}

    def stored_variance(key, batch, **kwargs):
        layer = BN(momentum=0.0, **kwargs)
        layer(batch, training=True)
        ratio = layer.moving_variance.numpy() / biased
        ratios[key + "_ratio"] = float(np.mean(ratio))
        return _variance_kind(ratio)

    fresh = BN()
    fresh.build((None, 3))
    probe = BN(momentum=0.9)
    probe(batch2, training=True)
    weight_new = float(np.mean(probe.moving_mean.numpy() / batch2.mean(axis=0)))
    frozen = BN()
    frozen.build((None, 3))
    frozen.trainable = False
    out = np.asarray(frozen(batch2, training=True))
    frozen_is_inference = bool(np.allclose(out, batch2 / np.sqrt(1.0 + frozen.epsilon), atol=1e-5)
                               and np.all(frozen.moving_mean.numpy() == 0.0))
    has_fused = "fused" in inspect.signature(BN.__init__).parameters or name == "tf-keras"
    try:
        has_virtual = BN(virtual_batch_size=2).virtual_batch_size == 2
    except (TypeError, ValueError):
        has_virtual = False
    return {
        "keras": name,
        "version": keras.__version__,
        "momentum": float(fresh.momentum),
        "epsilon": float(fresh.epsilon),
        "axis": BN().axis,  # as constructed: tf-keras turns it into a list when the layer is built
        "initial_moving_mean": float(fresh.moving_mean.numpy()[0]),
        "initial_moving_variance": float(fresh.moving_variance.numpy()[0]),
        "momentum_weighs": "new batch" if abs(weight_new - 0.9) < 1e-5 else
                           "old average" if abs(weight_new - 0.1) < 1e-5 else f"other ({weight_new:.4f})",
        "moving_variance_rank2": stored_variance("moving_variance_rank2", batch2),
        "moving_variance_rank4": stored_variance("moving_variance_rank4", batch4),
        "moving_variance_rank4_unfused": (stored_variance("moving_variance_rank4_unfused", batch4, fused=False)
                                          if has_fused else None),
        "trainable_false_is_inference": frozen_is_inference,
        "has_learning_phase": hasattr(keras.backend, "learning_phase"),
        "has_virtual_batch_size": bool(has_virtual),
        **ratios,
    }


def legacy_keras_facts(timeout: float = 300.0) -> dict:
    """:func:`keras_facts` measured with tf-keras, in a fresh Python process."""
    code = ("import json\nfrom bnhelpers import setup\nsetup(0, legacy_keras=True)\n"
            "from bnhelpers.conventions import keras_facts\nprint('FACTS' + json.dumps(keras_facts()))")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FACTS")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the tf-keras probe failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1][len("FACTS"):])


PORTING_INPUT_SHAPE = (2, 2, 3)


def porting_model(keras_module, momentum: float = 0.9):
    """``Input(2, 2, 3) -> Conv2D(4, 1, no bias) -> BatchNormalization -> ReLU -> Flatten -> Dense(3)``.

    ``keras_module`` is ``keras`` (Keras 3) or ``tf_keras``; both build the same
    weights in the same order (kernel, gamma, beta, moving mean, moving
    variance, dense kernel, dense bias), so ``set_weights`` copies one into the other.
    """
    layers = keras_module.layers
    return keras_module.Sequential([
        keras_module.Input(PORTING_INPUT_SHAPE),
        layers.Conv2D(4, 1, use_bias=False, name="conv"),
        layers.BatchNormalization(momentum=momentum, name="bn"),
        layers.ReLU(),
        layers.Flatten(),
        layers.Dense(3, name="dense"),
    ])


_PORTING_CODE = """
import sys
import numpy as np
from bnhelpers import setup
setup({seed}, legacy_keras=True)
import tf_keras
from bnhelpers.conventions import porting_model
rng = np.random.default_rng({seed})
model = porting_model(tf_keras, momentum={momentum})
x = rng.normal(2.0, 1.5, ({n_train},) + model.input_shape[1:]).astype("float32")
y = rng.integers(0, 3, {n_train})
model.compile(optimizer=tf_keras.optimizers.SGD(0.05),
              loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size={batch_size}, epochs={epochs}, shuffle=False, verbose=0)
x_test = rng.normal(2.0, 1.5, (16,) + model.input_shape[1:]).astype("float32")
outputs = model(x_test, training=False).numpy()
bn = model.get_layer("bn")
np.savez(sys.argv[1], outputs=outputs, x_test=x_test, fused=bool(bn.fused), version=tf_keras.__version__,
         **{{f"w{{i}}": w for i, w in enumerate(model.get_weights())}})
"""


def legacy_fused_model(seed: int = 0, *, batch_size: int = 2, epochs: int = 5, n_train: int = 64,
                       momentum: float = 0.9, timeout: float = 300.0) -> dict:
    """Train :func:`porting_model` with tf-keras in a fresh process; return what a port needs.

    ``fit`` runs ``epochs`` epochs of SGD on ``n_train`` random images in batches
    of ``batch_size``, so the BN layer sees ``m = batch_size * 2 * 2`` values per
    channel in each batch. Returns ``weights`` (the list ``get_weights`` gives),
    ``x_test`` (16 images), ``outputs`` (the tf-keras model's inference outputs on
    them), ``fused`` (whether tf-keras's BN took the fused path),
    ``values_per_channel`` (``m``) and ``version`` (tf-keras's).
    """
    import tempfile

    for name, value in (("batch_size", batch_size), ("epochs", epochs), ("n_train", n_train)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if n_train < batch_size:
        raise ValueError(f"n_train ({n_train}) must be at least batch_size ({batch_size})")
    momentum = _check_momentum(momentum)
    code = _PORTING_CODE.format(seed=int(seed), momentum=momentum, n_train=int(n_train),
                                batch_size=int(batch_size), epochs=int(epochs))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ported.npz")
        done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if done.returncode != 0 or not os.path.exists(path):
            raise RuntimeError(f"the tf-keras training failed (exit {done.returncode}): {done.stderr[-2000:]}")
        with np.load(path) as saved:
            n_weights = sum(1 for key in saved.files if key.startswith("w"))
            result = {"weights": [saved[f"w{i}"] for i in range(n_weights)],
                      "x_test": saved["x_test"], "outputs": saved["outputs"],
                      "fused": bool(saved["fused"]), "version": str(saved["version"])}
    result["values_per_channel"] = int(batch_size) * PORTING_INPUT_SHAPE[0] * PORTING_INPUT_SHAPE[1]
    return result
