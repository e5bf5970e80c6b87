"""Repository-wide pytest set-up: nbval's declared tolerances (``tests/nbval_tolerance.py``) for ``book/``."""

pytest_plugins = ["tests.nbval_tolerance"]
