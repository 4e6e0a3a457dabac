"""Muse (classic protocol) decoder on the vendor-format vectors.

The 12-bit vector is urish/muse-js src/lib/muse-parse.spec.ts ("should correctly decode 12-bit
EEG samples received from muse"); scale and packet layout from alexandrebarachant/muse-lsl
muselsl/muse.py (_unpack_eeg_channel: uint:16 counter then 12 x uint:12; 0.48828125 * (x - 2048)).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.protocols.muse import (
    ATHENA_UUIDS,
    CHANNELS,
    EEG_UUIDS,
    RATE_HZ,
    MuseControlParser,
    MuseDecoder,
    decode_12bit,
    encode_command,
    encode_eeg_packet,
    is_athena,
)

MUSE_JS_BYTES = bytes(
    [87, 33, 192, 82, 73, 6, 106, 242, 49, 64, 88, 153, 128, 66, 254, 44, 119, 157]
)
MUSE_JS_SAMPLES = [1394, 448, 1316, 2310, 1711, 561, 1029, 2201, 2052, 766, 711, 1949]
UUIDS = list(EEG_UUIDS.values())


def test_muse_js_12bit_vector():
    assert decode_12bit(MUSE_JS_BYTES).tolist() == MUSE_JS_SAMPLES


def test_encoder_reproduces_muse_js_vector():
    assert encode_eeg_packet(0x1234, MUSE_JS_SAMPLES) == b"\x12\x34" + MUSE_JS_BYTES


def test_commands_are_length_prefixed_ascii_with_newline():
    assert encode_command("d") == bytes.fromhex("02 64 0a")
    assert encode_command("h") == bytes.fromhex("02 68 0a")
    assert encode_command("p21") == bytes.fromhex("04 70 32 31 0a")
    assert encode_command("v1") == bytes.fromhex("03 76 31 0a")  # muse-lsl ask_device_info


def test_four_electrodes_assemble_into_one_block_in_microvolts():
    dec = MuseDecoder()
    packet = b"\x00\x05" + MUSE_JS_BYTES
    results = [dec.feed(uuid, packet, 100.0 + 0.001 * i) for i, uuid in enumerate(UUIDS)]
    assert [r.samples for r in results] == [0, 0, 0, 12]
    block = results[-1].blocks[0]
    assert block.channels == CHANNELS == ("TP9", "AF7", "AF8", "TP10")
    assert block.rate_hz == RATE_HZ == 256.0
    assert block.data.shape == (12, 4)
    expected = 0.48828125 * (np.array(MUSE_JS_SAMPLES) - 2048)
    for ch in range(4):
        np.testing.assert_allclose(block.data[:, ch], expected)
    assert block.data[0, 0] == pytest.approx(-319.3359375)


def feed_counter(dec, counter, host_s, values=None, skip=()):
    out = []
    for i, uuid in enumerate(UUIDS):
        if i in skip:
            continue
        vals = values if values is not None else [2048 + counter % 100] * 12
        out.append(dec.feed(uuid, encode_eeg_packet(counter, vals), host_s))
    return out


def test_counter_gap_is_reported_and_time_advances_over_it():
    dec = MuseDecoder()
    r0 = feed_counter(dec, 65534, 10.0)[-1]
    r1 = feed_counter(dec, 65535, 10.047)[-1]
    r2 = feed_counter(dec, 2, 10.19)[-1]  # 0 and 1 lost across the u16 wrap
    assert r1.lost_packets == 0
    assert r2.lost_packets == 2
    assert r2.blocks[0].lost_samples == 24
    assert r2.blocks[0].ts_unix - r0.blocks[0].ts_unix == pytest.approx(4 * 12 / 256, abs=1e-9)


def test_incomplete_counter_is_dropped_not_filled():
    dec = MuseDecoder()
    feed_counter(dec, 1, 1.0, skip=(2,))  # AF8 notification lost
    results = []
    for c in range(2, 8):
        results += feed_counter(dec, c, 1.0 + 0.05 * c)
    assert sum(r.decode_errors for r in results) == 1
    assert any("missing AF8" in e for r in results for e in r.errors)
    assert sum(r.samples for r in results) == 6 * 12


def test_wrong_length_and_unknown_characteristic_are_errors():
    dec = MuseDecoder()
    assert dec.feed(UUIDS[0], b"\x00\x01\x02", 1.0).decode_errors == 1
    assert dec.feed("273e0009-4c4d-454d-96be-f03bac821358", bytes(20), 1.0).decode_errors == 1


def test_athena_detection():
    classic = set(EEG_UUIDS.values()) | {"273e0001-4c4d-454d-96be-f03bac821358"}
    assert not is_athena(classic)
    assert is_athena({"273e0001-4c4d-454d-96be-f03bac821358", *ATHENA_UUIDS})


def test_control_replies_reassembled_from_fragments():
    # the fragments of muse-js's parseControl test, each sent length-prefixed as the headset does
    parser = MuseControlParser()
    replies = []
    for frag in [
        '{"hn":"Muse-1324",',
        '"sn":"2031-TZRW-132',
        '4",',
        '"bp":82,',
        '"rc":0}{"r',
        'c":0}',
    ]:
        replies += parser.feed(bytes([len(frag)]) + frag.encode() + bytes(19 - len(frag) % 19))
    assert replies == [{"hn": "Muse-1324", "sn": "2031-TZRW-1324", "bp": 82, "rc": 0}, {"rc": 0}]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.binary(max_size=30)), max_size=40))
def test_fuzz_random_notifications_never_raise(notes):
    dec = MuseDecoder()
    uuids = UUIDS + ["00002a37-0000-1000-8000-00805f9b34fb", "bogus"]
    for i, (which, data) in enumerate(notes):
        res = dec.feed(uuids[which], data, 1.0 + i * 0.01)
        for b in res.blocks:
            assert b.data.shape == (12, 4)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.binary(min_size=20, max_size=20)), max_size=20),
    st.lists(st.integers(0, 4095), min_size=12, max_size=12),
)
def test_fuzz_valid_set_after_garbage_decodes(garbage, values):
    dec = MuseDecoder()
    for which, data in garbage:
        dec.feed(UUIDS[which], data, 1.0)
    counter = 40000  # not among counters hypothesis garbage is likely to leave pending
    res = feed_counter(dec, counter, 2.0, values=values)
    blocks = [b for r in res for b in r.blocks]
    assert blocks, "a complete set of four electrodes must decode"
    np.testing.assert_allclose(blocks[-1].data[:, 3], 0.48828125 * (np.array(values) - 2048))
