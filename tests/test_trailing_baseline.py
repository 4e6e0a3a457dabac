"""The trailing baseline that eda/cardiac models (1.1.0+) take beside each window's features."""

from __future__ import annotations

import numpy as np
import pytest

from edge.features.baseline import TrailingBaseline, input_names, with_trailing_deviation


def naive_inputs(ends, rows, usable, span_s):
    """The definition, written out: deviation from the mean of usable rows ending in (t - span, t]."""
    out = []
    for i, t in enumerate(ends):
        ref_rows = [rows[j] for j in range(max(0, i - 200), i + 1) if usable[j] and t - span_s < ends[j] <= t]
        ref = np.mean(ref_rows, axis=0) if ref_rows else rows[i]
        out.append(np.concatenate([rows[i], rows[i] - ref]))
    return np.asarray(out, np.float32)


def test_deviation_is_from_the_usable_windows_of_the_trailing_span():
    rng = np.random.default_rng(3)
    n = 1500  # enough comings and goings that the running sum is recomputed from its rows
    ends = 1.7e9 + np.cumsum(rng.choice([5.0, 5.0, 5.0, 40.0], n))  # 5 s hops and some drop-outs
    rows = rng.normal(size=(n, 4)) + np.linspace(0, 3, n)[:, None]  # a slow drift
    usable = rng.random(n) > 0.2
    got = with_trailing_deviation(ends, rows, usable, span_s=300.0)
    np.testing.assert_allclose(got, naive_inputs(ends, rows, usable, 300.0), rtol=1e-5, atol=1e-5)
    assert got.shape == (n, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, :4], rows, rtol=1e-6)  # the absolute half is the features themselves


def test_first_window_and_windows_after_a_long_drop_out_have_zero_deviation():
    base = TrailingBaseline(span_s=600.0)
    first = base.model_input(1000.0, np.array([2.0, 5.0]))
    np.testing.assert_array_equal(first, [2.0, 5.0, 0.0, 0.0])
    base.model_input(1005.0, np.array([4.0, 5.0]))
    np.testing.assert_allclose(base.model_input(1010.0, np.array([6.0, 8.0])), [6.0, 8.0, 2.0, 2.0])
    # sensor off for longer than the span: the old windows have left the baseline
    np.testing.assert_allclose(base.model_input(1700.0, np.array([9.0, 1.0])), [9.0, 1.0, 0.0, 0.0])
    assert len(base) == 1


def test_an_unusable_window_is_scored_against_the_baseline_but_does_not_join_it():
    base = TrailingBaseline(span_s=600.0)
    base.model_input(0.0, np.array([1.0]))
    np.testing.assert_allclose(base.model_input(5.0, np.array([11.0]), usable=False), [11.0, 10.0])
    np.testing.assert_allclose(base.model_input(10.0, np.array([3.0])), [3.0, 1.0])  # mean of 1 and 3
    np.testing.assert_allclose(base.model_input(15.0, np.array([np.nan])), [np.nan, np.nan])  # NaN never joins
    np.testing.assert_allclose(base.model_input(20.0, np.array([2.0])), [2.0, 0.0])


def test_clock_going_back_starts_a_new_baseline():
    base = TrailingBaseline(span_s=600.0)
    for t in range(0, 300, 5):
        base.model_input(1e9 + t, np.array([5.0]))
    np.testing.assert_allclose(base.model_input(5e8, np.array([1.0])), [1.0, 0.0])  # a replay from an older file
    assert len(base) == 1


def test_names_and_span_checks():
    assert input_names(("a", "b")) == ["a", "b", "a_vs_trailing", "b_vs_trailing"]
    with pytest.raises(ValueError, match="span"):
        TrailingBaseline(span_s=0)
    assert with_trailing_deviation(np.zeros(0), np.zeros((0, 3)), np.zeros(0, bool)).shape == (0, 6)
