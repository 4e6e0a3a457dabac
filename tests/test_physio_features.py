"""EDA and cardiac features: responses a user would notice (an SCR burst, a known rhythm, a bad sensor),
R-peaks on real MIT-BIH ECG, PPG beats, and the numpy-only import rule of edge/features."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.features.cardiac import (
    CARDIAC_FEATURE_NAMES,
    beats_to_ibi_ms,
    bvp_beats,
    cardiac_quality,
    ecg_r_peaks,
    hrv_features,
    valid_ibi_mask,
)
from edge.features.eda import EDA_FEATURE_NAMES, eda_features, eda_quality, scr_peaks

EDA_RATE = 4.0
CARD = {n: i for i, n in enumerate(CARDIAC_FEATURE_NAMES)}
EDA = {n: i for i, n in enumerate(EDA_FEATURE_NAMES)}


def calm_eda(seconds: float = 300.0, level_us: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * EDA_RATE)) / EDA_RATE
    return level_us + 0.05 * np.sin(2 * np.pi * t / 200.0) + rng.normal(0, 0.002, len(t))


def scr(t: np.ndarray, onset_s: float, amp_us: float) -> np.ndarray:
    """A skin-conductance response: ~1.5 s rise, ~5 s recovery (bi-exponential shape)."""
    dt = np.clip(t - onset_s, 0, None)
    shape = np.exp(-dt / 5.0) - np.exp(-dt / 0.75)
    return amp_us * shape / shape.max() * (t >= onset_s)


def test_eda_features_respond_to_an_scr_burst_in_the_last_minute():
    base = calm_eda()
    t = np.arange(len(base)) / EDA_RATE
    burst = base.copy()
    for onset in (245.0, 258.0, 270.0, 283.0):
        burst += scr(t, onset, 0.3)
    calm_f, burst_f = eda_features(base, EDA_RATE), eda_features(burst, EDA_RATE)
    assert calm_f.shape == burst_f.shape == (len(EDA_FEATURE_NAMES),)
    assert np.isfinite(calm_f).all() and np.isfinite(burst_f).all()
    assert calm_f[EDA["scr_rate_per_min"]] == 0.0
    assert burst_f[EDA["scr_rate_per_min"]] == pytest.approx(4.0)  # four SCRs in the described minute
    assert burst_f[EDA["scr_amp_mean_us"]] == pytest.approx(0.3, rel=0.35)
    assert 0.5 < burst_f[EDA["scr_rise_time_mean_s"]] < 4.0
    assert burst_f[EDA["phasic_power_log"]] > calm_f[EDA["phasic_power_log"]] + 2.0
    assert burst_f[EDA["scr_rate_per_min_delta"]] == pytest.approx(4.0)  # none in the context before
    _, amps, _ = scr_peaks(burst[-240:], EDA_RATE)
    assert len(amps) == 4


def test_eda_tonic_slope_and_scale_free_features():
    t = np.arange(1200) / EDA_RATE
    rising = 1.0 + t / 300.0  # +0.2 µS per minute
    f = eda_features(rising, EDA_RATE)
    assert f[EDA["scl_slope_us_per_min"]] == pytest.approx(0.2, rel=0.1)
    assert f[EDA["scl_mean_log_us_delta"]] > 0
    # the same signal ten times larger: relative features unchanged, absolute ones scale
    g = eda_features(10 * rising, EDA_RATE)
    assert g[EDA["scl_slope_rel_per_min"]] == pytest.approx(f[EDA["scl_slope_rel_per_min"]], rel=1e-3)
    assert g[EDA["scl_mean_log_us"]] == pytest.approx(f[EDA["scl_mean_log_us"]] + np.log(10), rel=1e-3)


def test_eda_quality_high_on_skin_and_falls_on_flatline_loss_of_contact_and_garbage():
    assert eda_quality(calm_eda(), EDA_RATE) > 0.95
    assert eda_quality(np.zeros(1200), EDA_RATE) == 0.0  # off the wrist
    assert eda_quality(np.full(1200, 4.25), EDA_RATE) == 0.0  # stuck at one value (clipped / frozen)
    rng = np.random.default_rng(3)
    garbage = rng.uniform(0, 80, 1200)  # jumps of tens of µS per sample, out of range
    assert eda_quality(garbage, EDA_RATE) < 0.2
    half_off = calm_eda()
    half_off[600:] = 0.0
    assert 0.4 < eda_quality(half_off, EDA_RATE) < 0.6


def test_hrv_of_a_constant_800_ms_rhythm_is_75_bpm_with_no_variability():
    f = hrv_features(np.full(100, 800.0))
    assert f.shape == (len(CARDIAC_FEATURE_NAMES),)
    assert f[CARD["hr_mean_bpm"]] == pytest.approx(75.0)
    assert f[CARD["ibi_mean_ms"]] == pytest.approx(800.0)
    for name in ("rmssd_log_ms", "sdnn_log_ms", "pnn50", "hr_std_bpm", "hr_slope_bpm_per_min", "hr_mean_bpm_delta"):
        assert f[CARD[name]] == pytest.approx(0.0, abs=1e-3), name
    assert cardiac_quality(np.full(100, 800.0)) == 1.0


def test_hrv_of_alternating_intervals_and_respiratory_sinus_arrhythmia():
    alt = np.tile([800.0, 860.0], 50)
    f = hrv_features(alt)
    assert np.exp(f[CARD["rmssd_log_ms"]]) - 1 == pytest.approx(60.0, rel=1e-3)  # every successive difference is 60 ms
    assert f[CARD["pnn50"]] == pytest.approx(1.0)
    # IBIs modulated at 0.25 Hz (15 breaths/min): HF dominates LF and the respiration estimate finds it
    t = np.cumsum(np.full(300, 800.0)) / 1000.0
    rsa = 800.0 + 40.0 * np.sin(2 * np.pi * 0.25 * t)
    g = hrv_features(rsa, t)
    assert g[CARD["resp_freq_hz"]] == pytest.approx(0.25, abs=0.02)
    assert g[CARD["hf_log_ms2"]] > g[CARD["lf_log_ms2"]] + 2.0


def test_implausible_intervals_are_rejected_and_lower_quality():
    clean = np.full(80, 800.0) + np.tile([0.0, 20.0], 40)
    dirty = clean.copy()
    dirty[[10, 30, 50]] = [3000.0, 150.0, 1300.0]  # a pause, an impossible beat, a missed beat
    mask = valid_ibi_mask(dirty)
    assert not mask[[10, 30, 50]].any() and mask.sum() == 77
    np.testing.assert_allclose(hrv_features(dirty)[CARD["hr_mean_bpm"]], hrv_features(clean)[CARD["hr_mean_bpm"]], rtol=1e-3)
    assert cardiac_quality(dirty) < cardiac_quality(clean) == 1.0
    rng = np.random.default_rng(5)
    assert cardiac_quality(rng.uniform(100, 3000, 80)) < 0.3  # garbage
    assert cardiac_quality(np.zeros(0)) == 0.0
    assert np.isnan(hrv_features(np.full(4, 800.0))).all()  # too few beats: no estimate


def test_lomb_scargle_matches_scipy_on_uneven_beats():
    """The trig-identity form must equal the textbook periodogram (scipy's, rescaled to power per sample)."""
    from scipy.signal import lombscargle

    from edge.features.cardiac import _LS_FREQS, _lomb_scargle

    rng = np.random.default_rng(2)
    ibi = 850 + 60 * np.sin(2 * np.pi * 0.25 * np.arange(120) * 0.85) + rng.normal(0, 20, 120)
    t = np.cumsum(ibi) / 1000.0
    ours = _lomb_scargle(t, ibi, _LS_FREQS)
    theirs = 2.0 * lombscargle(t, ibi - ibi.mean(), 2 * np.pi * _LS_FREQS) / len(ibi)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9 * theirs.max())
    assert abs(_LS_FREQS[np.argmax(ours)] - 0.25) < 0.01  # the 0.25 Hz breathing rhythm of the intervals


def test_beats_to_ibi_ms():
    np.testing.assert_allclose(beats_to_ibi_ms(np.array([1.0, 1.8, 2.65])), [800.0, 850.0])


def synthetic_ecg(seconds: float, rate_hz: float, hr_bpm: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    beats = np.arange(0.5, seconds - 0.5, 60.0 / hr_bpm)
    beats = beats + rng.normal(0, 0.02, len(beats))
    ecg = 0.05 * np.sin(2 * np.pi * 0.3 * t) + rng.normal(0, 0.02, len(t))  # baseline wander + noise
    for b in beats:
        ecg += 1.2 * np.exp(-0.5 * ((t - b) / 0.012) ** 2)  # QRS
        ecg += 0.3 * np.exp(-0.5 * ((t - b - 0.25) / 0.04) ** 2)  # T wave
    return ecg, np.round(beats * rate_hz).astype(int)


@pytest.mark.parametrize("rate_hz, hr_bpm, polarity", [(250.0, 60.0, 1.0), (130.0, 110.0, 1.0), (500.0, 75.0, -1.0)])
def test_r_peaks_on_synthetic_ecg_at_device_rates(rate_hz, hr_bpm, polarity):
    ecg, truth = synthetic_ecg(60.0, rate_hz, hr_bpm)
    found = ecg_r_peaks(polarity * ecg, rate_hz)
    assert len(found) == len(truth)
    assert np.max(np.abs(found - truth)) <= 0.02 * rate_hz  # within 20 ms of the true R peak


def test_r_peaks_on_first_five_minutes_of_mitbih_100(shared_data: Path):
    from firmware_bridge.protocols.wfdb import beat_annotations, read_wfdb_annotations, read_wfdb_record
    from edge.tools.metrics import beat_detection_scores

    record = shared_data / "mitbih" / "100"
    signals, rate_hz, _, _ = read_wfdb_record(record)
    n = int(300 * rate_hz)
    detected = ecg_r_peaks(signals[:n, 0], rate_hz)
    samples, symbols = read_wfdb_annotations(record)
    reference = beat_annotations(samples, symbols)
    reference = reference[reference < n - int(0.15 * rate_hz)]
    scores = beat_detection_scores(reference, detected, int(0.150 * rate_hz))
    assert scores["sensitivity"] >= 0.99
    assert scores["positive_predictivity"] >= 0.99
    ibi = beats_to_ibi_ms(detected / rate_hz)
    assert 70 < hrv_features(ibi)[CARD["hr_mean_bpm"]] < 80  # record 100 runs at about 75 bpm


def synthetic_ppg(seconds: float, rate_hz: float, hr_bpm: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    beats = np.arange(0.3, seconds, 60.0 / hr_bpm)
    ppg = rng.normal(0, 0.03, len(t)) + 0.2 * np.sin(2 * np.pi * 0.2 * t)
    for b in beats:
        dt = t - b
        ppg += np.exp(-0.5 * (dt / 0.08) ** 2) + 0.35 * np.exp(-0.5 * ((dt - 0.3) / 0.1) ** 2)  # systole + dicrotic wave
    return ppg, beats


@pytest.mark.parametrize("polarity", [1.0, -1.0])
def test_ppg_beats_give_the_heart_rate(polarity):
    ppg, beats = synthetic_ppg(60.0, 64.0, 72.0)
    found = bvp_beats(polarity * ppg, 64.0)
    assert abs(len(found) - len(beats)) <= 1
    ibi = beats_to_ibi_ms(found / 64.0)
    assert np.median(ibi) == pytest.approx(60000 / 72.0, abs=16.0)  # one sample at 64 Hz
    assert cardiac_quality(ibi) > 0.9


def test_feature_modules_import_numpy_only():
    code = ("import sys, edge.features.eda, edge.features.cardiac, edge.features.baseline, "
            "firmware_bridge.protocols.wfdb, firmware_bridge.protocols.e4_csv\n"
            "bad = [m for m in ('scipy', 'pandas', 'tensorflow', 'neurokit2', 'sklearn') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
