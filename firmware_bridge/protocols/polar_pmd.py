"""Polar H10 ECG over the Polar Measurement Data (PMD) service -> "ecg" SampleBlocks (µV).

From polarofficial/polar-ble-sdk (technical_documentation/Polar_Measurement_Data_Specification.pdf;
Android ``PmdControlPointResponse.kt``, ``EcgData.kt``; iOS ``EcgDataTest.swift``):

- PMD service fb005c80-02e7-f387-1cad-8acd2d8df0c8; control point fb005c81-… (write + indicate);
  data fb005c82-… (notify). Subscribe to both before starting.
- Start ECG: ``02 00 00 01 82 00 01 01 0e 00`` = op 0x02 start, measurement type 0x00 ECG,
  setting 0x00 sample rate (1 value) 130 (0x0082 LE), setting 0x01 resolution (1 value) 14 bits.
  Stop: ``03 00``.
- Control point reply: ``f0 <op> <measurement type> <status> [more] [parameters]``; status 0 is
  success (1 invalid op code, 2 invalid measurement type, 3 not supported, 4 invalid length,
  5 invalid parameter, 6 already in state, 7 invalid resolution, 8 invalid sample rate, 9 invalid
  range, 10 invalid MTU, 11 invalid number of channels, 12 invalid state, 13 device in charger).
- Data frame: byte 0 measurement type (0x00 ECG), bytes 1-8 timestamp u64 LE in ns (of the *last*
  sample; epoch 2000-01-01), byte 9 frame type (bit 7 set = delta-compressed), then samples.
  Frame type 0 (uncompressed): 3 bytes per sample, little-endian signed, µV. The SDK's own ECG
  parser refuses compressed ECG frames ("Compressed FrameType ... is not supported by EcgData data
  parser"); so do we: they are counted as decode errors with that reason and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.stream import SampleBlock
from firmware_bridge.clock import DeviceClock, ordered_start
from firmware_bridge.protocols.result import DecodeResult

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
MEASUREMENT_ECG = 0x00
ECG_RATE_HZ = 130.0
START_ECG = bytes.fromhex("02 00 00 01 82 00 01 01 0e 00")
STOP_ECG = bytes.fromhex("03 00")
CONTROL_RESPONSE = 0xF0
HEADER_BYTES = 10
STATUS_NAMES = {
    0: "success",
    1: "invalid op code",
    2: "invalid measurement type",
    3: "not supported",
    4: "invalid length",
    5: "invalid parameter",
    6: "already in state",
    7: "invalid resolution",
    8: "invalid sample rate",
    9: "invalid range",
    10: "invalid MTU",
    11: "invalid number of channels",
    12: "invalid state",
    13: "device in charger",
}


@dataclass(frozen=True)
class PmdResponse:
    op: int
    measurement_type: int
    status: int
    parameters: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status in (0, 6)  # 6 = already streaming: fine for us

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, f"status {self.status}")


def parse_control_response(data: bytes) -> PmdResponse | None:
    """A control point indication ``f0 op type status …``; None for anything else (e.g. feature read)."""
    data = bytes(data)
    if len(data) < 4 or data[0] != CONTROL_RESPONSE:
        return None
    return PmdResponse(op=data[1], measurement_type=data[2], status=data[3], parameters=data[5:])


def encode_ecg_frame(
    timestamp_ns: int, samples_uv: list[int] | np.ndarray, frame_type: int = 0
) -> bytes:
    """Build a PMD ECG data frame (tests and simulators)."""
    body = b"".join(int(v).to_bytes(3, "little", signed=True) for v in samples_uv)
    return (
        bytes([MEASUREMENT_ECG])
        + int(timestamp_ns).to_bytes(8, "little")
        + bytes([frame_type])
        + body
    )


def int24_le(raw: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 little-endian two's complement -> int32."""
    raw = raw.astype(np.int32)
    value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    return np.where(value >= 1 << 23, value - (1 << 24), value)


class PolarEcgDecoder:
    """PMD data notifications -> ECG blocks; gaps from the device timestamps."""

    def __init__(
        self,
        source: str = "polar-h10",
        rate_hz: float = ECG_RATE_HZ,
        clock: DeviceClock | None = None,
    ) -> None:
        self.source = source
        self.rate_hz = float(rate_hz)
        self.clock = clock or DeviceClock()
        self.reset()

    def reset(self) -> None:
        self._last_ts_s: float | None = None  # device time of the previous frame's last sample
        self._end_s: float | None = None  # host time just after the last sample given
        self.clock.reset()

    def feed(self, data: bytes, host_s: float) -> DecodeResult:
        result = DecodeResult()
        data = bytes(data)
        if len(data) < HEADER_BYTES:
            result.error(f"polar: data frame of {len(data)} bytes, shorter than its 10-byte header")
            return result
        if data[0] != MEASUREMENT_ECG:
            result.error(
                f"polar: measurement type 0x{data[0]:02x} is not ECG (0x00); frame skipped"
            )
            return result
        frame_type = data[9]
        if frame_type & 0x80:
            result.error(
                f"polar: delta-compressed ECG frame (type 0x{frame_type:02x}) not supported; skipped"
            )
            return result
        if frame_type != 0:
            result.error(
                f"polar: ECG frame type {frame_type} not supported (H10 sends type 0); skipped"
            )
            return result
        body = data[HEADER_BYTES:]
        if not body or len(body) % 3:
            result.error(f"polar: ECG frame body of {len(body)} bytes is not whole 3-byte samples")
            return result
        samples = int24_le(np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)).astype(np.float64)
        n = len(samples)
        last_s = int.from_bytes(data[1:9], "little") / 1e9
        period = 1.0 / self.rate_hz
        first_s = last_s - (n - 1) * period
        lost = 0
        if self._last_ts_s is not None:
            missing = (first_s - self._last_ts_s) / period - 1.0
            if missing < -0.5 * n:  # clock restarted or reordered frame: start afresh
                self.clock.reset()
            elif missing > 0.5:
                lost = int(round(missing))
        self._last_ts_s = last_s
        self.clock.observe(last_s, host_s)
        ts = ordered_start(self.clock.to_host(first_s), self._end_s, n, self.rate_hz, lost)
        self._end_s = ts + n / self.rate_hz
        result.lost_packets += max(1, round(lost / n)) if lost else 0  # frames, estimated
        result.blocks.append(
            SampleBlock(
                stream="ecg",
                ts_unix=ts,
                rate_hz=self.rate_hz,
                data=samples.reshape(-1, 1),
                channels=("ecg",),
                source=self.source,
                lost_samples=lost,
            )
        )
        return result
