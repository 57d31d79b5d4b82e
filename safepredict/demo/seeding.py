"""Make a training run of the demo/fixture models repeatable.

For a given thread count the trainers below give the same weights run after run: Python's,
numpy's and torch's generators are seeded and torch uses deterministic algorithms where it has
them. Across thread counts (or CPUs with other vector units) float reductions are summed in
another order, so the weights, and the scores they give, differ a little; tests therefore derive
their thresholds from the fixture they get, never from numbers of one training run.
"""

from __future__ import annotations

import os
import random


def train_threads(framework: str | None = None) -> int:
    """Intra-op threads the trainers use: ``SAFEPREDICT_TRAIN_THREADS_<FRAMEWORK>`` (``..._DETECTRON2``,
    ``..._MMDET``) for one framework's fixture, else ``SAFEPREDICT_TRAIN_THREADS``, default 1.

    The count changes the weights, so it is part of a fixture's cache key (demo/fixtures.py).
    """
    if framework is not None:
        own = os.environ.get(f"SAFEPREDICT_TRAIN_THREADS_{framework.upper()}")
        if own:
            return int(own)
    return int(os.environ.get("SAFEPREDICT_TRAIN_THREADS", "1"))


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, pin the thread count and ask torch for deterministic kernels."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(train_threads())
    # warn_only: a few CPU kernels have no deterministic variant; they warn instead of failing.
    torch.use_deterministic_algorithms(True, warn_only=True)
