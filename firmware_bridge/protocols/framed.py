"""emotion-edge framed protocol for custom EDA/ECG/EEG/PPG boards (spec: firmware_bridge/PROTOCOL.md).

COBS-encoded frames delimited by 0x00, over a serial port or the Nordic UART BLE service. Inside a
frame (all little-endian):

    0   u8       version (1)
    1   u8       stream id: 1 eda (µS), 2 ecg (µV), 3 eeg (µV), 4 bvp (a.u.), 5 ibi (ms),
                 6 temp (skin temperature, °C), 7 acc (acceleration, g, 3 channels x y z)
    2   u8       sample format: 0 int16, 1 int24, 2 int32, 3 float32
    3   u16      sequence number, per stream, +1 each frame, wraps
    5   u64      device time of the first sample, µs (any epoch; monotonic)
    13  f32      sample rate, Hz (0 = event stream: ibi, see below)
    17  u8       channel count (>= 1)
    18  f32      scale: value = raw x scale, in the stream's unit
    22  ...      samples, sample-major (s0c0 s0c1 … s1c0 …)
    -2  u16      CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of all
                 bytes before it

Event stream (rate 0, stream ibi, one channel): sample i is the interval ending at beat i; beat 0
is at the frame's device time, beat i at device time + (ibi_1 + … + ibi_i) ms.

``encode_frame`` builds frames (tests, the simulator, and as a reference for firmware);
``FramedDecoder`` is pure: bytes and the host receive time in, SampleBlocks out, never raising.
"""

from __future__ import annotations

import binascii
import struct

import numpy as np

from edge import limits
from edge.stream import SampleBlock
from firmware_bridge.clock import DeviceClock, SequenceCounter, ordered_start
from firmware_bridge.protocols.cobs import cobs_decode, cobs_encode
from firmware_bridge.protocols.result import DecodeResult

VERSION = 1
STREAM_IDS = {"eda": 1, "ecg": 2, "eeg": 3, "bvp": 4, "ibi": 5, "temp": 6, "acc": 7}
STREAM_NAMES = {v: k for k, v in STREAM_IDS.items()}
SAMPLE_FORMATS = {0: ("int16", 2), 1: ("int24", 3), 2: ("int32", 4), 3: ("float32", 4)}
FORMAT_IDS = {name: fid for fid, (name, _) in SAMPLE_FORMATS.items()}
HEADER = struct.Struct("<BBBHQfBf")
HEADER_BYTES = HEADER.size  # 22
CRC_BYTES = 2
MAX_FRAME_BYTES = 2048  # decoded; a longer run without a delimiter is garbage
DEFAULT_CHANNELS = {"eda": ("eda",), "ecg": ("ecg",), "bvp": ("bvp",), "ibi": ("ibi_ms",), "temp": ("temp",),
                    "acc": ("x", "y", "z")}
NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"  # Nordic UART Service
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"  # host -> device (write)
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"  # device -> host (notify)


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; check value for b"123456789" is 0x29B1."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def _raw_from(values: np.ndarray, fmt: int) -> bytes:
    if fmt == 3:
        return values.astype("<f4").tobytes()
    ints = np.rint(values).astype(np.int64)
    if fmt == 1:
        u = (ints & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
        return u.tobytes()
    return ints.astype("<i2" if fmt == 0 else "<i4").tobytes()


def encode_frame(
    stream: str,
    samples: np.ndarray | list,
    sequence: int,
    device_time_us: int,
    rate_hz: float,
    sample_format: str = "int16",
    scale: float = 1.0,
    version: int = VERSION,
) -> bytes:
    """One frame, COBS-encoded and terminated by 0x00, ready for the wire.

    ``samples`` are raw values (counts), shape (n,) or (n, channels); the receiver multiplies by
    ``scale``. For ``float32`` pass physical values and scale 1.
    """
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    fmt = FORMAT_IDS[sample_format]
    header = HEADER.pack(
        version,
        STREAM_IDS[stream],
        fmt,
        sequence & 0xFFFF,
        int(device_time_us),
        float(rate_hz),
        values.shape[1],
        float(scale),
    )
    body = header + _raw_from(values.reshape(-1), fmt)
    body += crc16_ccitt_false(body).to_bytes(2, "little")
    return cobs_encode(body) + b"\x00"


def _values_from(raw: bytes, fmt: int) -> np.ndarray:
    if fmt == 0:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if fmt == 2:
        return np.frombuffer(raw, dtype="<i4").astype(np.float64)
    if fmt == 3:
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64)


class _StreamState:
    def __init__(self) -> None:
        self.seq = SequenceCounter(1 << 16)
        self.next_us: float | None = None  # device µs where the next frame should start
        self.end_s: float | None = None  # host time just after the last sample given (regular)


class FramedDecoder:
    """Pure decoder of the framed protocol: one per device (one device clock)."""

    def __init__(
        self,
        channels: dict[str, tuple[str, ...]] | None = None,
        source: str = "framed",
        clock: DeviceClock | None = None,
    ) -> None:
        self.channel_names = dict(DEFAULT_CHANNELS)
        self.channel_names.update(channels or {})
        self.source = source
        self.clock = clock or DeviceClock()
        self._buf = bytearray()
        self._streams: dict[int, _StreamState] = {}
        self._discard = False  # inside an over-long run: drop until the next delimiter

    def reset(self) -> None:
        self._buf.clear()
        self._streams.clear()
        self._discard = False
        self.clock.reset()

    def feed(self, chunk: bytes, host_s: float) -> DecodeResult:
        """Decode every frame ``chunk`` completes; ``host_s`` = host time it was received."""
        result = DecodeResult()
        self._buf += chunk
        *frames, rest = bytes(self._buf).split(b"\x00")
        self._buf = bytearray(rest)
        for encoded in frames:
            if self._discard:
                self._discard = False
                continue
            if encoded:
                self._decode_frame(encoded, host_s, result)
        if len(self._buf) > MAX_FRAME_BYTES + MAX_FRAME_BYTES // 254 + 1:
            result.error(f"framed: {len(self._buf)} bytes without a frame delimiter; dropped")
            self._buf.clear()
            self._discard = True
        return result

    def _decode_frame(self, encoded: bytes, host_s: float, result: DecodeResult) -> None:
        frame = cobs_decode(encoded)
        if frame is None:
            result.error(f"framed: {len(encoded)} bytes are not a valid COBS frame")
            return
        if len(frame) < HEADER_BYTES + CRC_BYTES:
            result.error(f"framed: frame of {len(frame)} bytes, shorter than header and CRC")
            return
        body, crc = frame[:-CRC_BYTES], int.from_bytes(frame[-CRC_BYTES:], "little")
        if crc16_ccitt_false(body) != crc:
            result.error(f"framed: CRC mismatch in a {len(frame)}-byte frame")
            return
        version, stream_id, fmt, seq, t0_us, rate_hz, n_ch, scale = HEADER.unpack_from(body)
        if version != VERSION:
            result.error(f"framed: version {version} not supported (expected {VERSION})")
            return
        stream = STREAM_NAMES.get(stream_id)
        if stream is None:
            result.error(f"framed: unknown stream id {stream_id} (known: {sorted(STREAM_NAMES)})")
            return
        if (
            fmt not in SAMPLE_FORMATS
            or n_ch < 1
            or not np.isfinite(rate_hz)
            or rate_hz < 0
            or not np.isfinite(scale)
        ):
            result.error(
                f"framed: {stream} frame with bad format {fmt}, channels {n_ch}, rate {rate_hz}"
            )
            return
        size = SAMPLE_FORMATS[fmt][1]
        payload = body[HEADER_BYTES:]
        if not payload or len(payload) % (size * n_ch):
            result.error(
                f"framed: {stream} payload of {len(payload)} bytes is not whole "
                f"{n_ch}-channel {SAMPLE_FORMATS[fmt][0]} samples"
            )
            return
        if rate_hz == 0 and (stream != "ibi" or n_ch != 1):
            result.error(
                f"framed: rate 0 (event stream) is only defined for one-channel ibi, not {stream}"
            )
            return
        if rate_hz > 0 and not limits.is_rate_hz(rate_hz):
            result.error(f"framed: {stream} frame {seq} declares {rate_hz:g} Hz, outside "
                         f"{limits.MIN_RATE_HZ:g}..{limits.MAX_RATE_HZ:g} Hz; dropped")
            return
        values = _values_from(payload, fmt).reshape(-1, n_ch) * scale
        if not np.all(np.isfinite(values)):  # float32 NaN/inf (or an overflowing scale): no time or value to give
            result.error(f"framed: {stream} frame {seq} holds a sample that is not a finite number; dropped")
            return
        if rate_hz == 0 and not np.all((values > 0) & (values <= limits.MAX_IBI_MS)):
            result.error(f"framed: ibi frame {seq} holds an interval outside 0..{limits.MAX_IBI_MS:g} ms; dropped")
            return
        n = len(values)
        state = self._streams.setdefault(stream_id, _StreamState())
        lost_frames, _ = state.seq.step(seq)
        if lost_frames < 0:
            result.error(f"framed: {stream} sequence {seq} repeated; frame dropped")
            return
        if rate_hz > 0:
            offsets_s = np.arange(n) / rate_hz
        else:
            offsets_s = np.concatenate(([0.0], np.cumsum(values[1:, 0]) / 1000.0))
        t0_s = t0_us / 1e6
        lost_samples = 0
        if lost_frames:
            result.lost_packets += lost_frames
            if rate_hz > 0 and state.next_us is not None and t0_us > state.next_us:
                lost_samples = int(round((t0_us - state.next_us) * rate_hz / 1e6))
            else:
                lost_samples = lost_frames * n
        state.next_us = t0_us + (n * 1e6 / rate_hz if rate_hz > 0 else offsets_s[-1] * 1e6)
        self.clock.observe(t0_s + offsets_s[-1], host_s)
        names = self.channel_names.get(stream, ())
        if len(names) != n_ch:
            names = tuple(f"ch{i}" for i in range(n_ch))
        ts = float(self.clock.to_host(t0_s))
        if rate_hz > 0:
            ts = ordered_start(ts, state.end_s, n, rate_hz, lost_samples)
            state.end_s = ts + n / rate_hz
        times = None
        if rate_hz == 0:
            times = np.asarray(self.clock.to_host(t0_s + offsets_s), dtype=np.float64)
        result.blocks.append(
            SampleBlock(
                stream=stream,
                ts_unix=ts,
                rate_hz=float(rate_hz),
                data=values,
                channels=tuple(names),
                source=self.source,
                times_unix=times,
                lost_samples=lost_samples,
            )
        )
