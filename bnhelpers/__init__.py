"""Tested helpers for the book *Batch Normalization in TensorFlow*.

Call :func:`setup` first: it imports TensorFlow quietly. The modules that need
TensorFlow (``moments``, ``layers``) are imported explicitly after it::

    from bnhelpers import setup
    rng = setup(seed=0)
    from bnhelpers.layers import MomentsBatchNorm

Modules: ``reference`` (NumPy float64 forward/backward/inference),
``moments`` (``tf.nn.moments`` functions), ``layers`` (``MomentsBatchNorm``),
``data`` (bundled digits and synthetic sets), ``validation`` (input checks).
"""

from .environment import setup
from .validation import BatchSizeOneWarning

__all__ = ["setup", "BatchSizeOneWarning"]
__version__ = "0.1.0"
