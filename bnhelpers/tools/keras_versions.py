"""What a given Keras does with BN, measured, and a model to port between Keras versions.

Probes. :func:`keras_facts` measures the BN conventions of whichever Keras this
process uses (Keras 3 by default, tf-keras after ``setup(legacy_keras=True)``):
defaults, which side ``momentum`` weighs, which variance goes into the moving
average; :func:`legacy_keras_facts` runs it in a fresh Python process with tf-keras,
since a process can hold only one Keras. The conventions themselves, and converters
between them, are in :mod:`bnhelpers.core.conventions`.

Porting. Every implementation uses the stored moving variance *as it is* at
inference. :func:`porting_model` builds a small Conv2D -> BN -> Dense model
from either Keras; :func:`legacy_fused_model` trains it with tf-keras (whose BN
takes the fused path on its rank-4 input and so stores the unbiased variance)
in a fresh process and returns its weights, some inputs and its inference
outputs, so that a Keras 3 copy can be compared with the source.

Chapters: 9.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ..core.validation import check_momentum, check_positive_int
from ..environment import run_python

__all__ = ["keras_facts", "legacy_keras_facts", "PORTING_INPUT_SHAPE", "porting_model", "legacy_fused_model"]


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
            "from bnhelpers.tools.keras_versions import keras_facts\nprint('FACTS' + json.dumps(keras_facts()))")
    done = run_python(code, timeout=timeout, what="the tf-keras probe")
    lines = [line for line in done.stdout.splitlines() if line.startswith("FACTS")]
    if not lines:
        raise RuntimeError(f"the tf-keras probe printed no facts: {done.stdout[-2000:]}")
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
from bnhelpers.tools.keras_versions import porting_model
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
    check_positive_int(batch_size=batch_size, epochs=epochs, n_train=n_train)
    if n_train < batch_size:
        raise ValueError(f"n_train ({n_train}) must be at least batch_size ({batch_size})")
    momentum = check_momentum(momentum)
    code = _PORTING_CODE.format(seed=int(seed), momentum=momentum, n_train=int(n_train),
                                batch_size=int(batch_size), epochs=int(epochs))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ported.npz")
        run_python(code, path, timeout=timeout, what="the tf-keras training")
        if not os.path.exists(path):
            raise RuntimeError(f"the tf-keras training wrote no {path}")
        with np.load(path) as saved:
            n_weights = sum(1 for key in saved.files if key.startswith("w"))
            result = {"weights": [saved[f"w{i}"] for i in range(n_weights)],
                      "x_test": saved["x_test"], "outputs": saved["outputs"],
                      "fused": bool(saved["fused"]), "version": str(saved["version"])}
    result["values_per_channel"] = int(batch_size) * PORTING_INPUT_SHAPE[0] * PORTING_INPUT_SHAPE[1]
    return result
