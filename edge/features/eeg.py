"""EEG window -> band-power features and a signal-quality index (numpy only, vectorised).

Band powers come from a Welch estimate (2 s Hann segments, 50 % overlap, each segment
linearly detrended) computed with numpy's FFT, per channel, in µV². The bands are the usual
ones — theta 4–8, alpha 8–13, beta 13–30, gamma 30–45 Hz — and all stop at 45 Hz, so mains
interference (45–55 Hz, 55–65 Hz and harmonics) never enters a band power, a relative power
or a ratio. Relative powers are shares of the 4–45 Hz total.

Two established markers are computed on a *frontal pair* of electrodes, chosen by name:

* frontal alpha asymmetry ``faa = ln(alpha_right) − ln(alpha_left)`` (Davidson's
  approach/withdrawal model; alpha power is inversely related to cortical activity, so a
  positive FAA means relatively more *left* frontal activity — associated with approach /
  positive affect; Coan & Allen 2004, Biol. Psychol. 67:7–50);
* frontal ``ln(beta / alpha)``, an arousal/engagement index (Ramirez & Vamvakousis 2012,
  "Detecting emotion from EEG signals using the Emotiv Epoc device", Brain Informatics,
  LNCS 7670: arousal = sum of frontal beta / sum of frontal alpha at AF3, AF4, F3, F4).

The pair is AF7/AF8 (Muse), else F3/F4, else Fp1/Fp2, else F7/F8, else AF3/AF4 (names are
matched case-insensitively; ``EEG `` prefixes and ``-REF``-style suffixes are ignored). A
montage without any of these has no asymmetry: :func:`frontal_pair` returns ``None`` so the
daemon can say so once at start-up, and :func:`eeg_features` raises a one-line
``ConfigError`` rather than publish a valence it cannot compute. Everything else is
aggregated over all channels (mean), so the vector has the same length for any montage.

Windows: 4 s with a 2 s hop is the intended use (Muse 256 Hz, Cyton 250 Hz, DEAP 128 Hz);
any rate whose Nyquist frequency is above 45 Hz works, and windows down to 1 s are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from edge.errors import ConfigError

BANDS_HZ: dict[str, tuple[float, float]] = {
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}
TOTAL_HZ = (4.0, 45.0)  # relative powers are shares of this; the line-noise bands lie outside it
ALPHA_CENTRE_RANGE_HZ = (7.0, 13.0)
WELCH_SEGMENT_S = 2.0  # 0.5 Hz resolution
MIN_WINDOW_S = 1.0
MIN_RATE_HZ = 2 * TOTAL_HZ[1]  # gamma needs a Nyquist frequency above 45 Hz
WINDOW_S = 4.0
HOP_S = 2.0

# Left/right electrode pairs for asymmetry, in order of preference (10-10 names).
FRONTAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("AF7", "AF8"),
    ("F3", "F4"),
    ("FP1", "FP2"),
    ("F7", "F8"),
    ("AF3", "AF4"),
)

EEG_FEATURE_NAMES: tuple[str, ...] = (
    "faa",                     # ln(alpha right) − ln(alpha left), frontal pair
    "frontal_beta_asymmetry",  # ln(beta right) − ln(beta left), frontal pair
    "log_beta_alpha_frontal",  # ln((beta L + beta R) / (alpha L + alpha R))
    "log_beta_alpha",          # mean over channels of ln(beta / alpha)
    "log_theta_beta",          # mean over channels of ln(theta / beta)
    "log_alpha_frontal",       # mean of ln(alpha µV²) over the frontal pair
    "log_power_theta",         # mean over channels of ln(band power µV²)
    "log_power_alpha",
    "log_power_beta",
    "log_power_gamma",
    "rel_power_theta",         # mean over channels of band power / 4–45 Hz power
    "rel_power_alpha",
    "rel_power_beta",
    "rel_power_gamma",
    "alpha_centre_hz",         # power-weighted mean frequency in 7–13 Hz (all channels)
)
FEATURE_INDEX = {name: i for i, name in enumerate(EEG_FEATURE_NAMES)}

_POWER_FLOOR_UV2 = 1e-6  # keeps ln() finite on a dead channel; quality flags the channel anyway
_NAME_NOISE = re.compile(r"^(EEG[\s_-]+)|([\s_-]+(REF|LE|AR|AVG|CZ|A1|A2|M1|M2)$)")

# Quality thresholds (µV unless stated); see eeg_quality.
FLAT_STD_UV = 0.5
RAIL_UV = 500.0
EXCURSION_UV = 100.0  # blink / movement: slow deflections this far from the channel median
EXCURSION_SMOOTH_S = 0.2
EXCURSION_MARGIN_S = 0.2
LINE_BANDS_HZ = ((49.0, 51.0), (59.0, 61.0))
LINE_IGNORE_HZ = ((45.0, 55.0), (55.0, 65.0))
QUALITY_TOP_HZ = 100.0


def _normalise_channel(name: str) -> str:
    upper = str(name).strip().upper()
    stripped = _NAME_NOISE.sub("", upper)
    return stripped or upper


@lru_cache(maxsize=64)
def _frontal_pair_cached(channels: tuple[str, ...]) -> tuple[int, int] | None:
    names = [_normalise_channel(c) for c in channels]
    for left, right in FRONTAL_PAIRS:
        if left in names and right in names:
            return names.index(left), names.index(right)
    return None


def frontal_pair(channels: Sequence[str]) -> tuple[int, int] | None:
    """Indices (left, right) of the frontal pair used for asymmetry, or None if the montage has none.

    >>> frontal_pair(["TP9", "AF7", "AF8", "TP10"])
    (1, 2)
    """
    return _frontal_pair_cached(tuple(str(c) for c in channels))


def _require_pair(channels: Sequence[str]) -> tuple[int, int]:
    pair = frontal_pair(channels)
    if pair is None:
        wanted = ", ".join(f"{a}/{b}" for a, b in FRONTAL_PAIRS)
        raise ConfigError(f"eeg channels ({', '.join(map(str, channels))}): no frontal pair for "
                          f"asymmetry (need one of {wanted})")
    return pair


def _as_window(eeg_uv: np.ndarray, rate_hz: float, n_channels: int | None = None) -> np.ndarray:
    """The validated window (samples, channels) in float64, lost samples filled (ConfigError if unusable)."""
    return _fill_lost(_as_window_unfilled(eeg_uv, rate_hz, n_channels))[0]


def _as_window_unfilled(eeg_uv: np.ndarray, rate_hz: float, n_channels: int | None = None) -> np.ndarray:
    x = np.asarray(eeg_uv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ConfigError(f"eeg window: expected shape (samples, channels), got {x.shape}")
    if n_channels is not None and x.shape[1] != n_channels:
        raise ConfigError(f"eeg window: {x.shape[1]} channels of data but {n_channels} channel names")
    if not rate_hz or rate_hz <= MIN_RATE_HZ:
        raise ConfigError(f"eeg rate {rate_hz} Hz: need more than {MIN_RATE_HZ:g} Hz (bands reach 45 Hz)")
    if x.shape[0] < MIN_WINDOW_S * rate_hz:
        raise ConfigError(f"eeg window: {x.shape[0]} samples at {rate_hz:g} Hz is shorter than {MIN_WINDOW_S:g} s")
    return x


def _fill_lost(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window with lost/NaN samples set to the channel median, finite mask, channel medians)."""
    finite = np.isfinite(x)
    if finite.all():  # the usual case; nanmedian is several times slower than median
        return x, finite, np.median(x, axis=0)
    med = np.nan_to_num(np.nanmedian(np.where(finite, x, np.nan), axis=0))
    return np.where(finite, x, med[None, :]), finite, med


def welch_psd(eeg_uv: np.ndarray, rate_hz: float, segment_s: float = WELCH_SEGMENT_S) -> tuple[np.ndarray, np.ndarray]:
    """One-sided PSD per channel, µV²/Hz: (freqs_hz (f,), psd (channels, f)).

    Hann-windowed, linearly detrended segments of ``segment_s`` (the whole window if shorter),
    50 % overlap, averaged — Welch's method without scipy.
    """
    x = np.asarray(eeg_uv, dtype=np.float64)
    n = x.shape[0]
    nperseg = int(min(n, round(segment_s * rate_hz)))
    step = max(1, nperseg // 2)
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=0)[::step]  # (seg, ch, nperseg)
    t = np.arange(nperseg, dtype=np.float64) - (nperseg - 1) / 2.0
    slope = (segs * t).sum(axis=-1, keepdims=True) / float(t @ t)
    segs = segs - segs.mean(axis=-1, keepdims=True) - slope * t
    window = np.hanning(nperseg)
    spectrum = np.fft.rfft(segs * window, axis=-1)
    psd = (spectrum.real ** 2 + spectrum.imag ** 2).mean(axis=0) / (rate_hz * float(window @ window))
    if nperseg % 2 == 0:
        psd[..., 1:-1] *= 2.0  # the Nyquist bin has no mirror image
    else:
        psd[..., 1:] *= 2.0
    return np.fft.rfftfreq(nperseg, 1.0 / rate_hz), psd


def _band_power(freqs: np.ndarray, psd: np.ndarray, lo: float, hi: float) -> np.ndarray:
    df = freqs[1] - freqs[0]
    mask = (freqs >= lo) & (freqs < hi)
    return psd[..., mask].sum(axis=-1) * df


def band_powers(eeg_uv: np.ndarray, rate_hz: float) -> dict[str, np.ndarray]:
    """Absolute band power per channel (µV²) for each band in BANDS_HZ, plus 'total' (4–45 Hz)."""
    x = _as_window(eeg_uv, rate_hz)
    freqs, psd = welch_psd(x, rate_hz)
    powers = {band: np.maximum(_band_power(freqs, psd, lo, hi), _POWER_FLOOR_UV2) for band, (lo, hi) in BANDS_HZ.items()}
    powers["total"] = np.maximum(_band_power(freqs, psd, *TOTAL_HZ), _POWER_FLOOR_UV2)
    return powers


def eeg_features(eeg_uv: np.ndarray, rate_hz: float, channels: Sequence[str]) -> np.ndarray:
    """Feature vector (float32, len(EEG_FEATURE_NAMES)) of one window ``eeg_uv`` (samples, channels) in µV.

    Raises ConfigError if the montage has no frontal pair (see :func:`frontal_pair`) or the
    window is unusable (rate ≤ 90 Hz, shorter than 1 s, wrong shape).
    """
    left, right = _require_pair(channels)
    x = _as_window(eeg_uv, rate_hz, len(channels))
    return _features_from_psd(*welch_psd(x, rate_hz), left, right)


def _features_from_psd(freqs: np.ndarray, psd: np.ndarray, left: int, right: int) -> np.ndarray:
    p = {band: np.maximum(_band_power(freqs, psd, lo, hi), _POWER_FLOOR_UV2) for band, (lo, hi) in BANDS_HZ.items()}
    total = p["theta"] + p["alpha"] + p["beta"] + p["gamma"]
    log_p = {band: np.log(v) for band, v in p.items()}

    centre_mask = (freqs >= ALPHA_CENTRE_RANGE_HZ[0]) & (freqs < ALPHA_CENTRE_RANGE_HZ[1])
    mean_psd = psd[:, centre_mask].mean(axis=0)
    weight = float(mean_psd.sum())
    alpha_centre = float(freqs[centre_mask] @ mean_psd / weight) if weight > 0 else float(np.mean(ALPHA_CENTRE_RANGE_HZ))

    values = {
        "faa": log_p["alpha"][right] - log_p["alpha"][left],
        "frontal_beta_asymmetry": log_p["beta"][right] - log_p["beta"][left],
        "log_beta_alpha_frontal": np.log((p["beta"][left] + p["beta"][right]) / (p["alpha"][left] + p["alpha"][right])),
        "log_beta_alpha": np.mean(log_p["beta"] - log_p["alpha"]),
        "log_theta_beta": np.mean(log_p["theta"] - log_p["beta"]),
        "log_alpha_frontal": 0.5 * (log_p["alpha"][left] + log_p["alpha"][right]),
        "alpha_centre_hz": alpha_centre,
    }
    for band in BANDS_HZ:
        values[f"log_power_{band}"] = np.mean(log_p[band])
        values[f"rel_power_{band}"] = np.mean(p[band] / total)
    return np.array([values[name] for name in EEG_FEATURE_NAMES], dtype=np.float32)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred boxcar along axis 0 via cumulative sums (same length, edges use shorter spans)."""
    if width <= 1:
        return x
    c = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), axis=0)
    n = x.shape[0]
    half = width // 2
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def _ramp_down(value: np.ndarray, good: float, bad: float) -> np.ndarray:
    """1 at or below ``good``, 0 at or above ``bad``, linear in between."""
    return np.clip((bad - value) / (bad - good), 0.0, 1.0)


def eeg_quality_report(eeg_uv: np.ndarray, rate_hz: float) -> dict[str, np.ndarray | float]:
    """Per-channel quality components behind :func:`eeg_quality` (for logs and diagnostics)."""
    raw = np.asarray(eeg_uv, dtype=np.float64)
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2 or raw.shape[0] < 4 or not rate_hz or rate_hz <= 0:
        raise ConfigError(f"eeg window: expected (samples, channels) with a positive rate, got {raw.shape} at {rate_hz} Hz")
    return _quality_report(*_fill_lost(raw), rate_hz)


def _quality_report(x: np.ndarray, finite: np.ndarray, med: np.ndarray, rate_hz: float) -> dict[str, Any]:
    """The report of :func:`eeg_quality_report`, plus ``"psd"``: (freqs, psd) of ``x`` or None."""
    centred = x - med[None, :]

    std = centred.std(axis=0)
    flat = std < FLAT_STD_UV
    # railing / clipping: far from the channel's median, or stuck (3+ identical samples in a row)
    eq = np.diff(x, axis=0) == 0
    run3 = eq[1:] & eq[:-1]
    stuck = np.zeros_like(finite)
    stuck[1:-1] |= run3
    stuck[:-2] |= run3
    stuck[2:] |= run3
    railed = np.abs(centred) > RAIL_UV
    bad_frac = (~finite | railed | stuck).mean(axis=0)
    # blinks / movement: slow deflections (0.2 s boxcar) far from the median, not already railed
    slow = _moving_average(centred, int(round(EXCURSION_SMOOTH_S * rate_hz)))
    excursion = (np.abs(slow) > EXCURSION_UV) & ~railed
    # a blink's slow tails spread beyond its peak: count ±EXCURSION_MARGIN_S around it too
    margin = 2 * int(round(EXCURSION_MARGIN_S * rate_hz)) + 1
    excursion_frac = (_moving_average(excursion.astype(np.float64), margin) > 0).mean(axis=0)

    line_share = np.zeros(x.shape[1])
    emg_share = np.zeros(x.shape[1])
    nyquist = rate_hz / 2.0
    spectrum = None
    if x.shape[0] >= rate_hz * 0.5 and nyquist > TOTAL_HZ[1]:
        spectrum = freqs, psd = welch_psd(x, rate_hz)
        top = min(nyquist, QUALITY_TOP_HZ)
        total = _band_power(freqs, psd, 1.0, top) + 1e-12
        line = sum(_band_power(freqs, psd, lo, min(hi, top)) for lo, hi in LINE_BANDS_HZ if lo < top)
        ignore = sum(_band_power(freqs, psd, lo, min(hi, top)) for lo, hi in LINE_IGNORE_HZ if lo < top)
        high = _band_power(freqs, psd, 30.0, 45.0)
        if top > 65.0:
            high = high + _band_power(freqs, psd, 65.0, top)
        line_share = line / total
        emg_share = high / np.maximum(total - ignore, 1e-12)
    score = ((1.0 - bad_frac) * (1.0 - excursion_frac)
             * _ramp_down(line_share, 0.2, 0.8) * _ramp_down(emg_share, 0.25, 0.65))
    score = np.where(flat, 0.0, score)
    return {"score": float(np.clip(score.mean(), 0.0, 1.0)), "channel_score": score, "flat": flat,
            "bad_frac": bad_frac, "excursion_frac": excursion_frac, "line_share": line_share,
            "emg_share": emg_share, "psd": spectrum}


def eeg_quality(eeg_uv: np.ndarray, rate_hz: float) -> float:
    """Signal quality of one window in [0, 1] (1 = clean), the mean of per-channel scores.

    A channel scores 0 if flat (std < 0.5 µV); otherwise the product of: the share of samples
    not railed/clipped (> 500 µV from the channel median, or stuck for 3+ identical samples, or
    lost/NaN); the share not in a blink/movement excursion (0.2 s mean > 100 µV from median, ±0.2 s);
    a line-noise factor (49–51 + 59–61 Hz share of 1–100 Hz power: 1 up to 0.2, 0 at 0.8); and
    an EMG factor (30–45 + 65–100 Hz share, line bands excluded: 1 up to 0.25, 0 at 0.65).
    """
    return float(eeg_quality_report(eeg_uv, rate_hz)["score"])


def eeg_quality_and_features(eeg_uv: np.ndarray, rate_hz: float,
                             channels: Sequence[str]) -> tuple[float, np.ndarray]:
    """(:func:`eeg_quality`, :func:`eeg_features`) of one window in one pass: what the daemon calls.

    The lost-sample fill and the Welch PSD are computed once and shared; the values are the
    same as the two functions' own. Raises ConfigError as :func:`eeg_features` does.
    """
    left, right = _require_pair(channels)
    x = _as_window_unfilled(eeg_uv, rate_hz, len(channels))
    report = _quality_report(*_fill_lost(x), rate_hz)
    # the window passed _as_window_unfilled (rate > 90 Hz, >= 1 s), so quality computed the PSD
    return float(report["score"]), _features_from_psd(*report["psd"], left, right)
