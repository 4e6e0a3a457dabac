"""The scripted wearable: its script, the physiology each phase shows, its blocks and its pacing.

The plausibility checks measure the signals with simple, independent methods written here (a
moving-average R-peak picker, rise counting for SCRs, a Hann-windowed periodogram for EEG
bands), not with the simulator's own parameters.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest

from edge.errors import SourceError
from firmware_bridge.devices import open_source
from firmware_bridge.simulate import CYCLE_S, PHASES, SimulatedWearable, phase_at

START = 1_700_000_000.0


def collect(spec: str, speed: float | None = None) -> tuple[SimulatedWearable, list]:
    async def run():
        source = open_source(spec, speed)
        return source, [b async for b in source.blocks()]

    return asyncio.run(run())


@pytest.fixture(scope="module")
def one_cycle():
    """Ten simulated minutes (one full script) of every stream, as arrays."""
    source, blocks = collect(f"simulate:seed=7,start={START:.0f},duration={CYCLE_S:.0f}")
    arrays = {s: np.concatenate([b.data for b in blocks if b.stream == s]) for s in ("eeg", "ecg", "eda")}
    return source, blocks, arrays


# segments well inside each phase (after the 25-s ramp), in simulated seconds
SEGMENTS = {"calm": (30.0, 180.0), "stressed": (210.0, 330.0), "amused": (360.0, 480.0)}


def test_phase_table_is_one_contiguous_ten_minute_cycle():
    assert PHASES[0].start_s == 0.0 and CYCLE_S == 600.0
    for a, b in itertools.pairwise(PHASES):
        assert a.end_s == b.start_s
    assert [p.name for p in PHASES] == ["calm", "stressed", "amused", "calm"]


@pytest.mark.parametrize("t_s, phase", [
    (0.0, "calm"), (179.9, "calm"), (180.0, "stressed"), (329.9, "stressed"), (330.0, "amused"),
    (479.9, "amused"), (480.0, "calm"), (599.9, "calm"), (600.0, "calm"), (780.0, "stressed"),
    (3600.0 + 400.0, "amused"),
])
def test_phase_at_follows_the_script_and_repeats(t_s, phase):
    assert phase_at(t_s) == phase


def test_source_reports_the_truth_at_block_times(one_cycle):
    source, _, _ = one_cycle
    assert source.start_unix == START
    assert source.phase_at_unix(START + 200.0) == "stressed"


def test_blocks_are_continuous_per_stream_and_interleaved_in_time(one_cycle):
    _, blocks, arrays = one_cycle
    rates = {"eeg": 256.0, "ecg": 130.0, "eda": 4.0}
    for stream, rate in rates.items():
        mine = [b for b in blocks if b.stream == stream]
        assert mine[0].ts_unix == START
        for prev, nxt in itertools.pairwise(mine):
            assert nxt.ts_unix == pytest.approx(prev.end_unix, abs=1e-6)  # no gap, no overlap
            assert nxt.rate_hz == rate
        assert 0.25 <= mine[1].n / rate <= 0.5  # block length
        assert len(arrays[stream]) == int(CYCLE_S * rate)
    ends = [b.end_unix for b in blocks]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(ends))
    assert blocks[0].channels == ("TP9", "AF7", "AF8", "TP10")
    assert arrays["eeg"].shape[1] == 4 and np.isfinite(arrays["eeg"]).all()


def r_peaks(ecg_uv: np.ndarray, rate_hz: float) -> np.ndarray:
    """A plain R-peak picker: remove the baseline, take local maxima above half the typical R height."""
    k = int(0.25 * rate_hz)
    detrended = ecg_uv - np.convolve(ecg_uv, np.ones(k) / k, mode="same")
    thr = 0.5 * np.percentile(detrended, 99.5)
    cand = np.flatnonzero((detrended[1:-1] > thr) & (detrended[1:-1] >= detrended[:-2])
                          & (detrended[1:-1] > detrended[2:])) + 1
    peaks = [cand[0]]
    for c in cand[1:]:
        if c - peaks[-1] > 0.3 * rate_hz:
            peaks.append(c)
        elif detrended[c] > detrended[peaks[-1]]:
            peaks[-1] = c
    return np.asarray(peaks)


def test_ecg_heart_rate_and_hrv_follow_the_phases(one_cycle):
    _, _, arrays = one_cycle
    rate = 130.0
    beats_s = r_peaks(arrays["ecg"][:, 0].astype(np.float64), rate) / rate
    ibi_ms = np.diff(beats_s) * 1000.0
    at = beats_s[1:]
    hr, rmssd = {}, {}
    for phase, (a, b) in SEGMENTS.items():
        x = ibi_ms[(at >= a) & (at < b)]
        assert x.min() > 400 and x.max() < 1300  # no missed or doubled beats
        hr[phase] = 60000.0 / x.mean()
        rmssd[phase] = float(np.sqrt(np.mean(np.diff(x) ** 2)))
    assert 58 <= hr["calm"] <= 72
    assert 86 <= hr["stressed"] <= 104
    assert 72 <= hr["amused"] <= 88
    assert rmssd["calm"] > 28 and rmssd["stressed"] < 18
    assert rmssd["calm"] > rmssd["amused"] > rmssd["stressed"]


def scr_count(eda_us: np.ndarray, rate_hz: float, min_slope_us_per_s: float = 0.04) -> int:
    """Count SCR onsets: peaks of the (1-s smoothed) rate of rise, at least 2 s apart.

    The slope threshold sits above what the tonic level does even when it climbs under stress
    (< 0.02 µS/s), and below that of the smallest response (0.05 µS, ~0.06 µS/s), so a
    drifting baseline does not count as responses and every response does.
    """
    k = int(rate_hz)
    smooth = np.convolve(eda_us, np.ones(k) / k, mode="same")
    slope = np.gradient(smooth) * rate_hz
    peaks = np.flatnonzero((slope[1:-1] > min_slope_us_per_s) & (slope[1:-1] >= slope[:-2])
                           & (slope[1:-1] > slope[2:])) + 1
    kept: list[int] = []
    for p in peaks:
        if not kept or p - kept[-1] >= 2 * rate_hz:
            kept.append(p)
    return len(kept)


def test_eda_level_and_responses_rise_under_stress(one_cycle):
    _, _, arrays = one_cycle
    rate = 4.0
    eda = arrays["eda"][:, 0].astype(np.float64)
    assert eda.min() > 0 and eda.max() < 20  # µS, a plausible wrist range
    per_min, level = {}, {}
    for phase, (a, b) in SEGMENTS.items():
        seg = eda[int(a * rate):int(b * rate)]
        per_min[phase] = scr_count(seg, rate) / ((b - a) / 60.0)
        level[phase] = seg.mean()
    assert per_min["stressed"] > 3 * max(per_min["calm"], 0.5)
    assert per_min["stressed"] > per_min["amused"]
    assert level["stressed"] > level["calm"] + 0.5
    # tonic level drifts up during the stressed phase
    assert eda[int(320 * rate):int(330 * rate)].mean() > eda[int(200 * rate):int(210 * rate)].mean()


def band_power(eeg_uv: np.ndarray, rate_hz: float, lo: float, hi: float) -> np.ndarray:
    n = int(2 * rate_hz)
    segs = eeg_uv[: len(eeg_uv) // n * n].reshape(-1, n, eeg_uv.shape[1])
    segs = segs - segs.mean(axis=1, keepdims=True)
    spec = np.abs(np.fft.rfft(segs * np.hanning(n)[None, :, None], axis=1)) ** 2
    f = np.fft.rfftfreq(n, 1 / rate_hz)
    return spec[:, (f >= lo) & (f <= hi)].sum(axis=1).mean(axis=0)


def test_eeg_alpha_asymmetry_encodes_valence_and_beta_arousal(one_cycle):
    _, _, arrays = one_cycle
    rate = 256.0
    eeg = arrays["eeg"].astype(np.float64)
    faa, alpha, beta = {}, {}, {}
    for phase, (a, b) in SEGMENTS.items():
        seg = eeg[int(a * rate):int(b * rate)]
        pa = band_power(seg, rate, 8, 12)
        pb = band_power(seg, rate, 13, 30)
        faa[phase] = float(np.log(pa[2]) - np.log(pa[1]))  # ln AF8 - ln AF7
        alpha[phase] = pa.mean()
        beta[phase] = pb[[0, 3]].mean()  # temporal sites: no blink leakage
    assert faa["amused"] > 0.1
    assert faa["stressed"] < -0.05
    assert faa["amused"] - faa["stressed"] > 0.25
    assert alpha["calm"] > 1.5 * alpha["stressed"]
    assert beta["stressed"] > 1.3 * beta["calm"] and beta["amused"] > 1.2 * beta["calm"]
    # amplitudes in the range of a dry-electrode headband (µV)
    temporal_rms = eeg[:, [0, 3]].std(axis=0)
    assert np.all((temporal_rms > 8) & (temporal_rms < 40))
    # blinks show on the frontal electrodes only
    assert eeg[:, 1].max() > 80 and eeg[:, 0].max() < eeg[:, 1].max() / 2


def test_line_noise_option_adds_a_50_hz_peak():
    _, blocks = collect("simulate:seed=1,duration=10,start=0,line_hz=50,streams=eeg")
    eeg = np.concatenate([b.data for b in blocks]).astype(np.float64)
    assert band_power(eeg, 256.0, 49, 51)[0] > 20 * band_power(eeg, 256.0, 44, 46)[0]
    _, clean = collect("simulate:seed=1,duration=10,start=0,streams=eeg")
    eeg0 = np.concatenate([b.data for b in clean]).astype(np.float64)
    assert band_power(eeg0, 256.0, 49, 51)[0] < 3 * band_power(eeg0, 256.0, 44, 46)[0]


def test_duration_ends_the_source_with_the_exact_number_of_samples():
    source, blocks = collect("simulate:duration=1.3,start=0")
    counts = {s: sum(b.n for b in blocks if b.stream == s) for s in ("eeg", "ecg", "eda")}
    assert counts == {"eeg": 333, "ecg": 169, "eda": 6}  # ceil(1.3 s x rate)
    assert source.stats.samples == counts
    assert max(b.end_unix for b in blocks) <= 1.3 + 1 / 4.0


def test_same_seed_same_signals_other_seed_other_signals():
    _, a = collect("simulate:seed=5,duration=2,start=0")
    _, b = collect("simulate:seed=5,duration=2,start=0")
    _, c = collect("simulate:seed=6,duration=2,start=0")
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].data, c[0].data)


def test_a_short_run_is_the_start_of_a_long_run():
    _, short = collect("simulate:seed=9,duration=3,start=0")
    _, long = collect("simulate:seed=9,duration=25,start=0")
    assert len(long) > len(short)
    assert all(np.array_equal(x.data, y.data) and x.ts_unix == y.ts_unix
               for x, y in zip(short, long[:len(short)], strict=True))


def test_streams_option_selects_streams():
    _, blocks = collect("simulate:duration=2,streams=ecg+eda")
    assert {b.stream for b in blocks} == {"ecg", "eda"}


def test_late_stream_joins_at_its_time_and_leaves_the_others_as_they_were():
    """``late=eeg:12.5``: no eeg before 12.5 simulated s, eeg from then on without a gap; ecg/eda block for block as without it."""
    _, blocks = collect("simulate:seed=3,duration=30,start=0,late=eeg:12.5")
    _, plain = collect("simulate:seed=3,duration=30,start=0")
    eeg = [b for b in blocks if b.stream == "eeg"]
    assert eeg[0].ts_unix == 12.5 and sum(b.n for b in eeg) == (30.0 - 12.5) * 256
    assert all(b.ts_unix == a.end_unix for a, b in zip(eeg, eeg[1:]))
    others = [b for b in blocks if b.stream != "eeg"]
    assert [(b.stream, b.ts_unix) for b in others] == [(b.stream, b.ts_unix) for b in plain if b.stream != "eeg"]
    assert all(np.array_equal(x.data, y.data) for x, y in zip(others, [b for b in plain if b.stream != "eeg"]))
    assert 11.5 < np.std(np.concatenate([b.data for b in eeg])) < 60.0  # a live headband, not zeros


def test_prime_marks_the_primed_stretch_as_the_sources_past():
    source, _ = collect(f"simulate:start={START},duration=2,prime=1.5")
    assert source.primed_until_unix == START + 1.5
    source, _ = collect(f"simulate:start={START},duration=2")
    assert source.primed_until_unix is None


def test_start_defaults_to_the_wall_clock():
    before = time.time()
    _, blocks = collect("simulate:duration=1")
    assert before - 1 <= blocks[0].ts_unix <= time.time()


def collect_for(spec: str, speed: float, wall_s: float) -> list:
    """The blocks a paced source delivers in ``wall_s`` seconds of wall time."""
    async def run():
        source = open_source(spec, speed)
        got = []

        async def consume():
            async for block in source.blocks():
                got.append(block)

        task = asyncio.create_task(consume())
        await asyncio.sleep(wall_s)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return got

    return asyncio.run(run())


def test_speed_one_paces_in_real_time():
    got = collect_for("simulate:start=0", 1.0, 0.6)
    delivered_s = max(b.end_unix for b in got if b.stream == "eeg")
    assert 0.4 <= delivered_s <= 0.8
    assert {b.stream for b in got} >= {"eeg", "ecg", "eda"}


def test_prime_runs_the_first_seconds_at_full_speed_then_keeps_to_speed():
    """``prime=S``: the script's first S simulated seconds come at once (the demo's head start), then real time."""
    got = collect_for(f"simulate:start={START},prime=60", 1.0, 1.5)
    delivered_s = max(b.end_unix for b in got if b.stream == "eeg") - START
    assert 60.0 <= delivered_s <= 61.6  # all 60 primed seconds, then at most 1.5 s more at speed 1
    with pytest.raises(SourceError, match="prime"):
        open_source("simulate:prime=-1", 1.0)


def test_speed_none_runs_fast_and_lets_other_tasks_run():
    async def run():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        tick_task = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        n = 0
        async for _ in open_source("simulate:duration=120,start=0", None).blocks():
            n += 1
        elapsed = time.perf_counter() - t0
        tick_task.cancel()
        return n, elapsed, ticks

    n, elapsed, ticks = asyncio.run(run())
    assert n == 120 * (4 + 2 + 2)  # blocks: EEG 0.25 s, ECG and EDA 0.5 s
    assert elapsed < 3.0  # two simulated minutes; ~0.1 s on a laptop-class core
    assert ticks > n / 32  # the generator yielded to the event loop regularly


@pytest.mark.parametrize("spec, words", [
    ("simulate:colour=red", "unknown option"),
    ("simulate:seed=abc", "seed"),
    ("simulate:streams=eeg+gsr", "gsr"),
    ("simulate:line_hz=55", "line_hz"),
    ("simulate:duration=-1", "duration"),
    ("simulate:late=eeg", "STREAM:SECONDS"),
    ("simulate:late=eeg:soon", "bad value for late"),
    ("simulate:late=eeg:-5", "late=eeg: must join at >= 0 s"),
    ("simulate:late=eeg:inf", "late=eeg: must join at >= 0 s"),
    ("simulate:streams=ecg,late=eeg:60", "late=eeg: not one of the streams"),
])
def test_bad_options_are_one_line_errors(spec, words):
    with pytest.raises(SourceError) as err:
        open_source(spec, None)
    assert words in str(err.value) and "\n" not in str(err.value)
