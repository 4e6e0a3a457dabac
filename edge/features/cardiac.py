"""Heartbeats and heart-rate variability: ECG R-peaks, PPG (BVP) beats, IBI cleaning, HRV features.

numpy only (the daemon runs this every hop on a Raspberry Pi): filters are applied in the
frequency domain (zero-phase, per window); peak logic loops over candidate beats, never
over samples.

Detectors:
- ``ecg_r_peaks``: Pan & Tompkins (IEEE TBME 32(3), 1985) — 5-15 Hz band-pass, derivative,
  squaring, 150 ms moving-window integration, adaptive signal/noise thresholds, 200 ms
  refractory period, T-wave rejection within 360 ms, search-back after 1.66 mean RR.
- ``bvp_beats``: Elgendi et al. (PLoS ONE 8(10):e76585, 2013) two-moving-average systolic
  peak detector — 0.5-8 Hz band-pass, clipped and squared, 111 ms vs 667 ms averages.

HRV (Task Force of the ESC/NASPE, Circulation 93:1043, 1996): time domain, Poincaré SD1/SD2,
Lomb-Scargle LF (0.04-0.15 Hz) and HF (0.15-0.4 Hz) power on the unevenly sampled IBIs.
"""

from __future__ import annotations

import numpy as np

from edge.features.smoothing import moving_average as _moving_average

_BASE_NAMES: tuple[str, ...] = (
    "hr_mean_bpm",
    "hr_std_bpm",
    "hr_range_bpm",
    "ibi_mean_ms",
    "sdnn_log_ms",
    "rmssd_log_ms",
    "pnn50",
    "sd1_log_ms",
    "sd2_log_ms",
    "sd1_sd2_ratio",
    "lf_log_ms2",
    "hf_log_ms2",
    "lf_hf_log",
    "hf_norm",
    "resp_freq_hz",
    "hr_slope_bpm_per_min",
)
# changes from the earlier part of the window to its last RECENT_S (no per-user baseline needed)
_DELTA_NAMES = ("hr_mean_bpm", "sdnn_log_ms", "rmssd_log_ms", "hf_log_ms2", "lf_hf_log", "resp_freq_hz")
_DELTA_INDEX = np.array([_BASE_NAMES.index(n) for n in _DELTA_NAMES])
CARDIAC_FEATURE_NAMES: tuple[str, ...] = _BASE_NAMES + tuple(f"{n}_delta" for n in _DELTA_NAMES)
RECENT_S = 60.0  # features describe the last minute of beats; earlier beats are context
MIN_CONTEXT_S = 30.0

IBI_MIN_MS = 300.0  # 200 bpm
IBI_MAX_MS = 2000.0  # 30 bpm
SUCCESSIVE_DIFF_MAX = 0.2  # an IBI more than 20 % from its neighbours' median is an artefact (missed/extra beat)
MIN_BEATS_FOR_FEATURES = 8


# --------------------------------------------------------------------------- filtering
def fft_bandpass(x: np.ndarray, rate_hz: float, low_hz: float | None, high_hz: float | None,
                 order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth-magnitude band-pass applied in the frequency domain (reflect-padded)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 4:
        return x - x.mean() if n else x
    pad = min(n - 1, int(rate_hz))  # one second of reflection against edge wrap-around
    xp = np.concatenate([x[pad:0:-1], x, x[-2:-pad - 2:-1]]) if pad > 0 else x
    n_fft = 1 << int(np.ceil(np.log2(len(xp))))
    spectrum = np.fft.rfft(xp - xp.mean(), n_fft)
    f = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    gain = np.ones_like(f)
    if high_hz:
        gain /= 1.0 + (f / high_hz) ** (2 * order)
    if low_hz:
        with np.errstate(divide="ignore"):
            ratio = (f / low_hz) ** (2 * order)
        gain *= ratio / (1.0 + ratio)
    y = np.fft.irfft(spectrum * gain, n_fft)[: len(xp)]
    return y[pad:pad + n]



def _local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of strict-left, non-strict-right local maxima (plateaus counted once)."""
    if len(x) < 3:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])) + 1


def _one_lead(x: np.ndarray) -> np.ndarray:
    """A window as 1-D float64: a (n, channels) block gives its first channel."""
    x = np.asarray(x, dtype=np.float64)
    return x[:, 0] if x.ndim == 2 else x.reshape(-1)


# --------------------------------------------------------------------------- ECG
def ecg_r_peaks(ecg: np.ndarray, rate_hz: float) -> np.ndarray:
    """R-peak sample indices in a single-lead ECG window (any polarity; units irrelevant)."""
    x = _one_lead(ecg)
    n = len(x)
    if n < int(rate_hz):  # under one second: no reliable beat
        return np.zeros(0, dtype=np.int64)
    x = np.nan_to_num(x)
    x = x - np.median(x)
    band = fft_bandpass(x, rate_hz, 5.0, 15.0, order=2)
    slope = np.gradient(band) * rate_hz
    energy = _moving_average(slope * slope, round(0.150 * rate_hz))
    candidates = _local_maxima(energy)
    if len(candidates) == 0:
        return np.zeros(0, dtype=np.int64)
    heights = energy[candidates]
    # the steepest slope just before each candidate, for T-wave rejection
    back = max(1, round(0.075 * rate_hz))
    abs_slope = np.abs(slope)
    idx = np.clip(candidates[:, None] - np.arange(back)[None, :], 0, n - 1)
    slopes = abs_slope[idx].max(axis=1)

    refractory = round(0.200 * rate_hz)
    t_wave_zone = round(0.360 * rate_hz)
    learn = energy[: min(n, int(2 * rate_hz))]
    spk = 0.25 * float(learn.max())
    npk = 0.5 * float(learn.mean())
    threshold = npk + 0.25 * (spk - npk)
    accepted: list[int] = []  # positions in ``candidates``
    rr: list[int] = []
    last = -10 * n
    i = 0
    n_cand = len(candidates)
    while i < n_cand:  # one step per candidate peak (a few per heartbeat)
        c = int(candidates[i])
        h = float(heights[i])
        if c - last < refractory:
            if accepted and h > heights[accepted[-1]] and c - last < refractory // 2:
                accepted[-1] = i  # same complex, higher point: move the beat
                last = c
            i += 1
            continue
        recent = rr[-8:]  # plain Python: np.mean on 8 ints costs more than the whole step
        rr_mean = sum(recent) / len(recent) if recent else None
        # search-back: a long gap since the last beat -> take the best candidate above half threshold
        if rr_mean and accepted and c - last > 1.66 * rr_mean:
            lo = accepted[-1] + 1
            gap = np.arange(lo, i)
            gap = gap[(candidates[gap] - last >= refractory) & (heights[gap] > 0.5 * threshold)]
            if len(gap):
                j = int(gap[np.argmax(heights[gap])])
                rr.append(int(candidates[j]) - last)
                last = int(candidates[j])
                accepted.append(j)
                spk = 0.25 * float(heights[j]) + 0.75 * spk
                threshold = npk + 0.25 * (spk - npk)
                continue  # re-examine the current candidate against the new beat
        if h > threshold:
            is_t_wave = (accepted and c - last < t_wave_zone
                         and slopes[i] < 0.5 * slopes[accepted[-1]])
            if is_t_wave:
                npk = 0.125 * h + 0.875 * npk
            else:
                if accepted:
                    rr.append(c - last)
                accepted.append(i)
                last = c
                spk = 0.125 * h + 0.875 * spk
        else:
            npk = 0.125 * h + 0.875 * npk
        threshold = npk + 0.25 * (spk - npk)
        i += 1
    if not accepted:
        return np.zeros(0, dtype=np.int64)
    centres = candidates[np.asarray(accepted)]
    # the R wave: largest band-passed deflection within ±100 ms of the energy peak, then the raw extremum nearby
    half = round(0.100 * rate_hz)
    offsets = np.arange(-half, half + 1)
    idx = np.clip(centres[:, None] + offsets[None, :], 0, n - 1)
    coarse = idx[np.arange(len(centres)), np.argmax(np.abs(band[idx]), axis=1)]
    fine_half = round(0.030 * rate_hz)
    offsets = np.arange(-fine_half, fine_half + 1)
    idx = np.clip(coarse[:, None] + offsets[None, :], 0, n - 1)
    polarity = np.sign(band[coarse])[:, None]
    peaks = idx[np.arange(len(coarse)), np.argmax(polarity * x[idx], axis=1)]
    return np.unique(peaks).astype(np.int64)


# --------------------------------------------------------------------------- PPG
def _elgendi_peaks(filtered: np.ndarray, rate_hz: float) -> np.ndarray:
    """Peaks of the upward pulses of a band-passed PPG (Elgendi's blocks of interest)."""
    n = len(filtered)
    y = np.clip(filtered, 0.0, None) ** 2
    ma_peak = _moving_average(y, round(0.111 * rate_hz))
    ma_beat = _moving_average(y, round(0.667 * rate_hz))
    block = ma_peak > ma_beat + 0.02 * float(np.mean(y))
    edges = np.diff(block.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    keep = (ends - starts) >= round(0.111 * rate_hz)
    starts, ends = starts[keep], ends[keep]
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    # the maximum of the filtered pulse inside each block (blocks are short: bounded width)
    width = int((ends - starts).max())
    idx = starts[:, None] + np.arange(width)[None, :]
    inside = idx < ends[:, None]
    vals = np.where(inside, filtered[np.minimum(idx, n - 1)], -np.inf)
    peaks = idx[np.arange(len(starts)), np.argmax(vals, axis=1)]
    # 300 ms minimum spacing (200 bpm): keep the higher of two close peaks
    if len(peaks) > 1:
        close = np.flatnonzero(np.diff(peaks) < round(0.3 * rate_hz))
        if len(close):
            drop = np.where(filtered[peaks[close]] < filtered[peaks[close + 1]], close, close + 1)
            peaks = np.delete(peaks, np.unique(drop))
    return peaks.astype(np.int64)


def bvp_beats(bvp: np.ndarray, rate_hz: float) -> np.ndarray:
    """Beat sample indices in a PPG/BVP window (Elgendi two-moving-average detector).

    PPG polarity differs between devices (Empatica's BVP beats line up with its downward
    peaks: its own IBI.csv matches them to the sample), so both polarities are detected and
    the one giving the more regular IBI series is kept. Either way one index per pulse.
    """
    x = _one_lead(bvp)
    if len(x) < int(2 * rate_hz):
        return np.zeros(0, dtype=np.int64)
    x = np.nan_to_num(x)
    filtered = fft_bandpass(x - np.median(x), rate_hz, 0.5, 8.0, order=2)
    best, best_score = np.zeros(0, dtype=np.int64), -1.0
    for polarity in (-1.0, 1.0):
        peaks = _elgendi_peaks(polarity * filtered, rate_hz)
        if len(peaks) < 3:
            continue
        score = float(valid_ibi_mask(np.diff(peaks) * (1000.0 / rate_hz)).mean())
        if score > best_score + 1e-9:
            best, best_score = peaks, score
    return best


# --------------------------------------------------------------------------- IBI and HRV
def beats_to_ibi_ms(beat_times_s: np.ndarray) -> np.ndarray:
    """Successive beat times (s) -> inter-beat intervals (ms); one fewer than the beats."""
    t = np.asarray(beat_times_s, dtype=np.float64).reshape(-1)
    return np.diff(t) * 1000.0


def valid_ibi_mask(ibi_ms: np.ndarray) -> np.ndarray:
    """True for physiologically plausible IBIs that agree with their neighbours.

    Rejects IBIs outside 300-2000 ms and IBIs more than 20 % away from the median of the
    surrounding five (missed or extra beats, motion artefacts).
    """
    ibi = np.asarray(ibi_ms, dtype=np.float64).reshape(-1)
    ok = np.isfinite(ibi) & (ibi >= IBI_MIN_MS) & (ibi <= IBI_MAX_MS)
    if len(ibi) >= 3 and ok.any():
        # implausible IBIs are replaced by the median of the plausible ones before the local median
        filled = np.where(ok, ibi, np.median(ibi[ok]))
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(filled, 2, mode="edge"), 5)
        local = np.median(windows, axis=1)
        ok &= np.abs(ibi - local) <= SUCCESSIVE_DIFF_MAX * local
    return ok


def _lomb_scargle(t: np.ndarray, y: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Lomb-Scargle periodogram (power per frequency, y's units squared) of uneven samples.

    Written with the angle-sum identities so only cos(wt) and sin(wt) are evaluated
    (the textbook form needs four trig matrices): same values, a third of the CPU.
    """
    y = y - y.mean()
    wt = (2 * np.pi * freqs)[:, None] * t[None, :]
    cos_wt, sin_wt = np.cos(wt), np.sin(wt)
    cc = np.einsum("ij,ij->i", cos_wt, cos_wt)
    ss = np.einsum("ij,ij->i", sin_wt, sin_wt)
    cs = np.einsum("ij,ij->i", cos_wt, sin_wt)
    # tan(2 w tau) = sum sin(2wt) / sum cos(2wt), with sin 2a = 2 sin a cos a, cos 2a = cos^2 a - sin^2 a
    two_w_tau = np.arctan2(2 * cs, cc - ss)
    cos_tau, sin_tau = np.cos(two_w_tau / 2), np.sin(two_w_tau / 2)
    yc, ys = cos_wt @ y, sin_wt @ y
    # cos(wt - w tau) = cos wt cos w tau + sin wt sin w tau; sin(wt - w tau) = sin wt cos w tau - cos wt sin w tau
    c_y = cos_tau * yc + sin_tau * ys
    s_y = cos_tau * ys - sin_tau * yc
    c_c = cos_tau ** 2 * cc + 2 * cos_tau * sin_tau * cs + sin_tau ** 2 * ss
    s_s = cos_tau ** 2 * ss - 2 * cos_tau * sin_tau * cs + sin_tau ** 2 * cc
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c_y ** 2 / c_c + s_y ** 2 / s_s
    return np.nan_to_num(p) / len(y)


_LS_FREQS = np.arange(0.04, 0.5001, 0.005)
_LF = (_LS_FREQS >= 0.04) & (_LS_FREQS < 0.15)
_HF = (_LS_FREQS >= 0.15) & (_LS_FREQS < 0.40)
_RESP = (_LS_FREQS >= 0.10) & (_LS_FREQS <= 0.50)


def hrv_features(ibi_ms: np.ndarray, beat_times_s: np.ndarray | None = None) -> np.ndarray:
    """HRV features (``CARDIAC_FEATURE_NAMES`` order) of the IBIs in one window.

    ``beat_times_s`` (time of the beat ending each IBI) places the IBIs in time when beats were
    dropped; without it the times are the IBIs' running sum. The IBIs of the last ``RECENT_S``
    seconds are described; earlier IBIs in the window (the manifest asks for 300 s) are the
    context of the ``*_delta`` features (0 when under 30 s of context). Fewer than 8 valid
    recent IBIs -> all NaN.
    """
    ibi = np.asarray(ibi_ms, dtype=np.float64).reshape(-1)
    times = np.cumsum(ibi) / 1000.0 if beat_times_s is None else np.asarray(beat_times_s, np.float64).reshape(-1)
    if len(ibi) == 0:
        return np.full(len(CARDIAC_FEATURE_NAMES), np.nan, dtype=np.float32)
    recent = times > times[-1] - RECENT_S
    base = _hrv_base_features(ibi[recent], times[recent])
    if not np.isfinite(base).all():
        return np.full(len(CARDIAC_FEATURE_NAMES), np.nan, dtype=np.float32)
    delta = np.zeros(len(_DELTA_INDEX), dtype=np.float32)
    if times[~recent].size and times[~recent][-1] - times[0] >= MIN_CONTEXT_S:
        earlier = _hrv_base_features(ibi[~recent], times[~recent])
        if np.isfinite(earlier).all():
            delta = base[_DELTA_INDEX] - earlier[_DELTA_INDEX]
    return np.concatenate([base, delta]).astype(np.float32)


def _hrv_base_features(ibi: np.ndarray, times: np.ndarray) -> np.ndarray:
    ok = valid_ibi_mask(ibi)
    if ok.sum() < MIN_BEATS_FOR_FEATURES:
        return np.full(len(_BASE_NAMES), np.nan, dtype=np.float32)
    v, t = ibi[ok], times[ok]
    hr = 60000.0 / v
    # successive differences only between IBIs that were adjacent in the original series
    adjacent = np.flatnonzero(ok[1:] & ok[:-1])
    diffs = ibi[adjacent + 1] - ibi[adjacent] if len(adjacent) else np.zeros(1)
    sdnn = float(np.std(v, ddof=1))
    rmssd = float(np.sqrt(np.mean(diffs ** 2)))
    pnn50 = float(np.mean(np.abs(diffs) > 50.0))
    sd1 = rmssd / np.sqrt(2.0)
    sd2 = float(np.sqrt(max(2 * sdnn ** 2 - sd1 ** 2, 1e-6)))
    power = _lomb_scargle(t - t[0], v, _LS_FREQS)
    df = _LS_FREQS[1] - _LS_FREQS[0]
    lf = float(power[_LF].sum() * df)
    hf = float(power[_HF].sum() * df)
    resp_freq = float(_LS_FREQS[_RESP][np.argmax(power[_RESP])])
    duration_min = max((t[-1] - t[0]) / 60.0, 1e-3)
    slope = float(np.polyfit(t - t[0], hr, 1)[0] * 60.0) if duration_min > 0.1 else 0.0
    eps = 1.0  # ms / ms²: keeps logs finite for a perfectly regular rhythm
    return np.array([
        hr.mean(), hr.std(), hr.max() - hr.min(), v.mean(),
        np.log(sdnn + eps), np.log(rmssd + eps), pnn50,
        np.log(sd1 + eps), np.log(sd2 + eps), sd1 / (sd2 + eps),
        np.log(lf + eps), np.log(hf + eps), np.log((lf + eps) / (hf + eps)), hf / (lf + hf + eps),
        resp_freq, slope,
    ], dtype=np.float32)


def cardiac_quality(ibi_ms: np.ndarray) -> float:
    """0..1: the share of plausible, consistent IBIs, scaled down when fewer than 20 are left."""
    ibi = np.asarray(ibi_ms, dtype=np.float64).reshape(-1)
    if len(ibi) == 0:
        return 0.0
    ok = valid_ibi_mask(ibi)
    n_ok = int(ok.sum())
    if n_ok < MIN_BEATS_FOR_FEATURES:
        return 0.0
    return float(ok.mean() * min(1.0, n_ok / 20.0))
