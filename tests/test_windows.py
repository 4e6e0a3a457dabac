"""Ring buffers and sliding windows on the source clock."""

from __future__ import annotations

import numpy as np
import pytest

from edge.stream import SampleBlock
from edge.windows import StreamBuffer, WindowClock, WindowSpec, block_times, buffer_capacity


def test_buffer_is_bounded_and_keeps_the_newest_samples():
    buf = StreamBuffer(capacity=100, n_channels=2)
    nbytes = buf.nbytes
    t = 0
    for _ in range(57):  # many wraps with odd block sizes
        n = 37
        times = np.arange(t, t + n, dtype=np.float64)
        buf.append(times, np.stack([times, -times], axis=1))
        t += n
    assert len(buf) == 100 and buf.nbytes == nbytes
    times, values = buf.window(-1e9, 1e9)
    assert np.array_equal(times, np.arange(t - 100, t))
    assert np.array_equal(values[:, 0], times.astype(np.float32)) and np.array_equal(values[:, 1], -times.astype(np.float32))
    # a block bigger than the buffer keeps only its tail
    buf.append(np.arange(1000, 1300, dtype=np.float64), np.zeros((300, 2)))
    times, _ = buf.window(-1e9, 1e9)
    assert times[0] == 1200 and len(times) == 100


def test_window_slice_is_half_open_on_times():
    buf = StreamBuffer(capacity=1000, n_channels=1)
    block = SampleBlock("eda", ts_unix=1000.0, rate_hz=4.0, data=np.arange(400, dtype=np.float32)[:, None])
    buf.append_block(block)
    times, values = buf.window(1010.0, 1020.0)
    assert len(times) == 40 and times[0] == 1010.0 and times[-1] == pytest.approx(1019.75)
    assert values[0, 0] == 40


def test_block_times_regular_and_irregular():
    regular = SampleBlock("ecg", ts_unix=5.0, rate_hz=100.0, data=np.zeros((3, 1)))
    assert np.allclose(block_times(regular), [5.0, 5.01, 5.02])
    ibi = SampleBlock("ibi", ts_unix=5.0, rate_hz=0.0, data=np.array([[800.0], [810.0]]), times_unix=np.array([5.8, 6.61]))
    assert np.allclose(block_times(ibi), [5.8, 6.61])


def test_window_clock_emits_on_the_source_clock_with_hop_and_length():
    clock = WindowClock(WindowSpec(length_s=60.0, hop_s=5.0))
    t0 = 1_600_000_000.0
    clock.start(t0)
    assert clock.advance(t0 + 59.9) == []
    assert clock.advance(t0 + 60.0) == [t0 + 60.0]
    assert clock.advance(t0 + 72.0) == [t0 + 65.0, t0 + 70.0]
    assert clock.advance(t0 + 72.5) == []
    ends = clock.advance(t0 + 3600.0)
    assert ends == [pytest.approx(t0 + 75.0 + 5 * i) for i in range(len(ends))]
    assert np.allclose(np.diff(ends), 5.0)


def test_window_clock_skips_long_gaps_and_emits_a_final_partial_window():
    clock = WindowClock(WindowSpec(length_s=10.0, hop_s=2.0))
    clock.start(0.0)
    assert clock.advance(10.0) == [10.0]
    clock.skip_gap(990.0)  # device away for 16 minutes: no burst of empty windows
    ends = clock.advance(1000.0)
    assert 1 <= len(ends) <= 10.0 / 2.0 + 1 and ends[-1] == pytest.approx(1000.0)
    assert clock.final(1001.5) == pytest.approx(1001.5)  # tail of the recording
    assert clock.final(1001.6) is None  # nothing new past the last end


def test_buffer_capacity_covers_a_window():
    assert buffer_capacity(256.0, 4.0) >= 256 * 4
    with pytest.raises(ValueError):
        WindowSpec(0.0, 1.0)


def test_sources_on_different_clocks_do_not_stall_or_flood_fusion():
    """A replay from 2017 beside a live stream: fusion skips the empty decades instead of looping over them."""
    import time

    from edge.config import Config
    from edge.daemon import Pipeline
    from edge.fusion import ModalityEstimate

    class ConstantEda:
        modality = "eda"
        version = "t"
        from edge.windows import WindowSpec as _W
        window = _W(10.0, 5.0)

        def estimate(self, end, windows):
            return ModalityEstimate("eda", end, {"stress": 0.5}, stress=0.5, confidence=0.5, quality=1.0,
                                    window_s=10.0, hop_s=5.0)

    class ConstantEeg(ConstantEda):
        modality = "eeg"

        def estimate(self, end, windows):
            return ModalityEstimate("eeg", end, {"valence": 0.1, "arousal": 0.1}, valence=0.1, arousal=0.1,
                                    confidence=0.5, quality=1.0, window_s=10.0, hop_s=5.0)

    pipe = Pipeline(Config(), {"eda": ConstantEda(), "eeg": ConstantEeg()}, {"eda", "eeg"})
    old, now = 1_500_000_000.0, 1_800_000_000.0
    states = []
    t0 = time.monotonic()
    for i in range(40):
        states += pipe.ingest(SampleBlock("eda", old + i, 4.0, np.ones((4, 1), np.float32)))
        states += pipe.ingest(SampleBlock("eeg", now + i, 4.0, np.ones((4, 1), np.float32)))
    assert time.monotonic() - t0 < 2.0
    assert 1 <= len(states) <= 10
    late = states[-1].payload
    assert late["ts"] > now and "eeg" in late["modalities"]
