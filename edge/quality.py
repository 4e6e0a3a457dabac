"""Signal-quality index of a window: the feature module's own quality x data coverage.

The feature modules (``edge.features.*_quality``) judge the signal itself (flat lines,
clipping, implausible beats). Here that is combined with how much of the window actually
arrived: samples lost on the link leave gaps in time (sources report gaps, never fill them),
so coverage falls and so does the quality; a half-empty window cannot out-vote a complete one.
Staleness is applied at fusion time (``edge.fusion.staleness_factor``).
"""

from __future__ import annotations


def coverage(n_samples: int, rate_hz: float, length_s: float) -> float:
    """Fraction of the expected samples present in a regular window, in [0, 1]."""
    expected = rate_hz * length_s
    if expected <= 0:
        return 0.0
    return max(0.0, min(1.0, n_samples / expected))


def combine_quality(signal_quality: float, coverage_fraction: float) -> float:
    """Window quality = signal quality x coverage, clipped to [0, 1].

    Coverage below 50 % counts as no usable window (quality 0): features such as HRV or
    the EDA phasic rate are meaningless on a fraction of a window.
    """
    if coverage_fraction < 0.5:
        return 0.0
    q = float(signal_quality) * float(coverage_fraction)
    if q != q:  # NaN from a degenerate window
        return 0.0
    return max(0.0, min(1.0, q))
