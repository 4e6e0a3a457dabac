"""The scripted wearable: EEG (Muse layout), chest ECG (Polar H10 like) and wrist EDA.

It walks through a fixed emotional script that repeats every 10 simulated minutes::

    calm 0-3 min -> stressed 3-5.5 -> amused 5.5-8 -> calm 8-10

so the whole pipeline can be run, demonstrated and benchmarked without hardware, and the
published states can be checked against the truth (``phase_at``). Physiology per phase
(``PHASE_PARAMS``) follows the literature's direction of effects: stress raises heart rate,
lowers HRV (RMSSD) and respiratory sinus arrhythmia, raises skin conductance level and the
rate of skin conductance responses, suppresses alpha and raises beta; positive, approach
affect (amused) shows more right- than left-frontal alpha (frontal alpha asymmetry
FAA = ln P_alpha(AF8) - ln P_alpha(AF7) > 0), withdrawal/stress the opposite. Values stay in
the ranges measured on people: heart rate 65/95/80 bpm and RMSSD ~38/11/24 ms (calm/stressed/
amused), wrist skin conductance 0.8-3 µS as an Empatica E4 reads it, EEG 10-40 µV. The EEG
asymmetry (±0.5 ln units) is at the strong end of what individuals show, so that a 4-s window
carries it through the EEG background noise.

Spec: ``simulate`` or ``simulate:OPTIONS`` with comma-separated ``key=value`` options:

- ``seed=42``          random seed (same seed -> the same signals, block for block)
- ``start=UNIX``       unix time of the first sample (default: wall-clock time when streaming starts)
- ``duration=SECONDS`` simulated seconds after which the source ends (default: never ends)
- ``prime=SECONDS``    the first SECONDS of the script are produced as fast as possible, then the
                       source keeps to ``speed`` (default 0); with ``start=`` that many seconds
                       before now, the script has started earlier on its own clock and the
                       daemon's long windows (eda/cardiac: 300 s) and trailing baselines are full
                       from the first states. That stretch is the script's past: the daemon
                       computes its states (they settle the label) but publishes none of them
                       (``Source.primed_until_unix``)
- ``late=eeg:1680``    a stream that joins SECONDS into the script, as a headband put on later
                       (``+``-separated for several, e.g. ``eeg:1680+acc:60``; default: none). Nothing
                       of it is generated before then, which is what makes the demo's priming cheap
- ``line_hz=50``       add mains interference at 50 or 60 Hz to the EEG (default 0 = none)
- ``streams=eeg+ecg``  which streams to produce (default eeg+ecg+eda; also ``temp``, wrist skin
                       temperature °C at 4 Hz, and ``acc``, 3-axis wrist acceleration in g at 32 Hz)

Generation is vectorised in 10-s chunks (all streams), which are then cut into blocks of
0.25 s (EEG, 64 samples) and 0.5 s (ECG 65 samples, EDA 2 samples) and yielded in order of
their end time, paced by ``speed`` (1.0 = real time, None = as fast as possible).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import SourceError
from edge.stream import SampleBlock
from edge import limits
from firmware_bridge import synth
from firmware_bridge.clock import arrival_time
from firmware_bridge.source import Source

log = logging.getLogger(__name__)

# --- the script ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float  # within the cycle
    end_s: float


PHASES: tuple[Phase, ...] = (
    Phase("calm", 0.0, 180.0),
    Phase("stressed", 180.0, 330.0),
    Phase("amused", 330.0, 480.0),
    Phase("calm", 480.0, 600.0),
)
CYCLE_S = PHASES[-1].end_s
RAMP_S = 25.0  # physiology follows a phase change over this long (raised-cosine ramp from the boundary)

PARAM_NAMES = (
    "hr_bpm",  # mean heart rate
    "rsa_ms",  # respiratory sinus arrhythmia: IBI swing amplitude at the breathing rate
    "lf_ms",  # ~0.1 Hz (Mayer wave) IBI oscillation amplitude
    "ibi_sd_ms",  # beat-to-beat IBI jitter (RMSSD ~ sqrt(2*sd^2 + RSA and LF terms))
    "resp_hz",  # breathing rate
    "scl_us",  # tonic skin conductance level the wrist settles to
    "scr_per_min",  # rate of skin conductance responses
    "scr_median_us",  # median SCR amplitude (log-normal, clipped to 0.05-1 µS)
    "alpha_uv",  # alpha (8-12 Hz) RMS
    "faa",  # frontal alpha asymmetry, ln power AF8 - ln power AF7 (> 0 = approach)
    "beta_uv",  # beta (13-30 Hz) RMS
    "blink_per_min",  # spontaneous blink rate
)
# Expected RMSSD: calm ~38 ms, stressed ~11 ms, amused ~24 ms (see tests/test_simulate.py).
PHASE_PARAMS: dict[str, tuple[float, ...]] = {
    #            hr  rsa  lf  sd  resp  scl scr/min med  alpha faa  beta blink
    "calm": (65.0, 30.0, 25.0, 18.0, 0.23, 0.8, 1.0, 0.08, 10.0, 0.15, 2.5, 12.0),
    "stressed": (95.0, 6.0, 10.0, 7.0, 0.30, 3.0, 8.0, 0.15, 4.0, -0.50, 6.5, 22.0),
    "amused": (80.0, 15.0, 18.0, 14.0, 0.27, 1.2, 4.0, 0.12, 5.0, 0.45, 6.0, 16.0),
}
_P = {name: i for i, name in enumerate(PARAM_NAMES)}
_TABLE = np.array([PHASE_PARAMS[p.name] for p in PHASES])
_STARTS = np.array([p.start_s for p in PHASES])


def phase_at(t_s: float) -> str:
    """The scripted phase at ``t_s`` simulated seconds from the start (the truth for tests and the demo)."""
    u = float(t_s) % CYCLE_S
    i = int(np.searchsorted(_STARTS, u, side="right")) - 1
    return PHASES[i].name


def params_at(t_s: np.ndarray) -> np.ndarray:
    """Physiological parameters at times ``t_s`` (seconds), shape (n, len(PARAM_NAMES)).

    Inside a phase its parameters hold; after each boundary they move from the previous
    phase's values to the new ones over ``RAMP_S`` (raised cosine).
    """
    t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
    u = np.mod(t, CYCLE_S)
    i = np.searchsorted(_STARTS, u, side="right") - 1
    prev = (i - 1) % len(PHASES)
    w = synth.smoothstep((u - _STARTS[i]) / RAMP_S)[:, None]
    return _TABLE[prev] + (_TABLE[i] - _TABLE[prev]) * w


def _phase_values(t_s: np.ndarray, per_phase: dict[str, float]) -> np.ndarray:
    """``per_phase[phase_at(t)]`` for every t (vectorised)."""
    u = np.mod(np.asarray(t_s, dtype=np.float64), CYCLE_S)
    i = np.searchsorted(_STARTS, u, side="right") - 1
    return np.array([per_phase[p.name] for p in PHASES])[i]


# --- options shared by the non-device sources ----------------------------------------------


def parse_options(text: str, known: dict[str, Callable[[str], Any]], what: str) -> dict[str, Any]:
    """``"seed=1,duration=60"`` (or ``&``-separated) -> typed values; one-line SourceError otherwise."""
    out: dict[str, Any] = {}
    for item in text.replace("&", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise SourceError(f"source {what!r}: unknown option {item!r} (known: {', '.join(sorted(known))})")
        try:
            out[key] = known[key](value.strip())
        except ValueError as exc:
            raise SourceError(f"source {what!r}: bad value for {key}: {value!r} ({exc})") from exc
    return out


def split_query(target: str) -> tuple[str, str]:
    """``"path?fps=5"`` -> ("path", "fps=5"); a '?' that is not followed by key=value stays in the path."""
    head, sep, tail = target.rpartition("?")
    if sep and tail and "=" in tail and "/" not in tail and "!" not in tail:
        return head, tail
    return target, ""


class Pacer:
    """Holds a simulated or replayed time line to the wall clock at ``speed`` (None = no holding back).

    ``await pacer.until(t_s)`` returns when ``t_s`` seconds of the time line are due. When it does
    not need to sleep (as fast as possible, or running behind) it still yields to the event loop
    every ``yield_every`` calls, so a source never starves the rest of the daemon.
    """

    def __init__(self, speed: float | None, yield_every: int = 16, free_until_s: float = 0.0):
        self.speed = speed
        self.yield_every = yield_every
        self.free_until_s = float(free_until_s)  # time line up to here is not held back (priming)
        self._wall0: float | None = time.monotonic() if self.free_until_s <= 0 else None
        self._since_yield = 0

    async def until(self, t_s: float) -> None:
        if self.speed is not None and t_s > self.free_until_s:
            if self._wall0 is None:  # priming done: the paced part starts now
                self._wall0 = time.monotonic()
            delay = self._wall0 + (t_s - self.free_until_s) / self.speed - time.monotonic()
            if delay > 0:
                self._since_yield = 0
                await asyncio.sleep(delay)
                return
        self._since_yield += 1
        if self._since_yield >= self.yield_every:
            self._since_yield = 0
            await asyncio.sleep(0)


# --- the generator ---------------------------------------------------------------------------

EEG_CHANNELS = ("TP9", "AF7", "AF8", "TP10")
EEG_RATE_HZ = 256.0
ECG_RATE_HZ = 130.0
EDA_RATE_HZ = 4.0
TEMP_RATE_HZ = 4.0
ACC_RATE_HZ = 32.0
CHUNK_S = 10.0
BLOCK_S = {"eeg": 0.25, "ecg": 0.5, "eda": 0.5, "temp": 0.5, "acc": 0.5}
STREAM_ORDER = ("eeg", "ecg", "eda", "temp", "acc")
DEFAULT_STREAMS = ("eeg", "ecg", "eda")  # temp and acc on request (streams=...+temp+acc)
# wrist skin temperature the skin settles to per phase (°C): stress constricts peripheral vessels
# and the wrist cools by a few tenths of a degree over minutes (Vinkers et al., Stress 16(5), 2013)
TEMP_C = {"calm": 33.6, "stressed": 33.1, "amused": 33.4}
_TEMP_TAU_S = 90.0
_ACC_GRAVITY = np.array([0.15, -0.25, 0.956])  # a resting wrist's orientation (unit vector, g)
_ACC_BOUT_PER_MIN = {"calm": 0.5, "stressed": 1.0, "amused": 2.0}  # gestures: short movement bouts
_ACC_BOUT_S = 3.0
_LATENT_RATE_HZ = 10.0
_EEG_PINK_UV = 12.0
_EEG_ALPHA_CHANNEL_GAIN = np.array([1.15, 1.0, 1.0, 1.15])  # alpha is strongest at the temporal-parietal sites
_BLINK_CHANNEL_GAIN = np.array([0.08, 1.0, 1.05, 0.08])
_SCL_TAU_S = 60.0


class _Latent:
    """Slow hidden processes (breathing phase, Mayer-wave phase, heart-rate and SCL drift) on a 10 Hz grid.

    Extended lazily in chunks and read back by interpolation at any time, so ECG beats (which
    run ahead of the sampled chunk) and the sampled streams see the same breathing.
    """

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._drift = synth.ShapedNoise(_LATENT_RATE_HZ, 4, synth.lowpass_gain(0.02), rng, overlap_s=20.0)
        self.t = np.empty(0)
        self.values = np.empty((0, 4))  # resp_phase, lf_phase, hr_drift_bpm, scl_drift_us
        self._next_t = -5.0
        self._phases = np.array([rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)])

    def ensure(self, t_end_s: float) -> None:
        while self._next_t <= t_end_s + 1.0:
            n = int(CHUNK_S * _LATENT_RATE_HZ)
            t = self._next_t + np.arange(n) / _LATENT_RATE_HZ
            drift = self._drift.next(n)
            resp_hz = params_at(t)[:, _P["resp_hz"]] * (1.0 + 0.08 * drift[:, 0])
            lf_hz = 0.1 * (1.0 + 0.15 * drift[:, 1])
            inc = 2 * np.pi * np.stack([resp_hz, lf_hz], axis=1) / _LATENT_RATE_HZ
            phases = self._phases + np.cumsum(inc, axis=0) - inc
            self._phases = phases[-1] + inc[-1]
            vals = np.column_stack([phases, 2.0 * drift[:, 2], 0.15 * drift[:, 3]])
            self.t = np.concatenate([self.t, t])
            self.values = np.concatenate([self.values, vals])
            self._next_t = t[-1] + 1.0 / _LATENT_RATE_HZ

    def forget_before(self, t_s: float) -> None:
        """Drop the grid before ``t_s``: no stream will ask for those times again."""
        keep = self.t >= t_s
        if not keep.all():
            self.t, self.values = self.t[keep], self.values[keep]

    def at(self, t_s: np.ndarray) -> np.ndarray:
        self.ensure(float(np.max(t_s)))
        return np.column_stack([np.interp(t_s, self.t, self.values[:, j]) for j in range(4)])


def _lognormal_clipped(median: np.ndarray, rng: np.random.Generator, sigma: float,
                       lo: float, hi: float) -> np.ndarray:
    return np.clip(median * np.exp(sigma * rng.standard_normal(median.shape)), lo, hi)


class WearableSignals:
    """Generates the three streams chunk by chunk (pure: no clock, no I/O). Seeded and deterministic."""

    def __init__(self, seed: int = 42, line_hz: float = 0.0):
        root = np.random.SeedSequence(seed)
        r_lat, r_ecg, r_eda, r_eeg = (np.random.default_rng(s) for s in root.spawn(4))
        self.line_hz = float(line_hz)
        self.latent = _Latent(r_lat)
        self._stream_t0: dict[str, float] = {}  # start of the latest chunk asked for, per stream
        # ECG
        self._rng_ecg = r_ecg
        self._template = synth.EcgTemplate()
        self.r_times = np.array([-2.0])
        self.r_gain = np.array([1.0])
        self._ecg_wander = synth.ShapedNoise(ECG_RATE_HZ, 1, synth.lowpass_gain(0.3), r_ecg, overlap_s=5.0)
        self._ecg_emg = synth.ShapedNoise(ECG_RATE_HZ, 1, synth.band_gain(20.0, 60.0, 5.0), r_ecg)
        # EDA
        self._rng_eda = r_eda
        self._scrs = synth.PoissonEvents(12.0 / 60.0, r_eda, synth.SCR_MEMORY_S)
        self._scl_next = PHASE_PARAMS["calm"][_P["scl_us"]]
        # EEG
        self._rng_eeg = r_eeg
        # column 4 is shared by all electrodes (volume conduction), columns 0-3 are each electrode's own
        self._pink = synth.ShapedNoise(EEG_RATE_HZ, 5, synth.pink_gain(), r_eeg)
        alpha_hz = float(r_eeg.uniform(9.5, 10.5))  # this wearer's individual alpha frequency
        self._alpha = synth.ShapedNoise(EEG_RATE_HZ, 5, synth.peak_gain(alpha_hz, 0.9), r_eeg)
        self._alpha_env = synth.ShapedNoise(EEG_RATE_HZ, 1, synth.lowpass_gain(0.2), r_eeg, overlap_s=4.0)
        self._beta = synth.ShapedNoise(EEG_RATE_HZ, 4, synth.band_gain(13.0, 30.0, 1.5), r_eeg)
        self._blinks = synth.PoissonEvents(40.0 / 60.0, r_eeg, 1.0)
        self._line_phase = float(r_eeg.uniform(0, 2 * np.pi))
        # wrist temperature and movement (spawned after the others: their signals stay as they were)
        r_temp, r_acc = (np.random.default_rng(s) for s in root.spawn(2))
        self._rng_temp, self._rng_acc = r_temp, r_acc
        self._temp_next = TEMP_C["calm"]
        self._bouts = synth.PoissonEvents(max(_ACC_BOUT_PER_MIN.values()) / 60.0, r_acc, _ACC_BOUT_S)

    # ECG ------------------------------------------------------------------------------------
    def _extend_beats(self, until_s: float) -> None:
        """Append R peaks until past ``until_s``; IBIs from heart rate, RSA, Mayer wave and jitter."""
        while self.r_times[-1] < until_s:
            t_last = float(self.r_times[-1])
            n = 16
            jitter = self._rng_ecg.standard_normal(n)
            gain_noise = self._rng_ecg.standard_normal(n)
            hr0 = params_at(np.array([t_last]))[0, _P["hr_bpm"]]
            t = t_last + np.arange(1, n + 1) * 60.0 / hr0
            for _ in range(3):  # beat times depend on the IBIs that depend on beat times: fixed point
                p = params_at(t)
                lat = self.latent.at(t)
                ibi_ms = (60000.0 / (p[:, _P["hr_bpm"]] + lat[:, 2])
                          - p[:, _P["rsa_ms"]] * np.sin(lat[:, 0])  # inspiration shortens IBIs
                          + p[:, _P["lf_ms"]] * np.sin(lat[:, 1])
                          + p[:, _P["ibi_sd_ms"]] * jitter)
                t = t_last + np.cumsum(np.maximum(ibi_ms, 300.0)) / 1000.0
            gain = 1.0 + 0.08 * np.sin(lat[:, 0]) + 0.02 * gain_noise
            self.r_times = np.concatenate([self.r_times, t])
            self.r_gain = np.concatenate([self.r_gain, gain])

    def ecg(self, t_s: np.ndarray) -> np.ndarray:
        self._extend_beats(float(t_s[-1]) + 2.0)
        first = max(int(np.searchsorted(self.r_times, t_s[0] - 3.0)) - 1, 0)  # keep one beat before
        self.r_times, self.r_gain = self.r_times[first:], self.r_gain[first:]
        lat = self.latent.at(t_s)
        ecg = synth.render_ecg(t_s, self.r_times, self.r_gain, self._template)
        ecg += 60.0 * np.sin(lat[:, 0])  # breathing moves the baseline
        ecg += 40.0 * self._ecg_wander.next(t_s.size)[:, 0]
        ecg += 6.0 * self._ecg_emg.next(t_s.size)[:, 0]
        ecg += 4.0 * self._rng_ecg.standard_normal(t_s.size)
        return ecg[:, None]

    # EDA ------------------------------------------------------------------------------------
    def eda(self, t_s: np.ndarray) -> np.ndarray:
        step = 1.0 / EDA_RATE_HZ
        p = params_at(t_s)
        target = p[:, _P["scl_us"]] + self.latent.at(t_s)[:, 3]
        tonic = synth.first_order_lag(target, self._scl_next, step, _SCL_TAU_S)
        a = np.exp(-step / _SCL_TAU_S)
        self._scl_next = float(a * tonic[-1] + (1 - a) * target[-1])

        def rate(t: np.ndarray) -> np.ndarray:
            return params_at(t)[:, _P["scr_per_min"]] / 60.0

        def size(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return _lognormal_clipped(params_at(t)[:, _P["scr_median_us"]], rng, 0.6, 0.05, 1.0)

        self._scrs.advance(float(t_s[0]), float(t_s[-1]) + step, rate, size)
        phasic = synth.render_scrs(t_s, self._scrs.times_s, self._scrs.sizes)
        eda = tonic + phasic + 0.004 * self._rng_eda.standard_normal(t_s.size)
        return np.maximum(eda, 0.01)[:, None]

    # EEG ------------------------------------------------------------------------------------
    def eeg(self, t_s: np.ndarray) -> np.ndarray:
        n = t_s.size
        # parameters change over tens of seconds: evaluate every 1/16 s and interpolate
        coarse = t_s[::16]
        p_coarse = params_at(coarse)

        def param(name: str) -> np.ndarray:
            return np.interp(t_s, coarse, p_coarse[:, _P[name]])

        pink5 = self._pink.next(n)
        pink = np.sqrt(0.3) * pink5[:, :4] + np.sqrt(0.7) * pink5[:, 4:]
        alpha5 = self._alpha.next(n)
        alpha = np.sqrt(0.05) * alpha5[:, :4] + np.sqrt(0.95) * alpha5[:, 4:]
        envelope = np.exp(0.2 * self._alpha_env.next(n) - 0.2**2)  # slow waxing and waning, mean power 1
        quarter_faa = param("faa") / 4.0  # amplitude ratio AF8/AF7 = exp(faa/2)
        alpha_gain = np.column_stack([
            np.full(n, _EEG_ALPHA_CHANNEL_GAIN[0]), np.exp(-quarter_faa), np.exp(quarter_faa),
            np.full(n, _EEG_ALPHA_CHANNEL_GAIN[3])])
        eeg = _EEG_PINK_UV * pink
        eeg += alpha * alpha_gain * (param("alpha_uv") * envelope[:, 0])[:, None]
        eeg += self._beta.next(n) * param("beta_uv")[:, None]
        step = 1.0 / EEG_RATE_HZ

        def rate(t: np.ndarray) -> np.ndarray:
            return params_at(t)[:, _P["blink_per_min"]] / 60.0

        def size(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return rng.uniform(80.0, 160.0, t.size)

        self._blinks.advance(float(t_s[0]), float(t_s[-1]) + step, rate, size)
        blinks = synth.render_blinks(t_s, self._blinks.times_s, self._blinks.sizes)
        eeg += blinks[:, None] * _BLINK_CHANNEL_GAIN[None, :]
        if self.line_hz:
            eeg += 5.0 * np.sin(2 * np.pi * self.line_hz * t_s + self._line_phase)[:, None]
        return eeg

    def chunk(self, stream: str, t_s: np.ndarray) -> np.ndarray:
        """The next samples of ``stream`` at ``t_s`` (regular, continuing where the last call ended).

        Streams may be asked for in lockstep (the source: 10-s chunks) or one after another
        in bulk (benchmarks, tests); the shared slow processes are kept as long as any stream
        may still need them.
        """
        self._stream_t0[stream] = float(t_s[0])
        self.latent.forget_before(min(self._stream_t0.values()) - 60.0)
        return {"eeg": self.eeg, "ecg": self.ecg, "eda": self.eda, "temp": self.temp, "acc": self.acc}[stream](t_s)

    # wrist temperature and movement ------------------------------------------------------------
    def temp(self, t_s: np.ndarray) -> np.ndarray:
        """Skin temperature (°C, (n, 1)): lags the phase's level by ``_TEMP_TAU_S``, 0.01 °C sensor noise."""
        step = 1.0 / TEMP_RATE_HZ
        target = _phase_values(t_s, TEMP_C)
        temp = synth.first_order_lag(target, self._temp_next, step, _TEMP_TAU_S)
        a = np.exp(-step / _TEMP_TAU_S)
        self._temp_next = float(a * temp[-1] + (1 - a) * target[-1])
        return (temp + 0.01 * self._rng_temp.standard_normal(t_s.size))[:, None]

    def acc(self, t_s: np.ndarray) -> np.ndarray:
        """Wrist acceleration (g, (n, 3)): gravity at rest, tremor noise, and short movement bouts."""
        step = 1.0 / ACC_RATE_HZ

        def rate(t: np.ndarray) -> np.ndarray:
            return _phase_values(t, _ACC_BOUT_PER_MIN) / 60.0

        def size(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return rng.uniform(0.2, 0.6, t.shape)

        self._bouts.advance(float(t_s[0]), float(t_s[-1]) + step, rate, size)
        envelope = synth.render_events(t_s, self._bouts.times_s, self._bouts.sizes,
                                       lambda dt: ((dt >= 0) & (dt < _ACC_BOUT_S)).astype(float), 0.0, _ACC_BOUT_S)
        swing = np.sin(2 * np.pi * 1.5 * t_s)[:, None] * np.array([0.8, 0.5, 0.3])
        acc = _ACC_GRAVITY + envelope[:, None] * swing + 0.005 * self._rng_acc.standard_normal((t_s.size, 3))
        return acc


RATES_HZ = {"eeg": EEG_RATE_HZ, "ecg": ECG_RATE_HZ, "eda": EDA_RATE_HZ, "temp": TEMP_RATE_HZ, "acc": ACC_RATE_HZ}
CHANNELS = {"eeg": EEG_CHANNELS, "ecg": ("ECG",), "eda": ("EDA",), "temp": ("TEMP",), "acc": ("X", "Y", "Z")}


# --- the source --------------------------------------------------------------------------------

def _stream_seconds(text: str) -> dict[str, float]:
    """``"eeg:1680+acc:60"`` -> {"eeg": 1680.0, "acc": 60.0}; ValueError (one line) otherwise."""
    out: dict[str, float] = {}
    for item in (i for i in text.split("+") if i):
        stream, sep, seconds = item.partition(":")
        if not sep:
            raise ValueError(f"expected STREAM:SECONDS, got {item!r}")
        out[stream.strip()] = float(seconds)
    return out


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "seed": int,
    "start": float,
    "duration": float,
    "prime": float,
    "line_hz": float,
    "streams": lambda v: tuple(s for s in v.split("+") if s),
    "late": _stream_seconds,
}


class SimulatedWearable(Source):
    """EEG + ECG + EDA following the calm -> stressed -> amused -> calm script (see module doc)."""

    def __init__(self, seed: int = 42, start_unix: float | None = None, duration_s: float | None = None,
                 line_hz: float = 0.0, streams: tuple[str, ...] = DEFAULT_STREAMS, speed: float | None = 1.0,
                 prime_s: float = 0.0, late_s: dict[str, float] | None = None):
        super().__init__()
        bad = [s for s in streams if s not in STREAM_ORDER]
        if bad or not streams:
            raise SourceError(f"source 'simulate': unknown stream(s) {'+'.join(bad) or '(none)'} "
                              f"(known: {'+'.join(STREAM_ORDER)})")
        if duration_s is not None and not (0 < duration_s < math.inf):
            raise SourceError(f"source 'simulate': duration must be > 0 s and finite, got {duration_s:g}")
        if start_unix is not None and not limits.is_unix_time(start_unix):
            raise SourceError(f"source 'simulate': start={start_unix:g} is not a unix time in {limits.unix_range_text()}")
        if line_hz not in (0.0, 50.0, 60.0):
            raise SourceError(f"source 'simulate': line_hz must be 0, 50 or 60, got {line_hz:g}")
        if speed is not None and speed <= 0:
            raise SourceError(f"source 'simulate': speed must be > 0 (or None for as fast as possible), got {speed}")
        if not prime_s >= 0:
            raise SourceError(f"source 'simulate': prime must be >= 0 s, got {prime_s:g}")
        self.prime_s = float(prime_s)
        self.late_s = dict(late_s or {})
        for stream, join_s in self.late_s.items():
            if stream not in streams:
                raise SourceError(f"source 'simulate': late={stream}: not one of the streams produced "
                                  f"({'+'.join(s for s in STREAM_ORDER if s in streams)})")
            if not 0 <= join_s < math.inf:
                raise SourceError(f"source 'simulate': late={stream}: must join at >= 0 s and finite, got {join_s:g}")
        self.seed = seed
        self.start_unix = start_unix  # set when streaming starts if not given
        self.duration_s = duration_s
        self.line_hz = line_hz
        self.streams = tuple(s for s in STREAM_ORDER if s in streams)
        self.speed = speed
        self.spec = "simulate"

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> SimulatedWearable:
        opts = parse_options(target.lstrip("?"), _OPTIONS, f"simulate:{target}")
        return cls(seed=opts.get("seed", 42), start_unix=opts.get("start"), duration_s=opts.get("duration"),
                   line_hz=opts.get("line_hz", 0.0), streams=opts.get("streams", DEFAULT_STREAMS), speed=speed,
                   prime_s=opts.get("prime", 0.0), late_s=opts.get("late"))

    def phase_at_unix(self, ts_unix: float) -> str:
        """The scripted truth at a block's timestamp (after streaming started)."""
        if self.start_unix is None:
            raise RuntimeError("simulate: not started")
        return phase_at(ts_unix - self.start_unix)

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        if self.start_unix is None:
            self.start_unix = arrival_time()
        start_unix = self.start_unix
        signals = WearableSignals(self.seed, self.line_hz)
        self.primed_until_unix = start_unix + self.prime_s if self.prime_s > 0 else None
        self.stats.connected = True
        pacer = Pacer(self.speed, free_until_s=self.prime_s)
        chunk_index = 0
        log.info("simulate: streaming %s from %.3f (seed %d%s)", "+".join(self.streams), start_unix,
                 self.seed, f", {self.duration_s:g} s" if self.duration_s else "")
        while self.duration_s is None or chunk_index * CHUNK_S < self.duration_s:
            pending = []
            for order, stream in enumerate(self.streams):
                rate = RATES_HZ[stream]
                per_chunk = round(CHUNK_S * rate)
                i0 = chunk_index * per_chunk
                n = per_chunk
                if self.duration_s is not None:
                    n = min(n, int(np.ceil(self.duration_s * rate - 1e-9)) - i0)
                join_s = self.late_s.get(stream, 0.0)
                if n <= 0 or (i0 + per_chunk) / rate <= join_s:
                    continue  # ended, or not joined yet: nothing generated
                t_s = (i0 + np.arange(per_chunk)) / rate  # always generate whole chunks: same signals for any duration
                data = signals.chunk(stream, t_s)[:n].astype(np.float32)
                per_block = round(BLOCK_S[stream] * rate)
                for b0 in range(0, n, per_block):
                    if (i0 + b0) / rate < join_s - 1e-9:
                        continue  # the chunk the stream joins in: from its first whole block at or after join_s
                    part = data[b0:b0 + per_block]
                    end_s = (i0 + b0 + part.shape[0]) / rate
                    pending.append((end_s, order, i0 + b0, stream, part))
            pending.sort(key=lambda item: (item[0], item[1]))
            for end_s, _, first, stream, part in pending:
                await pacer.until(end_s)
                rate = RATES_HZ[stream]
                self.stats.samples[stream] = self.stats.samples.get(stream, 0) + part.shape[0]
                yield SampleBlock(stream=stream, ts_unix=start_unix + first / rate, rate_hz=rate, data=part,
                                  channels=CHANNELS[stream], source=self.spec)
            chunk_index += 1
        self.stats.connected = False
        log.info("simulate: reached the end (%g simulated s)", self.duration_s)
