"""Electrodermal activity (skin conductance, µS): tonic/phasic split, SCRs, window features, quality.

numpy only, vectorised per window (the daemon runs this every hop). The split is the fast
classic one rather than cvxEDA: the tonic level (SCL) is the smoothed running minimum over
8 s — skin-conductance responses (SCRs) rise in 1-3 s and decay over several seconds, so a
running minimum of that length follows the baseline beneath them — and the phasic part is what
lies above it. SCRs are trough-to-peak rises of the smoothed signal of at least 0.01 µS
(the usual minimum amplitude; Boucsein, "Electrodermal Activity", 2nd ed., 2012).

Features mix absolute values (µS) with scale-free ones (relative to the window's SCL), because
wrist SCL differs by an order of magnitude between people and the model runs uncalibrated.
"""

from __future__ import annotations

import numpy as np

from edge.features.smoothing import moving_average as _moving_average

_BASE_NAMES: tuple[str, ...] = (
    "scl_mean_log_us",
    "scl_slope_us_per_min",
    "scl_slope_rel_per_min",
    "eda_std_us",
    "eda_range_rel",
    "phasic_mean_us",
    "phasic_std_us",
    "phasic_power_log",
    "phasic_rel",
    "scr_rate_per_min",
    "scr_amp_mean_us",
    "scr_amp_max_us",
    "scr_amp_sum_log_us",
    "scr_amp_rel_mean",
    "scr_rise_time_mean_s",
    "deriv_rising_frac",
    "deriv_max_us_per_s",
)
# features whose change from the earlier part of the window to its last RECENT_S also go in:
# a rise in conductance against the minutes before is the stress response, whatever the person's level
_DELTA_NAMES = ("scl_mean_log_us", "eda_std_us", "phasic_power_log", "scr_rate_per_min",
                "scr_amp_sum_log_us", "deriv_rising_frac")
_DELTA_INDEX = np.array([_BASE_NAMES.index(n) for n in _DELTA_NAMES])
EDA_FEATURE_NAMES: tuple[str, ...] = _BASE_NAMES + tuple(f"{n}_delta" for n in _DELTA_NAMES)

RECENT_S = 60.0  # features describe the last minute; the rest of the window is context
MIN_CONTEXT_S = 30.0  # shorter context (daemon warm-up): deltas are 0

SCR_MIN_AMP_US = 0.01
SCR_MAX_RISE_S = 10.0
TONIC_WINDOW_S = 8.0
SMOOTH_S = 0.75
CONTACT_MIN_US = 0.02  # below this the electrodes are not on skin (E4 reads ~0 off-wrist)
RANGE_MAX_US = 60.0  # beyond what skin produces at the wrist or palm
JUMP_MAX_US_PER_S = 10.0  # faster changes are electrode movement, not sweat glands
FLAT_RUN_S = 10.0  # a signal stuck at one value this long is clipped or disconnected



def _running_min(x: np.ndarray, width: int) -> np.ndarray:
    width = max(1, int(width)) | 1
    padded = np.pad(x, width // 2, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, width).min(axis=1)


def _one_channel(x: np.ndarray) -> np.ndarray:
    """A window as 1-D float64: a (n, channels) block gives its first channel."""
    x = np.asarray(x, dtype=np.float64)
    return x[:, 0] if x.ndim == 2 else x.reshape(-1)


def eda_decompose(eda_us: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(smoothed, tonic, phasic) of one window, all in µS."""
    x = np.nan_to_num(_one_channel(eda_us))
    smooth = _moving_average(x, round(SMOOTH_S * rate_hz))
    width = round(TONIC_WINDOW_S * rate_hz)
    tonic = _moving_average(_running_min(smooth, width), width)
    tonic = np.minimum(tonic, smooth)
    return smooth, tonic, smooth - tonic


def scr_peaks(smooth: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCRs of a smoothed window: (peak indices, amplitudes µS, rise times s)."""
    d = np.diff(smooth)
    rising = d > 0
    change = np.diff(rising.astype(np.int8))
    onsets = np.flatnonzero(change == 1) + 1  # trough: falling/flat -> rising
    peaks = np.flatnonzero(change == -1) + 1  # crest: rising -> falling/flat
    if len(rising) and rising[0]:
        onsets = np.concatenate([[0], onsets])
    if len(peaks) == 0 or len(onsets) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    which = np.searchsorted(onsets, peaks, side="right") - 1
    valid = which >= 0
    peaks, start = peaks[valid], onsets[which[valid]]
    amp = smooth[peaks] - smooth[start]
    rise = (peaks - start) / rate_hz
    keep = (amp >= SCR_MIN_AMP_US) & (rise <= SCR_MAX_RISE_S)
    return peaks[keep], amp[keep], rise[keep]


def eda_features(eda_us: np.ndarray, rate_hz: float) -> np.ndarray:
    """Window features in ``EDA_FEATURE_NAMES`` order (float32).

    The last ``RECENT_S`` seconds are described (levels, SCRs, slopes); what came before in the
    window (the model's manifest asks for 300 s) is the context the ``*_delta`` features compare
    against. NaN for windows under 4 s.
    """
    x = _one_channel(eda_us)
    if len(x) < max(4, int(4 * rate_hz)):
        return np.full(len(EDA_FEATURE_NAMES), np.nan, dtype=np.float32)
    recent = int(round(RECENT_S * rate_hz))
    base = _eda_base_features(x[-recent:], rate_hz)
    if len(x) - recent >= MIN_CONTEXT_S * rate_hz:
        delta = base[_DELTA_INDEX] - _eda_base_features(x[:-recent], rate_hz)[_DELTA_INDEX]
    else:
        delta = np.zeros(len(_DELTA_INDEX), dtype=np.float32)
    return np.concatenate([base, delta]).astype(np.float32)


def _eda_base_features(x: np.ndarray, rate_hz: float) -> np.ndarray:
    smooth, tonic, phasic = eda_decompose(x, rate_hz)
    t_min = np.arange(len(x)) / rate_hz / 60.0
    scl = float(tonic.mean())
    scl_floor = max(scl, CONTACT_MIN_US)
    slope = float(np.polyfit(t_min, tonic, 1)[0])
    duration_min = len(x) / rate_hz / 60.0
    _, amp, rise = scr_peaks(smooth, rate_hz)
    deriv = np.diff(smooth) * rate_hz
    return np.array([
        np.log(scl_floor),
        slope,
        slope / scl_floor,
        smooth.std(),
        (smooth.max() - smooth.min()) / scl_floor,
        phasic.mean(),
        phasic.std(),
        np.log(np.mean(phasic ** 2) + 1e-6),
        phasic.mean() / scl_floor,
        len(amp) / duration_min,
        amp.mean() if len(amp) else 0.0,
        amp.max() if len(amp) else 0.0,
        np.log(amp.sum() + SCR_MIN_AMP_US),
        (amp / scl_floor).mean() if len(amp) else 0.0,
        rise.mean() if len(rise) else 0.0,
        float(np.mean(deriv > 0)),
        deriv.max(),
    ], dtype=np.float32)


def eda_quality(eda_us: np.ndarray, rate_hz: float) -> float:
    """0..1: the share of samples that look like skin (contact, range, no jumps, not stuck)."""
    x = _one_channel(eda_us)
    n = len(x)
    if n < 2:
        return 0.0
    bad = ~np.isfinite(x)
    xf = np.nan_to_num(x)
    bad |= xf < CONTACT_MIN_US
    bad |= xf > RANGE_MAX_US
    jump = np.abs(np.diff(xf)) * rate_hz > JUMP_MAX_US_PER_S
    bad[1:] |= jump
    bad[:-1] |= jump
    # runs of one repeated value longer than FLAT_RUN_S (clipping, frozen ADC, cable off)
    same = np.concatenate([[False], np.diff(xf) == 0])
    run_id = np.cumsum(~same)
    run_len = np.bincount(run_id)[run_id]
    bad |= run_len > FLAT_RUN_S * rate_hz
    return float(1.0 - bad.mean())
