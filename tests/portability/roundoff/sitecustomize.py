"""The portability check's ``round-off`` profile (see ``tests/portability/run.py``).

Python imports this module at start-up when its folder is on ``PYTHONPATH``; the
check puts it there for every process of that profile, Jupyter kernels included.
Once TensorFlow is imported, every ``tf.matmul`` and ``tf.nn.convolution`` /
``tf.nn.conv2d`` result (also through ``tf.compat.v1`` and ``tf.compat.v2``, which
tf-keras uses) is multiplied by ``1 + eps`` (``eps`` the machine epsilon of
its dtype): a change of about one unit in the last place, the size of the
difference between two CPUs that sum a dot product in different orders. An
output that changes under this profile depends on round-off, so it would differ
on some other machine. Only the forward ops named above are touched; the change
spreads from there through training like a real round-off difference.
"""

import importlib.abc
import importlib.machinery
import sys

_PATCHED = ("matmul", "linalg.matmul", "nn.convolution", "nn.conv2d")


def _perturbed(tf, original):
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if getattr(result, "dtype", None) is not None and result.dtype.is_floating:
            eps = {tf.float16: 2.0**-10, tf.bfloat16: 2.0**-7, tf.float64: 2.0**-52}.get(result.dtype, 2.0**-23)
            result = result * tf.constant(1.0 + eps, dtype=result.dtype)
        return result

    wrapper.__wrapped__ = original
    wrapper.roundoff_profile = True
    return wrapper


def _patch(tf):
    # tf-keras and tf.compat.v1 code reach the ops through tf.compat.v1 / tf.compat.v2, other module objects
    for api in (tf, tf.compat.v1, tf.compat.v2):
        for dotted in _PATCHED:
            *parents, name = dotted.split(".")
            owner = api
            for part in parents:
                owner = getattr(owner, part)
            original = getattr(owner, name)
            if not getattr(original, "roundoff_profile", False):
                setattr(owner, name, _perturbed(tf, original))


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of ``tensorflow`` to patch it once loaded."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
