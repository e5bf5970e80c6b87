"""Networks the chapters train: ``mlp`` (multilayer perceptrons with or without BN, chapter 4's deep regressor)
and ``cnn`` (small convolutional and residual networks on 8x8 images, chapter 10)."""
