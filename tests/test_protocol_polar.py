"""Polar H10 PMD decoder on the SDK's own ECG test vector.

Vector: polarofficial/polar-ble-sdk sources/iOS/ios-communications/Tests/iOSCommunicationsTests/
EcgDataTest.swift (testProcessRawEcgDataType0): header 00 | 00 94 35 77 00 00 00 00 (2 000 000 000
ns) | 00, samples 02 80 FF -> -32766 µV, 02 80 00 -> 32770 µV; timestamp is the last sample's.
Control point and start command: Polar Measurement Data specification (technical_documentation).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.protocols.polar_pmd import (
    ECG_RATE_HZ,
    START_ECG,
    PolarEcgDecoder,
    encode_ecg_frame,
    parse_control_response,
)

SDK_FRAME = bytes(
    [0x00, 0x00, 0x94, 0x35, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0xFF, 0x02, 0x80, 0x00]
)


def test_sdk_vector_type0_samples_in_microvolts():
    dec = PolarEcgDecoder()
    res = dec.feed(SDK_FRAME, host_s=1000.0)
    assert res.decode_errors == 0
    block = res.blocks[0]
    assert block.stream == "ecg" and block.rate_hz == ECG_RATE_HZ == 130.0
    assert block.data[:, 0].tolist() == [-32766.0, 32770.0]
    # the timestamp is of the last sample: with one observation, the last sample maps to receipt
    assert block.ts_unix + 1 / 130 == pytest.approx(1000.0)


def test_encoder_reproduces_sdk_vector():
    assert encode_ecg_frame(2_000_000_000, [-32766, 32770]) == SDK_FRAME


def test_start_command_bytes():
    assert START_ECG == bytes([0x02, 0x00, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
    assert int.from_bytes(START_ECG[4:6], "little") == 130
    assert int.from_bytes(START_ECG[8:10], "little") == 14


def test_control_point_responses():
    ok = parse_control_response(bytes.fromhex("f0 02 00 00 00"))
    assert ok is not None and ok.ok and ok.op == 2 and ok.measurement_type == 0
    busy = parse_control_response(bytes.fromhex("f0 02 00 06 00"))
    assert busy.ok and busy.status_name == "already in state"
    charging = parse_control_response(bytes.fromhex("f0 02 00 0d"))
    assert not charging.ok and charging.status_name == "device in charger"
    assert parse_control_response(bytes.fromhex("0f 05 00")) is None  # feature read, not a response


def test_gap_from_timestamps_is_reported():
    dec = PolarEcgDecoder()
    period_ns = 1e9 / 130
    t_last = 10**12
    r1 = dec.feed(encode_ecg_frame(t_last, list(range(73))), 50.0)
    # the next frame should end 73 samples later; it ends 146 later: one frame of 73 lost
    r2 = dec.feed(encode_ecg_frame(int(t_last + 146 * period_ns), list(range(73))), 51.2)
    assert r1.blocks[0].lost_samples == 0
    assert r2.blocks[0].lost_samples == 73
    assert r2.lost_packets == 1
    assert r2.blocks[0].ts_unix - r1.blocks[0].ts_unix == pytest.approx(146 / 130, abs=1e-6)


def test_compressed_and_foreign_frames_are_skipped_with_reasons():
    dec = PolarEcgDecoder()
    compressed = SDK_FRAME[:9] + b"\x80" + bytes(20)
    res = dec.feed(compressed, 1.0)
    assert res.samples == 0 and res.decode_errors == 1 and "delta-compressed" in res.errors[0]
    acc = b"\x02" + SDK_FRAME[1:]
    assert "not ECG" in dec.feed(acc, 1.0).errors[0]
    assert dec.feed(SDK_FRAME[:-1], 1.0).decode_errors == 1  # not whole 3-byte samples


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=60))
def test_fuzz_random_frames_never_raise(data):
    res = PolarEcgDecoder().feed(data, 1.0)
    for b in res.blocks:
        assert np.isfinite(b.data).all() and b.lost_samples >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=5),
    st.lists(st.integers(-(2**23), 2**23 - 1), min_size=1, max_size=70),
)
def test_fuzz_valid_frame_after_garbage_decodes(garbage, samples):
    dec = PolarEcgDecoder()
    for g in garbage:
        dec.feed(g, 1.0)
    res = dec.feed(encode_ecg_frame(5 * 10**17, samples), 2.0)
    assert res.blocks[-1].data[:, 0].tolist() == [float(s) for s in samples]
