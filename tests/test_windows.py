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


def test_split_block_cuts_long_blocks_into_short_pieces_and_leaves_bad_ones_whole():
    from edge.windows import split_block

    block = SampleBlock("eeg", 1000.0, 256.0, np.arange(256 * 5 * 2, dtype=np.float32).reshape(-1, 2),
                        ("a", "b"), lost_samples=7)
    pieces = split_block(block, 1.0)
    assert [p.n for p in pieces] == [256] * 5 and [p.ts_unix for p in pieces] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    assert np.array_equal(np.concatenate([p.data for p in pieces]), block.data)
    assert [p.lost_samples for p in pieces] == [7, 0, 0, 0, 0]  # the gap came before the block, once
    events = SampleBlock("ibi", 0.0, 0.0, np.full((4, 1), 800.0, np.float32), ("IBI",),
                         times_unix=np.array([1000.0, 1000.8, 1002.5, 1002.9]))
    assert [list(p.times_unix) for p in split_block(events, 1.0)] == [[1000.0, 1000.8], [1002.5, 1002.9]]
    short = SampleBlock("eda", 1000.0, 4.0, np.ones((2, 1), np.float32))
    assert split_block(short, 1.0) == [short]
    for times in ([1000.0, np.nan, 1003.0], [1003.0, 1000.0, 1001.0]):  # the caller refuses these whole
        bad = SampleBlock("ibi", 0.0, 0.0, np.ones((3, 1), np.float32), ("IBI",), times_unix=np.array(times))
        assert split_block(bad, 1.0) == [bad]


def test_the_pipeline_reads_a_recording_the_same_whatever_its_block_size():
    """20-s blocks (a batching bridge, a file) give the windows 0.25/0.5-s blocks give: none loses its start."""
    import asyncio
    import dataclasses

    from edge.config import load_config
    from edge.daemon import Pipeline, load_estimators
    from firmware_bridge.simulate import SimulatedWearable

    async def simulated():
        return [b async for b in SimulatedWearable(seed=3, start_unix=1_700_000_000.0, duration_s=360, speed=None).blocks()]

    small = asyncio.run(simulated())
    large, pending = [], {}
    for b in small:
        parts = pending.setdefault(b.stream, [])
        parts.append(b)
        if parts[-1].end_unix - parts[0].ts_unix >= 20.0 - 1e-9:
            large.append(dataclasses.replace(parts[0], data=np.concatenate([p.data for p in parts])))
            pending[b.stream] = []
    assert max(b.end_unix - b.ts_unix for b in large) >= 20.0 - 1e-9

    def estimates(blocks):
        config = load_config(None, {"daemon.sources": ("simulate",), "daemon.speed": None})
        estimators, _ = load_estimators(config)
        pipe = Pipeline(config, estimators)
        seen = {m: [] for m in estimators}
        run = pipe._run_window

        def record(modality, end):
            run(modality, end)
            if pipe.latest[modality] and pipe.latest[modality][-1].ts_unix == end:
                e = pipe.latest[modality][-1]
                seen[modality].append((e.ts_unix, e.quality, e.stress, e.valence, e.arousal))

        pipe._run_window = record
        for b in blocks:
            pipe.ingest(b)
        pipe.finish()
        return seen

    a, b = estimates(small), estimates(large)
    assert len(a["eeg"]) > 150 and len(a["eda"]) > 10 and len(a["cardiac"]) > 10
    for modality in ("eeg", "eda", "cardiac"):
        assert [x[0] for x in a[modality]] == pytest.approx([x[0] for x in b[modality]]), modality
        assert np.allclose(np.array(a[modality], dtype=float)[:, 1:], np.array(b[modality], dtype=float)[:, 1:],
                           atol=1e-6, equal_nan=True), modality
