"""Framed protocol (firmware_bridge/PROTOCOL.md): COBS, CRC-16/CCITT-FALSE, frame layout, decoder.

COBS vectors: the worked examples of the Wikipedia article "Consistent Overhead Byte Stuffing"
(after Cheshire & Baker 1999). CRC check value: the CRC catalogue's CRC-16/CCITT-FALSE
("123456789" -> 0x29B1).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.protocols.cobs import cobs_decode, cobs_encode
from firmware_bridge.protocols.framed import FramedDecoder, crc16_ccitt_false, encode_frame

COBS_VECTORS = [
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize("raw,encoded", COBS_VECTORS)
def test_cobs_wikipedia_examples(raw, encoded):
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


def test_cobs_rejects_invalid():
    assert cobs_decode(b"\x05\x11\x22") is None  # code runs past the end
    assert cobs_decode(b"\x00") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_cobs_round_trip_has_no_zero(data):
    enc = cobs_encode(data)
    assert b"\x00" not in enc and cobs_decode(enc) == data


def test_crc_check_value():
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_frame_layout_by_hand():
    wire = encode_frame(
        "eda",
        [100, -2],
        sequence=7,
        device_time_us=1_000_000,
        rate_hz=4.0,
        sample_format="int24",
        scale=0.01,
    )
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    frame = cobs_decode(wire[:-1])
    header = struct.pack("<BBBHQfBf", 1, 1, 1, 7, 1_000_000, 4.0, 1, 0.01)
    body = header + b"\x64\x00\x00" + b"\xfe\xff\xff"
    assert frame == body + crc16_ccitt_false(body).to_bytes(2, "little")


def test_decode_regular_multichannel_stream_with_scale():
    dec = FramedDecoder(channels={"eeg": ("F3", "F4")})
    samples = np.array([[1, -1], [2, -2], [3, -3]])
    res = dec.feed(encode_frame("eeg", samples, 0, 5_000_000, 250.0, "int16", 0.5), 100.0)
    b = res.blocks[0]
    assert (b.stream, b.rate_hz, b.channels) == ("eeg", 250.0, ("F3", "F4"))
    np.testing.assert_allclose(b.data, samples * 0.5)
    assert b.ts_unix + 2 / 250 == pytest.approx(100.0)  # the last sample maps to the receipt


def test_float32_and_int32_formats():
    dec = FramedDecoder()
    r1 = dec.feed(encode_frame("bvp", [0.25, -1.5], 0, 0, 64.0, "float32"), 1.0)
    r2 = dec.feed(encode_frame("ecg", [2**30, -(2**30)], 0, 0, 130.0, "int32", 1.0), 1.0)
    np.testing.assert_allclose(r1.blocks[0].data[:, 0], [0.25, -1.5])
    np.testing.assert_allclose(r2.blocks[0].data[:, 0], [2**30, -(2**30)])


def test_ibi_event_stream_times_follow_the_intervals():
    dec = FramedDecoder()
    res = dec.feed(encode_frame("ibi", [800, 810, 790], 0, 60_000_000, 0.0), 500.0)
    b = res.blocks[0]
    assert b.rate_hz == 0.0 and b.channels == ("ibi_ms",)
    np.testing.assert_allclose(np.diff(b.times_unix), [0.81, 0.79])
    assert b.times_unix[-1] == pytest.approx(500.0)


def test_lost_frames_are_counted_and_samples_reported_not_filled():
    dec = FramedDecoder()
    frames = [
        encode_frame("eda", [1, 2, 3, 4], k, 1_000_000 + k * 1_000_000, 4.0) for k in range(5)
    ]
    host = 10.0
    got = []
    for k in (0, 1, 4):
        got += dec.feed(frames[k], host + k).blocks
    assert [b.lost_samples for b in got] == [0, 0, 8]
    assert sum(b.n for b in got) == 12
    assert got[2].ts_unix - got[1].ts_unix == pytest.approx(3.0)


def test_corrupt_frames_and_garbage_are_skipped_with_counts():
    dec = FramedDecoder()
    good = encode_frame("ecg", list(range(10)), 0, 0, 250.0)
    bad = bytearray(encode_frame("ecg", list(range(10)), 1, 40_000, 250.0))
    bad[8] ^= 0x10  # a bit error: CRC must catch it
    res = dec.feed(
        b"\x00\x17garbage\x00" + good + bytes(bad) + encode_frame("ecg", [5], 2, 80_000, 250.0), 1.0
    )
    assert res.samples == 11
    assert res.decode_errors == 2
    assert any("CRC" in e for e in res.errors)
    assert res.lost_packets == 1


def test_wrong_version_and_unknown_stream_are_refused():
    dec = FramedDecoder()
    assert "version 2" in dec.feed(encode_frame("eda", [1], 0, 0, 4.0, version=2), 1.0).errors[0]
    frame = bytearray(cobs_decode(encode_frame("eda", [1], 0, 0, 4.0)[:-1]))
    frame[1] = 99
    frame[-2:] = crc16_ccitt_false(bytes(frame[:-2])).to_bytes(2, "little")
    assert "unknown stream id 99" in dec.feed(cobs_encode(bytes(frame)) + b"\x00", 1.0).errors[0]


def test_overlong_run_without_delimiter_is_dropped():
    dec = FramedDecoder()
    res = dec.feed(b"\x01" * 3000, 1.0)
    assert res.decode_errors == 1
    res = dec.feed(b"\x01" * 10 + b"\x00" + encode_frame("eda", [7], 0, 0, 4.0), 2.0)
    assert res.samples == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 80))
def test_fuzz_random_bytes_never_raise(data, step):
    dec = FramedDecoder()
    for i in range(0, len(data), step):
        for b in dec.feed(data[i : i + step], 1.0 + i).blocks:
            assert b.n >= 1 and b.data.shape[1] >= 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(-32768, 32767), min_size=1, max_size=40))
def test_fuzz_valid_frame_after_garbage_decodes(garbage, values):
    dec = FramedDecoder()
    dec.feed(garbage, 1.0)
    res = dec.feed(b"\x00" + encode_frame("ecg", values, 9, 123_456, 250.0), 2.0)
    np.testing.assert_allclose(res.blocks[-1].data[:, 0], values)
