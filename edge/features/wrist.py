"""Skin temperature and wrist movement (Empatica E4 TEMP and ACC): window features, numpy only.

Two signals the wristband records beside EDA and BVP:

- **Skin temperature** (°C, E4 at 4 Hz). Acute stress constricts peripheral vessels, so the
  wrist cools over minutes (Vinkers et al., Stress 16(5), 2013; Herborn et al., Physiol Behav
  152, 2015). Level and slope carry it; absolute level differs between people and rooms, so the
  trailing baseline (``edge.features.baseline``) makes it relative, as for EDA.
- **Acceleration** (3 axes, E4 at 32 Hz in 1/64 g). Movement raises heart rate and sweating
  without stress: the wrist's classic confound. The features describe how much the wearer moved
  (deviation of the vector magnitude from 1 g, activity counts) so a model can discount EDA/HR
  changes that movement explains, and ``motion_share`` lets fusion down-weight such windows.

As for EDA, a window is ``window_s`` long; the last ``RECENT_S`` are described and the change
against the earlier part is a ``*_delta`` feature (0 while that context is under ``MIN_CONTEXT_S``).
"""

from __future__ import annotations

import numpy as np

RECENT_S = 60.0
MIN_CONTEXT_S = 30.0

TEMP_FEATURE_NAMES: tuple[str, ...] = (
    "temp_mean_c",
    "temp_slope_c_per_min",
    "temp_std_c",
    "temp_mean_c_delta",
)
ACC_FEATURE_NAMES: tuple[str, ...] = (
    "acc_dev_mean_g",  # mean |‖a‖ - 1 g|: how far from rest the wrist is moving
    "acc_dev_p90_g",
    "acc_jerk_mean_g_per_s",  # mean ‖Δa‖ per second: fast movement (typing, gestures)
    "acc_active_share",  # share of 1-s epochs whose deviation exceeds ACTIVE_G
    "acc_dev_mean_g_delta",
)
WRIST_FEATURE_NAMES: tuple[str, ...] = TEMP_FEATURE_NAMES + ACC_FEATURE_NAMES

E4_ACC_UNITS_PER_G = 64.0  # E4 ACC.csv counts: 1/64 g
ACTIVE_G = 0.05  # a 1-s epoch whose mean deviation exceeds this is movement, not rest or typing tremor
MOTION_HEAVY_SHARE = 0.5  # more active seconds than this: EDA/HR in the window are mostly movement
TEMP_MIN_C, TEMP_MAX_C = 20.0, 42.0  # outside this the sensor is off the skin (E4 reads room air)
ACC_MAX_G = 8.0  # beyond the E4's ±2 g range times any plausible scale: not acceleration


def _split(n: int, rate_hz: float) -> int:
    """Index where the described last RECENT_S begins."""
    return max(0, n - int(round(RECENT_S * rate_hz)))


def temp_features(temp_c: np.ndarray, rate_hz: float) -> np.ndarray:
    """TEMP_FEATURE_NAMES of one window of skin temperature (°C); NaN where too short or off-skin."""
    x = np.asarray(temp_c, dtype=np.float64).reshape(len(temp_c), -1)[:, 0] if len(temp_c) else np.zeros(0)
    out = np.full(len(TEMP_FEATURE_NAMES), np.nan, np.float32)
    split = _split(len(x), rate_hz)
    recent = x[split:]
    if len(recent) < max(2, int(10 * rate_hz)) or not np.all(np.isfinite(recent)):
        return out
    t_min = np.arange(len(recent)) / rate_hz / 60.0
    slope = np.polyfit(t_min, recent, 1)[0] if np.ptp(t_min) > 0 else 0.0
    mean = float(recent.mean())
    context = x[:split]
    delta = 0.0
    if len(context) >= MIN_CONTEXT_S * rate_hz and np.all(np.isfinite(context)):
        delta = mean - float(context.mean())
    out[:] = (mean, slope, float(recent.std()), delta)
    return out


def temp_quality(temp_c: np.ndarray, rate_hz: float) -> float:
    """Share of the window's samples inside skin temperatures (0 when empty)."""
    x = np.asarray(temp_c, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        return 0.0
    return float(np.mean(np.isfinite(x) & (x >= TEMP_MIN_C) & (x <= TEMP_MAX_C)))


def _epoch_deviation(dev_g: np.ndarray, rate_hz: float) -> np.ndarray:
    """Mean deviation per whole 1-s epoch."""
    per = max(1, int(round(rate_hz)))
    n = len(dev_g) // per
    return dev_g[: n * per].reshape(n, per).mean(axis=1) if n else np.zeros(0)


def acc_features(acc_g: np.ndarray, rate_hz: float) -> np.ndarray:
    """ACC_FEATURE_NAMES of one window of 3-axis acceleration in g, shape (n, 3); NaN where too short."""
    a = np.asarray(acc_g, dtype=np.float64).reshape(-1, 3) if np.size(acc_g) else np.zeros((0, 3))
    out = np.full(len(ACC_FEATURE_NAMES), np.nan, np.float32)
    split = _split(len(a), rate_hz)
    recent = a[split:]
    if len(recent) < max(2, int(10 * rate_hz)) or not np.all(np.isfinite(recent)):
        return out
    dev = np.abs(np.linalg.norm(recent, axis=1) - 1.0)
    jerk = np.linalg.norm(np.diff(recent, axis=0), axis=1) * rate_hz
    epochs = _epoch_deviation(dev, rate_hz)
    context = a[:split]
    delta = 0.0
    if len(context) >= MIN_CONTEXT_S * rate_hz and np.all(np.isfinite(context)):
        delta = float(dev.mean() - np.abs(np.linalg.norm(context, axis=1) - 1.0).mean())
    out[:] = (dev.mean(), np.percentile(dev, 90), jerk.mean(),
              float(np.mean(epochs > ACTIVE_G)) if len(epochs) else 0.0, delta)
    return out


def motion_share(acc_g: np.ndarray, rate_hz: float, last_s: float = RECENT_S) -> float:
    """Share of the last ``last_s`` seconds (whole 1-s epochs) in which the wrist was moving."""
    a = np.asarray(acc_g, dtype=np.float64).reshape(-1, 3) if np.size(acc_g) else np.zeros((0, 3))
    a = a[max(0, len(a) - int(round(last_s * rate_hz))):]
    if len(a) == 0 or not np.all(np.isfinite(a)):
        return 0.0
    epochs = _epoch_deviation(np.abs(np.linalg.norm(a, axis=1) - 1.0), rate_hz)
    return float(np.mean(epochs > ACTIVE_G)) if len(epochs) else 0.0


def acc_quality(acc_g: np.ndarray, rate_hz: float) -> float:
    """Share of samples that are finite and within a wrist sensor's range (0 when empty)."""
    a = np.asarray(acc_g, dtype=np.float64).reshape(-1, 3) if np.size(acc_g) else np.zeros((0, 3))
    if len(a) == 0:
        return 0.0
    return float(np.mean(np.isfinite(a).all(axis=1) & (np.abs(a) <= ACC_MAX_G).all(axis=1)))


def motion_weight(share: float) -> float:
    """Factor for a physiological estimate's weight in a window where the wrist moved ``share`` of the time:
    1 at rest, falling linearly to 0.25 when every second was movement (EDA/HR then follow the body, not stress)."""
    share = float(np.clip(share, 0.0, 1.0)) if np.isfinite(share) else 0.0
    return 1.0 - 0.75 * share
