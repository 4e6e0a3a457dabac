"""The trailing baseline that eda/cardiac models (1.1.0+) take beside each window's features."""

from __future__ import annotations

import json

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


def test_a_saved_state_resumes_the_same_baseline():
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(300, 3))
    live = TrailingBaseline(600.0)
    for k in range(200):
        live.model_input(1e9 + 5.0 * k, rows[k], usable=k % 7 != 0)
    resumed = TrailingBaseline.from_state(json.loads(json.dumps(live.state())), n_features=3)
    assert len(resumed) == len(live) == sum(1 for k in range(80, 200) if k % 7)  # the last 600 s, less the unusable
    for k in range(200, 300):
        np.testing.assert_allclose(resumed.model_input(1e9 + 5.0 * k, rows[k]), live.model_input(1e9 + 5.0 * k, rows[k]),
                                   rtol=1e-6, atol=1e-6)  # saved to 7 significant digits


@pytest.mark.parametrize("state, match", [
    ({"span_s": 600.0, "ends": [1.0, 2.0], "rows": [[1.0, 2.0, 3.0]]}, "3 features"),
    ({"span_s": 600.0, "ends": [2.0, 1.0], "rows": [[1.0] * 3, [2.0] * 3]}, "unordered"),
    ({"span_s": 600.0, "ends": [1.0], "rows": [[1.0, float("nan"), 3.0]]}, "non-finite"),
    ({"ends": [], "rows": []}, "KeyError"),
    ({"span_s": -5, "ends": [], "rows": []}, "span"),
])
def test_a_damaged_state_is_refused_in_one_line(state, match):
    with pytest.raises(ValueError, match=match) as info:
        TrailingBaseline.from_state(state, n_features=3)
    assert "\n" not in str(info.value)


def test_store_resumes_baselines_only_for_the_model_that_made_them(tmp_path, caplog):
    from edge.baseline_store import load_baselines, save_baselines, store_path
    from edge.estimators import EdaEstimator, StreamWindow
    from edge.models import TFLiteModel
    from edge.windows import WindowSpec

    model = TFLiteModel("eda")
    if not model.manifest["preprocessing"].get("trailing_baseline"):
        pytest.fail("the shipped eda model has no trailing baseline")
    rng = np.random.default_rng(2)
    t = 1e9 + np.arange(0, 900, 0.25)
    eda = 2.0 + 0.2 * np.sin(t / 60.0) + rng.normal(0, 0.003, len(t))

    def window(end):
        inside = (t >= end - 300) & (t < end)
        return {"eda": StreamWindow("eda", end - 300, end, 4.0, t[inside], eda[inside, None])}

    before = EdaEstimator(model, WindowSpec(300.0, 5.0))
    for end in np.arange(1e9 + 300, 1e9 + 600, 5.0):
        before.estimate(end, window(end))
    path = store_path(tmp_path, "wearable-9")
    assert save_baselines(path, {"eda": before})
    after = EdaEstimator(model, WindowSpec(300.0, 5.0))
    assert load_baselines(path, {"eda": after}) == 60
    for end in np.arange(1e9 + 600, 1e9 + 900, 5.0):
        assert after.estimate(end, window(end)).stress == pytest.approx(before.estimate(end, window(end)).stress, abs=1e-6)

    saved = json.loads(path.read_text())
    saved["modalities"]["eda"]["model_sha256"] = "0" * 64  # written by another model
    path.write_text(json.dumps(saved))
    assert load_baselines(path, {"eda": EdaEstimator(model, WindowSpec(300.0, 5.0))}) == 0
    path.write_text('{"format": "emotion-edge trailing baselines v1", "modal')  # cut short by a crash
    with caplog.at_level("WARNING"):
        assert load_baselines(path, {"eda": EdaEstimator(model, WindowSpec(300.0, 5.0))}) == 0
    assert any("unreadable" in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)
