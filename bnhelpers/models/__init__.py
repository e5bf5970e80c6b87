"""Networks the chapters train: ``mlp`` (multilayer perceptrons with or without BN, chapter 4's deep regressor)."""
