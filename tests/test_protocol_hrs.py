"""Bluetooth SIG Heart Rate Measurement (0x2A37) decoder.

Layout: Bluetooth SIG Heart Rate Service 1.0 / GATT Specification Supplement, "Heart Rate
Measurement": flags (bit 0 uint16 HR, bits 1-2 contact, bit 3 energy, bit 4 RR), HR, energy (kJ),
RR intervals in 1/1024 s.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import DecodeError
from firmware_bridge.protocols.hrs import (
    HeartRateDecoder,
    encode_heart_rate_measurement,
    parse_heart_rate_measurement,
)


def test_worked_example_10_48_20_03():
    m = parse_heart_rate_measurement(bytes.fromhex("10 48 20 03"))
    assert m.hr_bpm == 72
    assert m.rr_ms == (781.25,)
    assert m.energy_kj is None


def test_uint16_hr_contact_energy_and_two_rr():
    # flags 0x1F: uint16 HR, contact supported + detected, energy, RR
    data = bytes.fromhex("1f 2c 01 e8 03 00 04 00 02")
    m = parse_heart_rate_measurement(data)
    assert m.hr_bpm == 300
    assert m.contact_supported and m.contact_detected
    assert m.energy_kj == 1000
    assert m.rr_ms == (1000.0, 500.0)


def test_hr_only_has_no_intervals():
    m = parse_heart_rate_measurement(bytes.fromhex("06 3c"))  # contact detected, HR 60
    assert m.hr_bpm == 60 and m.rr_ms == () and m.contact_detected


@pytest.mark.parametrize("hexdata", ["", "10", "01 48", "18 48 01", "10 48 20"])
def test_truncated_values_raise_named_decode_error(hexdata):
    with pytest.raises(DecodeError, match="heart rate measurement"):
        parse_heart_rate_measurement(bytes.fromhex(hexdata))


def test_encoder_round_trip():
    data = encode_heart_rate_measurement(72, [781.25, 1000.0], energy_kj=12, contact=True)
    m = parse_heart_rate_measurement(data)
    assert (m.hr_bpm, m.rr_ms, m.energy_kj, m.contact_detected) == (72, (781.25, 1000.0), 12, True)
    assert encode_heart_rate_measurement(72, [781.25]) == bytes.fromhex("10 48 20 03")


def test_beat_times_end_at_receipt_then_chain_by_intervals():
    dec = HeartRateDecoder()
    r1 = dec.feed(bytes.fromhex("10 48 00 04 00 04"), 100.0)  # two RR of 1000 ms
    b1 = r1.blocks[0]
    assert b1.stream == "ibi" and b1.rate_hz == 0.0
    np.testing.assert_allclose(b1.data[:, 0], [1000.0, 1000.0])
    np.testing.assert_allclose(b1.times_unix, [99.0, 100.0])
    # next notification arrives 0.3 s late: the beat is placed by the interval (101.0), not receipt
    r2 = dec.feed(bytes.fromhex("10 48 00 04"), 101.3)
    np.testing.assert_allclose(r2.blocks[0].times_unix, [101.0])
    # a missed notification: the chain falls far behind, so re-anchor at the receive time
    r3 = dec.feed(bytes.fromhex("10 48 00 04"), 110.0)
    np.testing.assert_allclose(r3.blocks[0].times_unix, [110.0])


def test_zero_rr_is_dropped_with_a_reason():
    res = HeartRateDecoder().feed(bytes.fromhex("10 48 00 00 00 00 00 04"), 9.0)
    assert res.blocks[0].data[:, 0].tolist() == [1000.0]
    assert res.decode_errors == 1 and "RR intervals of 0" in res.errors[0]


def test_hr_without_rr_gives_event_not_block():
    res = HeartRateDecoder().feed(bytes.fromhex("00 48"), 5.0)
    assert res.blocks == [] and res.events[0].hr_bpm == 72


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=24))
def test_fuzz_random_values_never_raise_out_of_decoder(data):
    dec = HeartRateDecoder()
    for host_s in (1000.0, 1000.5):
        res = dec.feed(data, host_s)
        assert res.decode_errors in (0, 1)
        for b in res.blocks:
            assert (
                np.all(np.diff(b.times_unix) > 0)
                and np.all(b.data > 0)
                and b.times_unix[-1] <= host_s
            )


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=24),
    st.integers(30, 250),
    st.lists(st.floats(300, 2000), min_size=1, max_size=4),
)
def test_fuzz_valid_value_after_garbage_decodes(garbage, hr, rr):
    dec = HeartRateDecoder()
    dec.feed(garbage, 1.0)
    res = dec.feed(encode_heart_rate_measurement(hr, rr), 50.0)
    assert res.events[-1].hr_bpm == hr
    np.testing.assert_allclose(res.blocks[-1].data[:, 0], np.round(np.array(rr) * 1.024) / 1.024)
