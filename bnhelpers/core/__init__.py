"""The math of batch normalization: NumPy and ``tf.nn`` functions, no Keras layers.

``validation`` (input checks), ``reference`` (NumPy float64 forward, backward,
inference, Algorithm 2), ``moments`` (``tf.nn.moments`` + ``tf.nn.batch_normalization``),
``moving_average`` (EMA), ``conventions`` (Keras vs PyTorch), ``precision`` (variances in a
chosen dtype, errors against float64) and ``gradcheck`` (finite-difference gradients). Only ``moments``
imports TensorFlow.
"""
