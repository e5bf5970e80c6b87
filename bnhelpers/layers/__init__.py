"""Keras layers: ``batch_norm`` (``MomentsBatchNorm``), ``fused`` (``FusedBatchNormalization``, on
TensorFlow's ``FusedBatchNormV3`` kernel), ``ghost`` (ghost batches), ``variants`` (noisy BN, batch-renorm ramps),
and ``walk`` (finding BN layers in a model)."""
