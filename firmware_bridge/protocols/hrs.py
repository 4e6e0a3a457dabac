"""Bluetooth SIG Heart Rate Service (0x180D), Heart Rate Measurement (0x2A37) -> "ibi" blocks.

Layout (Bluetooth SIG Heart Rate Service 1.0 and the GATT Specification Supplement,
"Heart Rate Measurement"):

    byte 0   flags: bit 0 HR format (0 = uint8, 1 = uint16 LE); bits 1-2 sensor contact
             (bit 2 = contact feature supported, bit 1 = contact detected); bit 3 energy
             expended present; bit 4 RR intervals present
    then     HR (uint8 or uint16 LE, bpm), energy expended (uint16 LE, kJ) if flagged,
             then RR intervals, uint16 LE each, in units of 1/1024 s, as many as fit

Worked example: ``10 48 20 03`` -> flags 0x10 (uint8 HR, RR present), HR 72 bpm,
RR 0x0320 = 800/1024 s = 781.25 ms.

Beat times: the notification arrives shortly after its last beat, so the last RR interval ends
at (about) the receive time; while consecutive notifications chain (the sum of the new intervals
lands between the previous beat and now), beats are placed by the intervals themselves, which
are exact, instead of the jittery receive times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.errors import DecodeError
from edge.stream import SampleBlock
from firmware_bridge.protocols.result import DecodeResult

HRS_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
RR_UNITS_PER_S = 1024.0
CHAIN_SLACK_S = 3.0  # how far the chained beat times may fall behind the receive time


@dataclass(frozen=True)
class HeartRateMeasurement:
    hr_bpm: int
    rr_ms: tuple[float, ...]
    energy_kj: int | None = None
    contact_supported: bool = False
    contact_detected: bool = False


def parse_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    """Parse one 0x2A37 value; ``DecodeError`` names what is missing."""
    data = bytes(data)
    if len(data) < 2:
        raise DecodeError(
            f"heart rate measurement of {len(data)} bytes: too short for flags and HR"
        )
    flags = data[0]
    pos = 1
    if flags & 0x01:
        if len(data) < 3:
            raise DecodeError("heart rate measurement: flags say uint16 HR but only 1 byte follows")
        hr = int.from_bytes(data[1:3], "little")
        pos = 3
    else:
        hr = data[1]
        pos = 2
    energy = None
    if flags & 0x08:
        if len(data) < pos + 2:
            raise DecodeError("heart rate measurement: flags say energy expended but it is missing")
        energy = int.from_bytes(data[pos : pos + 2], "little")
        pos += 2
    rr: tuple[float, ...] = ()
    if flags & 0x10:
        body = data[pos:]
        if len(body) % 2:
            raise DecodeError(f"heart rate measurement: odd RR field length {len(body)}")
        raw = np.frombuffer(body, dtype="<u2")
        rr = tuple((raw.astype(np.float64) * 1000.0 / RR_UNITS_PER_S).tolist())
    return HeartRateMeasurement(
        hr_bpm=hr,
        rr_ms=rr,
        energy_kj=energy,
        contact_supported=bool(flags & 0x04),
        contact_detected=bool(flags & 0x02),
    )


def encode_heart_rate_measurement(
    hr_bpm: int,
    rr_ms: list[float] | tuple[float, ...] = (),
    energy_kj: int | None = None,
    contact: bool | None = None,
) -> bytes:
    """Build a 0x2A37 value (tests, simulators): uint16 HR only when it does not fit a byte."""
    flags = 0
    body = bytearray()
    if hr_bpm > 255:
        flags |= 0x01
        body += int(hr_bpm).to_bytes(2, "little")
    else:
        body.append(int(hr_bpm))
    if contact is not None:
        flags |= 0x04 | (0x02 if contact else 0)
    if energy_kj is not None:
        flags |= 0x08
        body += int(energy_kj).to_bytes(2, "little")
    if rr_ms:
        flags |= 0x10
        for rr in rr_ms:
            body += int(round(rr * RR_UNITS_PER_S / 1000.0)).to_bytes(2, "little")
    return bytes([flags]) + bytes(body)


class HeartRateDecoder:
    """0x2A37 notifications -> "ibi" blocks (ms, one beat time each); HR readings as events."""

    def __init__(self, source: str = "hrs") -> None:
        self.source = source
        self.reset()

    def reset(self) -> None:
        self._last_beat_s: float | None = None

    def feed(self, data: bytes, host_s: float) -> DecodeResult:
        result = DecodeResult()
        try:
            m = parse_heart_rate_measurement(data)
        except DecodeError as exc:
            result.error(f"hrs: {exc}")
            return result
        result.events.append(m)
        if not m.rr_ms:
            return result
        rr_ms = np.asarray(m.rr_ms, dtype=np.float64)
        if not np.all(rr_ms > 0):
            result.error(f"hrs: {int(np.sum(rr_ms <= 0))} RR intervals of 0 dropped")
            rr_ms = rr_ms[rr_ms > 0]
            if not len(rr_ms):
                return result
        rr_s = rr_ms / 1000.0
        chained = None if self._last_beat_s is None else self._last_beat_s + np.cumsum(rr_s)
        if chained is not None and host_s - CHAIN_SLACK_S <= chained[-1] <= host_s:
            times = chained
        else:  # first notification, a missed one, or drift: the last beat is at the receive time
            times = host_s - (rr_s.sum() - np.cumsum(rr_s))
            if self._last_beat_s is not None:
                keep = times > self._last_beat_s  # never step back behind beats already given
                times, rr_ms = times[keep], rr_ms[keep]
        if not len(times):
            return result
        self._last_beat_s = float(times[-1])
        result.blocks.append(
            SampleBlock(
                stream="ibi",
                ts_unix=float(times[0]),
                rate_hz=0.0,
                data=rr_ms.reshape(-1, 1),
                channels=("ibi_ms",),
                source=self.source,
                times_unix=times,
            )
        )
        return result
