"""Training: ``batches`` (seeded orders), ``steps`` (the gradient step, optimizers), and the loops:
``loop`` (Keras ``train_on_batch``), ``compiled`` (many steps per ``tf.function``), ``regression``
(chapter 4), ``legacy`` (TF1 graphs), ``distributed`` (``MirroredStrategy`` replicas),
``multiworker`` (worker processes with ``MultiWorkerMirroredStrategy``),
``accumulation`` (gradient accumulation with BN's moving statistics updated once per step)."""
