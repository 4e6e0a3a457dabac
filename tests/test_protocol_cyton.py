"""OpenBCI Cyton decoder on packets built by hand to the documented 33-byte layout.

Layout and scale: OpenBCI "Cyton Data Format"; brainflow-dev/brainflow
src/board_controller/openbci/cyton.cpp (read_thread) and inc/cyton.h (eeg_scale = 4.5 / 24 / (2^23 - 1) * 1e6).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.protocols.cyton import (
    DEFAULT_MONTAGE,
    RATE_HZ,
    CytonDecoder,
    encode_cyton_packet,
    uv_per_count,
)

SCALE = 4.5 / 24 / (2**23 - 1) * 1e6  # µV per count at gain 24, written out from the documentation


def hand_packet(sample_number: int, channel_bytes: list[bytes], footer: int = 0xC0) -> bytes:
    """A packet assembled byte by byte, independent of the encoder under test."""
    assert all(len(b) == 3 for b in channel_bytes) and len(channel_bytes) == 8
    return bytes([0xA0, sample_number]) + b"".join(channel_bytes) + bytes(6) + bytes([footer])


def test_scale_matches_documentation():
    assert uv_per_count(24) == pytest.approx(SCALE, rel=1e-12)
    assert SCALE == pytest.approx(0.02235, abs=1e-5)
    assert uv_per_count(1) == pytest.approx(24 * SCALE)


def test_hand_built_packet_decodes_to_signed_microvolts():
    channels = [
        b"\x00\x00\x01",  # +1 count
        b"\xff\xff\xff",  # -1 count (24-bit two's complement)
        b"\x7f\xff\xff",  # +8388607, full scale positive
        b"\x80\x00\x00",  # -8388608, full scale negative
        b"\x00\x00\x00",
        b"\x12\x34\x56",  # 1193046
        b"\xed\xcb\xaa",  # -1193046
        b"\x00\x01\x00",  # 256
    ]
    expected_counts = np.array([1, -1, 8388607, -8388608, 0, 1193046, -1193046, 256])
    dec = CytonDecoder()
    pkt = hand_packet(7, channels)
    res = dec.feed(pkt + hand_packet(8, channels), host_s=1000.0)
    assert res.decode_errors == 0 and res.lost_packets == 0
    block = res.blocks[0]
    assert block.stream == "eeg" and block.rate_hz == RATE_HZ
    assert block.channels == DEFAULT_MONTAGE
    assert block.data.shape == (2, 8)
    np.testing.assert_allclose(block.data[0], expected_counts * SCALE, rtol=1e-12)
    # full scale at gain 24 is ±4.5 V / 24 = ±187500 µV
    assert block.data[0, 2] == pytest.approx(187500.0, rel=1e-6)
    assert block.data[0, 3] == pytest.approx(-187500.0, rel=1e-6)


def test_encoder_agrees_with_hand_layout():
    counts = [1, -1, 8388607, -8388608, 0, 1193046, -1193046, 256]
    chans = [
        b"\x00\x00\x01",
        b"\xff\xff\xff",
        b"\x7f\xff\xff",
        b"\x80\x00\x00",
        b"\x00\x00\x00",
        b"\x12\x34\x56",
        b"\xed\xcb\xaa",
        b"\x00\x01\x00",
    ]
    assert encode_cyton_packet(200, counts) == hand_packet(200, chans)


def packets(numbers, value=100):
    return b"".join(encode_cyton_packet(n & 0xFF, [value + n] * 8) for n in numbers)


def test_resynchronises_after_garbage_and_partial_packet():
    dec = CytonDecoder()
    garbage = (
        b"\x13\xa0\x00\xc0 OpenBCI\xa0" + packets([0])[5:]
    )  # a stray 0xA0 and a tail of a packet
    res = dec.feed(garbage + packets(range(1, 6)), host_s=50.0)
    assert res.samples == 5
    assert res.decode_errors >= 1
    np.testing.assert_allclose(res.blocks[0].data[:, 0], (100 + np.arange(1, 6)) * SCALE)


def test_lost_packets_from_sample_number_jump_and_wrap():
    dec = CytonDecoder()
    res = dec.feed(packets([250, 251, 252]), 10.0)
    # 253 and 254 lost; 255 -> 0 wraps without loss
    res2 = dec.feed(packets([255, 256, 257]), 10.024)
    assert res.lost_packets == 0
    assert res2.lost_packets == 2
    assert res2.blocks[0].lost_samples == 2
    assert res2.samples == 3
    # the block after the gap starts 5 sample periods (3 received + 2 lost) after the first
    assert res2.blocks[0].ts_unix - res.blocks[0].ts_unix == pytest.approx(5 / RATE_HZ, abs=1e-9)


def test_gap_inside_one_chunk_splits_blocks():
    dec = CytonDecoder()
    res = dec.feed(packets([0, 1, 2, 5, 6]), 1.0)
    assert [b.n for b in res.blocks] == [3, 2]
    assert [b.lost_samples for b in res.blocks] == [0, 2]
    assert res.blocks[1].ts_unix - res.blocks[0].ts_unix == pytest.approx(5 / RATE_HZ)


def test_long_outage_counts_whole_counter_wraps_from_host_time():
    dec = CytonDecoder()
    dec.feed(packets([0, 1]), 100.0)
    # 2 s of silence at 250 Hz = 500 packets; the counter alone would say 9 - 1 - 1 = 7 lost
    res = dec.feed(packets([510, 511]), 102.04)
    assert res.lost_packets == 508
    assert res.blocks[0].lost_samples == 508


def test_packet_split_across_reads():
    dec = CytonDecoder()
    data = packets(range(4))
    got = []
    for i in range(0, len(data), 7):
        got += dec.feed(data[i : i + 7], 1.0 + i * 1e-4).blocks
    got += dec.feed(packets([4]), 1.1).blocks
    assert sum(b.n for b in got) == 5


def test_corrupt_footer_is_an_error_not_a_sample():
    dec = CytonDecoder()
    good = packets([0, 1])
    bad = bytearray(packets([2]))
    bad[-1] = 0x17
    res = dec.feed(good + bytes(bad) + packets([3, 4]), 5.0)
    assert res.samples == 4
    assert res.lost_packets == 1
    assert res.decode_errors >= 1


def test_custom_montage_and_gain():
    names = ("F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2")
    dec = CytonDecoder(channels=names, gain=8)
    res = dec.feed(packets([0, 1], value=1000), 1.0)
    assert res.blocks[0].channels == names
    assert res.blocks[0].data[0, 0] == pytest.approx(1000 * 4.5 / 8 / (2**23 - 1) * 1e6)
    with pytest.raises(ValueError):
        CytonDecoder(channels=("Fp1",))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=60))
def test_fuzz_random_bytes_never_raise(data, step):
    dec = CytonDecoder()
    for i in range(0, len(data), step):
        res = dec.feed(data[i : i + step], 1.0 + i)
        for b in res.blocks:
            assert b.data.shape[1] == 8 and np.isfinite(b.data).all()


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200),
    st.lists(st.integers(-(2**23), 2**23 - 1), min_size=8, max_size=8),
    st.integers(0, 255),
)
def test_fuzz_valid_packets_after_garbage_decode(garbage, counts, number):
    dec = CytonDecoder()
    dec.feed(garbage, 1.0)
    tail = b"".join(encode_cyton_packet((number + k) & 0xFF, counts) for k in range(3))
    res = dec.feed(tail, 2.0)
    assert res.samples >= 2  # the last two always decode: confirmed by headers / expected number
    np.testing.assert_allclose(res.blocks[-1].data[-1], np.array(counts) * SCALE, rtol=1e-12)
