"""Tools that work on a built model: ``population`` (moving statistics, PreciseBN, AdaBN),
``freezing``, ``checks``, ``folding``, ``probes``, ``landscape`` (loss smoothness) and
``keras_versions`` (what a Keras version does with BN, and porting between versions),
``weight_norms`` (kernel norms and the effective learning rate), ``variance_shift`` (dropout before BN)
``diagnostics`` (per-layer statistics during training) and ``export`` (TensorFlow Lite conversion)."""
