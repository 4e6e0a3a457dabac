"""Device-to-host clock mapping (drift, jittery delays) and sequence-gap counting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import DeviceClock, SequenceCounter, ordered_start
from firmware_bridge.protocols.cyton import CytonDecoder, encode_cyton_packet


def simulate(skew_ppm: float, seconds: float, rng: np.random.Generator, packet_s: float = 0.05):
    """A device whose crystal runs skew_ppm fast relative to the host; receipts delayed 2-40 ms."""
    device_s = np.arange(0, seconds, packet_s) + 5000.0  # device epoch far from host epoch
    true_host = 1.7e9 + (device_s - 5000.0) * (1 - skew_ppm * 1e-6)
    delay = 0.002 + rng.exponential(0.01, len(device_s)).clip(max=0.04)
    return device_s, true_host, true_host + delay


def test_drift_is_corrected_to_within_a_few_ms():
    rng = np.random.default_rng(1)
    device_s, true_host, received = simulate(skew_ppm=200.0, seconds=120.0, rng=rng)
    clock = DeviceClock(window_s=30.0)
    errors = []
    for d, t, r in zip(device_s, true_host, received, strict=True):
        clock.observe(d, r)
        errors.append(clock.to_host(d) - t)
    errors = np.array(errors)
    late = errors[len(errors) // 2 :]  # after the window has filled
    # transport delay is >= 2 ms; the envelope should recover the true time within a few ms
    assert np.abs(late).max() < 0.006
    assert clock.skew == pytest.approx(-200e-6, abs=30e-6)
    # receive-time stamping would have been off by the jitter (mean ~12 ms)
    assert np.abs(late).mean() < np.mean(received - true_host) / 2


def test_without_skew_correction_error_would_grow():
    rng = np.random.default_rng(2)
    device_s, true_host, received = simulate(skew_ppm=500.0, seconds=300.0, rng=rng)
    clock = DeviceClock()
    for d, r in zip(device_s, received, strict=True):
        clock.observe(d, r)
    # a fixed offset from the first minutes would be 500 ppm * 300 s = 150 ms off by the end
    assert abs(clock.to_host(device_s[-1]) - true_host[-1]) < 0.006


def test_device_clock_going_backwards_restarts_the_fit():
    clock = DeviceClock()
    clock.observe(100.0, 1000.0)
    clock.observe(101.0, 1001.0)
    clock.observe(3.0, 1002.0)  # device rebooted
    assert clock.resets == 1
    assert clock.to_host(3.0) == pytest.approx(1002.0)


def test_sequence_counter_wraps_and_counts_gaps():
    seq = SequenceCounter(256)
    assert seq.step(254) == (0, 0)
    assert seq.step(255) == (0, 1)
    assert seq.step(2) == (2, 4)  # 0 and 1 lost across the wrap
    assert seq.step(2) == (-1, 4)  # repeat
    # ~2.1 s of silence at 250 packets/s (~530 packets, with host jitter): the counter alone says
    # 7 lost; the elapsed time says two whole wraps more
    assert seq.step(10, elapsed_packets=530.0) == (7 + 512, 4 + 8 + 512)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=50), st.integers(0, 255))
def test_vectorised_steps_agree_with_step(seqs, start):
    a, b = SequenceCounter(256), SequenceCounter(256)
    a.step(start)
    b.step(start)
    expected = [a.step(s) for s in seqs]
    keep, lost, index = b.steps(np.array(seqs))
    kept = [e for e in expected if e[0] >= 0]
    assert keep.tolist() == [e[0] >= 0 for e in expected]
    assert lost.tolist() == [e[0] for e in kept]
    assert index.tolist() == [e[1] for e in kept]
    assert a.index == b.index


def test_ordered_start_keeps_time_order_and_slews_back_gradually():
    assert ordered_start(10.0, None, 25, 250.0) == 10.0
    assert ordered_start(10.5, 10.0, 25, 250.0) == 10.5  # later: taken as mapped
    # mapped 20 ms too early: only 1 % of the 100 ms block (1 ms) back
    assert ordered_start(9.98, 10.0, 25, 250.0) == pytest.approx(10.0 - 0.25 / 250)
    # lost samples keep their room on the time line
    assert ordered_start(9.98, 10.0, 25, 250.0, lost=5) == pytest.approx(10.0 + 4.75 / 250)


def test_decoder_times_stay_increasing_when_the_first_packets_came_late():
    """Packet n is sampled at T0 + n / 250 and its read arrives 2 ms after its last packet; the
    first read arrived 80 ms late. Sample times must stay increasing while the estimate slews
    back (1 % of each block), and end on the true times."""
    dec = CytonDecoder()
    t0 = 100.0
    times = []
    for k in range(0, 2500, 5):
        packets = range(k, k + 5)
        chunk = b"".join(encode_cyton_packet(n & 0xFF, [n] * 8) for n in packets)
        received = t0 + packets[-1] / 250 + 0.002 + (0.08 if k == 0 else 0.0)
        for b in dec.feed(chunk, received).blocks:
            times.extend(b.ts_unix + np.arange(b.n) / 250.0)
    times = np.array(times)
    assert np.all(np.diff(times) > 0)
    assert times[0] - t0 > 0.05  # the first estimate carried the 80 ms delay...
    # ...and by the end sample i is back at T0 + i / 250 (+ the 2 ms minimum delay)
    assert abs(times[-1] - (t0 + (len(times) - 1) / 250)) < 0.003
