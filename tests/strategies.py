"""Hypothesis strategies for batches, reduction axes and parameters."""

import numpy as np
from hypothesis import strategies as st


@st.composite
def batches(draw, min_rank=2, max_rank=4, min_batch=2):
    """Return ``(x, axes, gamma, beta)``: float64 x of random shape, offset and scale,
    reduction axes that include the batch axis, and matching parameters."""
    rank = draw(st.integers(min_rank, max_rank))
    shape = [draw(st.integers(min_batch, 6))] + [draw(st.integers(1, 4)) for _ in range(rank - 1)]
    others = draw(st.lists(st.sampled_from(range(1, rank)), unique=True, max_size=rank - 1)) if rank > 1 else []
    axes = tuple(sorted([0] + others))
    seed = draw(st.integers(0, 2**31 - 1))
    offset = draw(st.floats(-100, 100))
    scale = draw(st.sampled_from([1e-2, 1.0, 10.0, 300.0]))
    rng = np.random.default_rng(seed)
    x = offset + scale * rng.standard_normal(shape)
    pshape = tuple(s for i, s in enumerate(shape) if i not in axes)
    gamma = rng.uniform(0.5, 2.0, pshape)
    beta = rng.normal(0, 1, pshape)
    return x, axes, gamma, beta
