"""Keras layers: ``batch_norm`` (``MomentsBatchNorm``), ``ghost`` (ghost batches),
``variants`` (noisy BN, batch-renorm ramps), and ``walk`` (finding BN layers in a model)."""
