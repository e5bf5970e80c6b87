"""Tested helpers for the book *Batch Normalization in TensorFlow*.

Call :func:`setup` first: it imports TensorFlow quietly, seeded and deterministic.
Modules that need TensorFlow are imported explicitly after it; importing a
subpackage imports nothing else, so ``setup`` always comes first::

    from bnhelpers import setup
    rng = setup(seed=0)
    from bnhelpers.layers.batch_norm import MomentsBatchNorm

The subpackages are layers, each building on the ones before it:

- ``core``: the math of BN in NumPy and ``tf.nn`` (reference forward/backward,
  moments, moving averages, the conventions of Keras and PyTorch, input checks);
- ``layers``: Keras layers (``MomentsBatchNorm``, ghost batches, noisy BN, batch
  renorm) and the one walk that finds BN layers inside a model;
- ``models``: the networks the chapters train;
- ``tools``: what works on a built model (population statistics, PreciseBN and
  AdaBN, freezing, checks, folding, probes, what a Keras version does);
- ``training``: batch orders, the gradient step and the loops around it (Keras,
  compiled, regression, TF1 graphs, replicas);
- ``reporting`` and ``speed``: summaries and text the notebooks print; benchmarks.

Plus ``environment`` (``setup``, ``run_python``) and ``data`` (bundled data sets).
``bnhelpers/README.md`` lists every module with the chapters that use it.
"""

from .core.validation import BatchSizeOneWarning
from .environment import setup

__all__ = ["setup", "BatchSizeOneWarning"]
__version__ = "0.2.0"
