"""A trained BN model on its way to serving: TensorFlow Lite conversion, operators, outputs.

``model.export(path)`` writes a SavedModel whose ``serve`` signature calls the model in
inference mode, so BN uses its moving statistics; ``tf.lite.TFLiteConverter.from_saved_model``
turns it into a TensorFlow Lite flatbuffer, folding inference-mode BN into the convolution
before it (as :mod:`bnhelpers.tools.folding` does by hand). What is here:

- :func:`convert` converts a SavedModel, in float32 or, given a representative dataset
  (:func:`representative_dataset`), with full-integer (int8) post-training quantization;
- :func:`interpreter` opens a flatbuffer with TensorFlow's reference kernels (no XNNPACK
  delegate, so the operator list is the model's own); it uses ``ai_edge_litert`` where it is
  installed and ``tf.lite.Interpreter`` otherwise (deprecated in TensorFlow 2.21, same API;
  its deprecation warning and the runtime's notices are kept out of the output);
- :func:`operators` lists a flatbuffer's operators in execution order, :func:`constants` its
  constant tensors (kernels and biases) by name, :func:`predict` runs it on a batch
  (quantizing the input and dequantizing the output of an int8 model).

Chapters: 8.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import numpy as np

from ..environment import silenced_stderr

__all__ = ["convert", "representative_dataset", "interpreter", "operators", "constants", "predict"]


def representative_dataset(x, n: int = 100) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's ``representative_dataset``: the first ``n`` examples of ``x``, one per call, float32."""
    x = np.asarray(x, dtype=np.float32)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(x):
        raise ValueError(f"n must be an int in [1, {len(x)}], got {n!r}")

    def examples():
        for i in range(n):
            yield [x[i:i + 1]]

    return examples


def convert(saved_model_dir, representative: Callable | None = None) -> bytes:
    """A TensorFlow Lite flatbuffer of the SavedModel at ``saved_model_dir`` (its serving signature).

    ``representative=None``: float32. Otherwise full-integer post-training quantization:
    int8 weights and activations, int8 input and output, calibrated on ``representative()``.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with silenced_stderr():  # the MLIR converter logs to fd 2
        return converter.convert()


def interpreter(content: bytes):
    """An allocated interpreter for ``content`` with the built-in reference kernels (no default delegates)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    with warnings.catch_warnings(), silenced_stderr():
        warnings.simplefilter("ignore", UserWarning)  # tf.lite.Interpreter's deprecation notice
        runner = Interpreter(model_content=content,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        runner.allocate_tensors()
    return runner


def operators(content: bytes) -> list[str]:
    """The operators of a flatbuffer, in execution order (e.g. ``["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]``)."""
    return [op["op_name"] for op in interpreter(content)._get_ops_details()]


def constants(content: bytes) -> dict[str, np.ndarray]:
    """The constant tensors of a flatbuffer (kernels, biases, shapes) by tensor name, as stored.

    TensorFlow Lite stores a ``Conv2D`` kernel as ``(out, kh, kw, in)``, Keras as ``(kh, kw, in, out)``;
    a quantized tensor is returned as its integers (see its ``quantization`` in ``interpreter(...)``).
    """
    runner = interpreter(content)
    produced = {i for op in runner._get_ops_details() for i in op["outputs"]}
    inputs = {d["index"] for d in runner.get_input_details()}
    found = {}
    for detail in runner.get_tensor_details():
        index = detail["index"]
        if index in produced or index in inputs or not detail["name"]:
            continue
        try:
            found[detail["name"]] = np.array(runner.get_tensor(index))
        except ValueError:  # a tensor without data
            continue
    return found


def predict(content: bytes, x, batch_size: int = 256) -> np.ndarray:
    """Run the flatbuffer on ``x`` (float) in batches; outputs as float32.

    An int8 model's input is quantized with its scale and zero point (rounded, clipped to
    ``[-128, 127]``) and its output dequantized, so float and int8 models compare directly.
    """
    x = np.asarray(x, dtype=np.float32)
    runner = interpreter(content)
    entry, exit_ = runner.get_input_details()[0], runner.get_output_details()[0]
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        runner.resize_tensor_input(entry["index"], chunk.shape)
        runner.allocate_tensors()
        scale, zero = entry["quantization"]
        if entry["dtype"] == np.int8:
            chunk = np.clip(np.round(chunk / scale + zero), -128, 127).astype(np.int8)
        runner.set_tensor(entry["index"], chunk)
        runner.invoke()
        out = runner.get_tensor(exit_["index"]).astype(np.float32)
        scale, zero = exit_["quantization"]
        if exit_["dtype"] == np.int8:
            out = (out - zero) * scale
        outputs.append(out)
    return np.concatenate(outputs)
