"""Shared test set-up: TensorFlow is imported quietly and seeded once, through bnhelpers."""

import os

from hypothesis import settings

from bnhelpers import setup

setup(0)

settings.register_profile("book", deadline=None, max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 40)))
settings.load_profile("book")
