"""Signal synthesisers for the simulated wearable: numpy only, vectorised per chunk.

Each synthesiser keeps just enough state (a noise tail, recent events, the last heart beats)
to continue seamlessly from one chunk to the next, so a caller can generate a recording of
any length in fixed-size pieces without seams. Nothing here reads a clock or does I/O;
``firmware_bridge.simulate`` decides what to generate and when.

References for the shapes:
- ECG: a sum of Gaussians for P, Q, R, S and T, after McSharry et al., "A dynamical model for
  generating synthetic electrocardiogram signals", IEEE TBME 50(3):289-294, 2003 (ECGSYN);
  P and T waves stretch with sqrt(RR) as the QT interval does (Bazett), QRS does not.
- EDA: skin conductance responses as Bateman bi-exponentials (onset and recovery time
  constants as in Benedek & Kaernbach, J Neurosci Methods 190:80-91, 2010).
- EEG: 1/f background, narrow-band alpha (whose Rayleigh envelope gives waxing and waning
  bursts), band-limited beta, monophasic frontal blink artefacts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

GainFn = Callable[[np.ndarray], np.ndarray]  # frequency (Hz) -> amplitude gain


class ShapedNoise:
    """Gaussian noise with a given amplitude spectrum, unit RMS, continuous across calls.

    Each call shapes white noise in the frequency domain (one rfft/irfft), and joins the new
    segment to the previous one with an equal-power (cos/sin) crossfade over ``overlap_s``:
    independent segments crossfaded that way keep their variance, so there is no seam and no
    dip. ``channels`` are independent.
    """

    def __init__(self, rate_hz: float, channels: int, gain: GainFn, rng: np.random.Generator,
                 overlap_s: float = 1.0):
        self.rate_hz = float(rate_hz)
        self.channels = int(channels)
        self._gain = gain
        self._rng = rng
        self._overlap = max(2, round(overlap_s * rate_hz))
        self._tail: np.ndarray | None = None
        self._gains: dict[int, np.ndarray] = {}  # segment length -> normalised gain (lengths repeat)
        fade = np.linspace(0.0, np.pi / 2, self._overlap, endpoint=False) + np.pi / (4 * self._overlap)
        self._fade_in = np.sin(fade)[:, None]
        self._fade_out = np.cos(fade)[:, None]

    def _normalised_gain(self, length: int) -> np.ndarray:
        g = self._gains.get(length)
        if g is None:
            freqs = np.fft.rfftfreq(length, 1.0 / self.rate_hz)
            g = np.asarray(self._gain(freqs), dtype=np.float64)
            # mean power over the full (two-sided) spectrum -> unit variance in expectation
            weights = np.full(g.shape, 2.0)
            weights[0] = 1.0
            if length % 2 == 0:
                weights[-1] = 1.0
            power = float(np.sum(weights * g * g)) / length
            g = g / np.sqrt(power) if power > 0 else g
            self._gains[length] = g
        return g

    def _segment(self, length: int) -> np.ndarray:
        g = self._normalised_gain(length)
        # the spectrum of white noise drawn directly (what rfft of N(0, 1) samples would give):
        # complex Gaussian bins with E|X|^2 = length, real at DC and at Nyquist
        n_bins = g.size
        z = self._rng.standard_normal((2, n_bins, self.channels))
        spectrum = (z[0] + 1j * z[1]) * np.sqrt(length / 2.0)
        spectrum[0] = z[0, 0] * np.sqrt(length)
        if length % 2 == 0:
            spectrum[-1] = z[0, -1] * np.sqrt(length)
        return np.fft.irfft(spectrum * g[:, None], n=length, axis=0)

    def next(self, n: int) -> np.ndarray:
        """The next ``n`` samples, shape (n, channels)."""
        ov = self._overlap
        out = np.empty((n, self.channels))
        done = 0
        while done < n:  # one pass unless n < overlap
            take = max(n - done, ov)
            seg = self._segment(take + ov)
            if self._tail is not None:
                seg[:ov] = self._tail * self._fade_out + seg[:ov] * self._fade_in
            self._tail = seg[take:take + ov].copy()
            k = min(take, n - done)
            out[done:done + k] = seg[:k]
            if k < take:  # asked for fewer than an overlap: keep the rest for next time
                self._tail = seg[k:k + ov].copy()
            done += k
        return out


def pink_gain(f_lo_hz: float = 0.5, f_hi_hz: float = 45.0) -> GainFn:
    """1/f power (1/sqrt(f) amplitude) between ``f_lo_hz`` and a soft roll-off above ``f_hi_hz``."""

    def gain(f: np.ndarray) -> np.ndarray:
        g = 1.0 / np.sqrt(np.maximum(f, f_lo_hz))
        g = g / (1.0 + (f / f_hi_hz) ** 4)
        g[f < 0.1] = 0.0
        return g

    return gain


def band_gain(lo_hz: float, hi_hz: float, edge_hz: float = 1.0) -> GainFn:
    """Flat between ``lo_hz`` and ``hi_hz`` with Gaussian edges of width ``edge_hz``."""

    def gain(f: np.ndarray) -> np.ndarray:
        below = np.exp(-0.5 * ((f - lo_hz) / edge_hz) ** 2)
        above = np.exp(-0.5 * ((f - hi_hz) / edge_hz) ** 2)
        return np.where(f < lo_hz, below, np.where(f > hi_hz, above, 1.0))

    return gain


def peak_gain(centre_hz: float, width_hz: float) -> GainFn:
    """A Gaussian spectral peak: narrow-band noise, i.e. an oscillation with a Rayleigh envelope."""

    def gain(f: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * ((f - centre_hz) / width_hz) ** 2)

    return gain


def lowpass_gain(corner_hz: float) -> GainFn:
    """Smooth random drift: flat below ``corner_hz``, steep above, nothing at DC."""

    def gain(f: np.ndarray) -> np.ndarray:
        g = 1.0 / (1.0 + (f / corner_hz) ** 4)
        g[0] = 0.0
        return g

    return gain


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero slope at both ends (a raised-cosine ramp)."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


class PoissonEvents:
    """Events at a time-varying rate (thinning of a homogeneous process), generated chunk by chunk.

    ``rate_fn(t_s) -> events per second`` must not exceed ``max_rate_hz``. Events stay in
    ``recent`` for ``memory_s`` so that a synthesiser can render the tails of responses that
    started in an earlier chunk.
    """

    def __init__(self, max_rate_hz: float, rng: np.random.Generator, memory_s: float):
        self.max_rate_hz = float(max_rate_hz)
        self._rng = rng
        self.memory_s = float(memory_s)
        self.times_s = np.empty(0)
        self.sizes = np.empty(0)

    def advance(self, t0_s: float, t1_s: float, rate_fn: GainFn,
                size_fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> None:
        """Draw the events in [t0_s, t1_s) and forget those older than ``t0_s - memory_s``."""
        n = self._rng.poisson(self.max_rate_hz * (t1_s - t0_s))
        cand = np.sort(self._rng.uniform(t0_s, t1_s, n))
        keep = self._rng.uniform(0.0, 1.0, n) * self.max_rate_hz < rate_fn(cand)
        new_t = cand[keep]
        new_size = size_fn(new_t, self._rng)
        old = self.times_s >= t0_s - self.memory_s
        self.times_s = np.concatenate([self.times_s[old], new_t])
        self.sizes = np.concatenate([self.sizes[old], new_size])


# --- ECG ---------------------------------------------------------------------------------

# (centre s relative to R, width s, amplitude µV) at RR = 1 s; P and T scale with sqrt(RR).
_ECG_QRS_WAVES = ((-0.030, 0.009, -90.0), (0.0, 0.011, 1100.0), (0.028, 0.011, -260.0))
_ECG_PT_WAVES = ((-0.165, 0.024, 110.0), (0.270, 0.050, 290.0))
_TEMPLATE_STEP_S = 0.0005


def _gauss_table(waves: tuple[tuple[float, float, float], ...], t: np.ndarray) -> np.ndarray:
    return sum(a * np.exp(-0.5 * ((t - c) / w) ** 2) for c, w, a in waves)


class EcgTemplate:
    """A precomputed P-QRS-T beat, looked up by time from the R peak (µV).

    ECGSYN places Gaussians on a phase circle; here the same Gaussians sit on a time axis,
    tabulated once at 0.5 ms, so rendering a chunk is a handful of ``np.interp`` calls.
    """

    def __init__(self) -> None:
        self._qrs_t = np.arange(-0.08, 0.08, _TEMPLATE_STEP_S)
        self._qrs = _gauss_table(_ECG_QRS_WAVES, self._qrs_t)
        self._pt_t = np.arange(-0.35, 0.60, _TEMPLATE_STEP_S)
        self._pt = _gauss_table(_ECG_PT_WAVES, self._pt_t)

    def render(self, dt_s: np.ndarray, rr_s: np.ndarray) -> np.ndarray:
        """The beat at times ``dt_s`` from its R peak; ``rr_s`` (per sample) stretches P and T."""
        qrs = np.interp(dt_s, self._qrs_t, self._qrs, left=0.0, right=0.0)
        pt = np.interp(dt_s / np.sqrt(rr_s), self._pt_t, self._pt, left=0.0, right=0.0)
        return qrs + pt


def render_ecg(t_s: np.ndarray, r_times_s: np.ndarray, r_gain: np.ndarray,
               template: EcgTemplate) -> np.ndarray:
    """ECG (µV) at ``t_s``: each sample gets the waves of the R peak before it and the one after.

    ``r_times_s`` must cover [t_s[0] - 1 s, t_s[-1] + 1 s]; ``r_gain`` scales each beat.
    """
    k = np.searchsorted(r_times_s, t_s)
    k = np.clip(k, 1, len(r_times_s) - 1)
    prev_r, next_r = r_times_s[k - 1], r_times_s[k]
    rr_prev = prev_r - r_times_s[np.maximum(k - 2, 0)]
    rr_prev = np.where(rr_prev > 0.25, rr_prev, next_r - prev_r)
    rr_next = next_r - prev_r
    return (template.render(t_s - prev_r, rr_prev) * r_gain[k - 1]
            + template.render(t_s - next_r, rr_next) * r_gain[k])


# --- EDA ---------------------------------------------------------------------------------

SCR_RISE_S = 0.75  # Bateman onset time constant
SCR_DECAY_S = 4.0  # recovery time constant (half-recovery ~3-5 s after the peak)
SCR_MEMORY_S = 40.0  # a response is < 0.1 % of its peak this long after onset
_t_peak = np.log(SCR_DECAY_S / SCR_RISE_S) * SCR_RISE_S * SCR_DECAY_S / (SCR_DECAY_S - SCR_RISE_S)
_SCR_NORM = 1.0 / (np.exp(-_t_peak / SCR_DECAY_S) - np.exp(-_t_peak / SCR_RISE_S))


def _bateman(dt_s: np.ndarray) -> np.ndarray:
    dt = np.maximum(dt_s, 0.0)
    return (np.exp(-dt / SCR_DECAY_S) - np.exp(-dt / SCR_RISE_S)) * _SCR_NORM


def render_events(t_s: np.ndarray, event_times_s: np.ndarray, amplitudes: np.ndarray,
                  shape: Callable[[np.ndarray], np.ndarray], before_s: float, after_s: float) -> np.ndarray:
    """Sum of ``amplitude * shape(t - event_time)`` over events, on the regular grid ``t_s``.

    Each event is rendered only within [-before_s, after_s] of its time (events x support
    samples, then one ``bincount``), so the cost does not grow with the length of ``t_s``.
    """
    n = t_s.size
    if event_times_s.size == 0 or n == 0:
        return np.zeros(n)
    step = float(t_s[1] - t_s[0]) if n > 1 else 1.0
    offsets = np.arange(-int(np.ceil(before_s / step)) - 1, int(np.ceil(after_s / step)) + 2)
    centre = np.floor((event_times_s - t_s[0]) / step).astype(np.int64)
    idx = centre[:, None] + offsets[None, :]
    valid = (idx >= 0) & (idx < n)
    dt = (t_s[0] + idx * step) - event_times_s[:, None]
    values = shape(dt) * amplitudes[:, None]
    return np.bincount(idx[valid], weights=values[valid], minlength=n)


def render_scrs(t_s: np.ndarray, onsets_s: np.ndarray, amplitudes_us: np.ndarray) -> np.ndarray:
    """Sum of Bateman responses (peak = amplitude, µS) at the regular times ``t_s``."""
    return render_events(t_s, onsets_s, amplitudes_us, _bateman, 0.0, SCR_MEMORY_S)


def first_order_lag(target: np.ndarray, x0: float, step_s: float, tau_s: float) -> np.ndarray:
    """x[k] follows ``target`` with time constant ``tau_s`` (x[0] = x0); closed form, no loop.

    x[k] = a^k x0 + (1 - a) sum_{j<k} a^(k-1-j) target[j], evaluated with cumulative sums in
    pieces short enough that the a^-j scaling cannot overflow.
    """
    a = np.exp(-step_s / tau_s)
    piece = max(1, int(200.0 * tau_s / step_s))  # a^-piece <= e^200: no overflow, however long the input
    out = np.empty(target.size)
    for p0 in range(0, target.size, piece):  # one pass for any chunk the simulator asks for
        seg = target[p0:p0 + piece]
        k = np.arange(seg.size)
        scaled = np.concatenate([[0.0], np.cumsum(seg * a ** -(k + 1.0))[:-1]])
        out[p0:p0 + seg.size] = a ** k * (x0 + (1.0 - a) * scaled)
        x0 = a * out[p0 + seg.size - 1] + (1.0 - a) * seg[-1]
    return out


# --- EEG ---------------------------------------------------------------------------------

BLINK_WIDTH_S = 0.12  # Gaussian sigma: a blink deflection lasts ~0.3-0.4 s


def _blink(dt_s: np.ndarray) -> np.ndarray:
    # slightly skewed: a quicker lid closure than reopening
    width = np.where(dt_s < 0, 0.8 * BLINK_WIDTH_S, 1.2 * BLINK_WIDTH_S)
    return np.exp(-0.5 * (dt_s / width) ** 2)


def render_blinks(t_s: np.ndarray, blink_times_s: np.ndarray, amplitudes_uv: np.ndarray) -> np.ndarray:
    """Monophasic blink deflections (µV at the frontal electrodes) at the regular times ``t_s``."""
    return render_events(t_s, blink_times_s, amplitudes_uv, _blink, 6 * BLINK_WIDTH_S, 6 * BLINK_WIDTH_S)
