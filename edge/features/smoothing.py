"""Small numpy filters shared by the feature modules (no scipy in the daemon)."""

from __future__ import annotations

import numpy as np


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``width`` samples (edges averaged over what exists), O(n) by cumsum."""
    width = max(1, int(width))
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    n = len(x)
    half = width // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) - half + width, 0, n)
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)
