"""OpenBCI Cyton (8-channel EEG over the USB radio dongle): 33-byte packets -> µV SampleBlocks.

Wire format (OpenBCI "Cyton Data Format" documentation; brainflow-dev/brainflow
``src/board_controller/openbci/cyton.cpp`` ``Cyton::read_thread``):

    byte 0       0xA0 header
    byte 1       sample number, u8, +1 each packet, wraps 255 -> 0
    bytes 2-25   8 channels x 24-bit two's complement, big-endian
    bytes 26-31  aux: with footer 0xC0, accelerometer X, Y, Z as int16 big-endian
    byte 32      footer 0xC0..0xC6 (low nibble says what the aux bytes hold)

250 Hz at 115200 baud 8N1. Scale: µV = count x 4.5 V / gain / (2^23 - 1) x 1e6, gain 24 by default
(brainflow ``cyton.h``: ``eeg_scale = 4.5 / 24 / (pow(2, 23) - 1) * 1000000``).
Commands (single ASCII bytes): ``v`` soft reset (banner ending ``$$$``), ``b`` start, ``s`` stop.

The decoder is pure: ``feed(chunk, host_s)`` with the host receive time. It resynchronises after
garbage on a 0xA0 ... footer pair 33 bytes apart confirmed by the next header, and counts lost
packets from the sample number.
"""

from __future__ import annotations

import numpy as np

from edge.stream import SampleBlock
from firmware_bridge.clock import DeviceClock, SequenceCounter, ordered_start
from firmware_bridge.protocols.result import DecodeResult

PACKET_BYTES = 33
HEADER = 0xA0
FOOTER_MIN, FOOTER_MAX = 0xC0, 0xC6
RATE_HZ = 250.0
N_CHANNELS = 8
DEFAULT_GAIN = 24
DEFAULT_MONTAGE = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
CMD_RESET = b"v"
CMD_START = b"b"
CMD_STOP = b"s"
BANNER_END = b"$$$"
MAX_BUFFER_BYTES = 64 * PACKET_BYTES  # a stream of garbage never grows the buffer past this


def uv_per_count(gain: int = DEFAULT_GAIN) -> float:
    """µV per ADC count for the ADS1299 at ``gain`` (4.5 V reference, 24-bit)."""
    return 4.5 / gain / (2**23 - 1) * 1e6


def int24_be(raw: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 big-endian two's complement -> int32, vectorised."""
    raw = raw.astype(np.int32)
    value = (raw[..., 0] << 16) | (raw[..., 1] << 8) | raw[..., 2]
    return np.where(value >= 1 << 23, value - (1 << 24), value)


def encode_cyton_packet(
    sample_number: int, counts: np.ndarray | list[int], aux: bytes = b"\x00" * 6, footer: int = 0xC0
) -> bytes:
    """One 33-byte packet (for tests, the simulator and the fake device): counts are 8 int24 values."""
    counts = [int(c) & 0xFFFFFF for c in counts]
    if len(counts) != N_CHANNELS or len(aux) != 6:
        raise ValueError("a Cyton packet carries 8 channels and 6 aux bytes")
    body = b"".join(c.to_bytes(3, "big") for c in counts)
    return bytes([HEADER, sample_number & 0xFF]) + body + bytes(aux) + bytes([footer])


class CytonDecoder:
    """Stateful, pure: bytes from the serial port in, EEG blocks in µV out."""

    def __init__(
        self,
        channels: tuple[str, ...] = DEFAULT_MONTAGE,
        gain: int = DEFAULT_GAIN,
        source: str = "cyton",
        clock: DeviceClock | None = None,
    ) -> None:
        if len(channels) != N_CHANNELS:
            raise ValueError(f"Cyton has {N_CHANNELS} channels, got {len(channels)} names")
        self.channels = tuple(channels)
        self.scale_uv = uv_per_count(gain)
        self.source = source
        self.clock = clock or DeviceClock()
        self._seq = SequenceCounter(256)
        self._buf = bytearray()
        self._synced = False
        self._expect = -1
        self._last_host_s: float | None = None
        self._end_s: float | None = None

    def reset(self) -> None:
        """Forget partial packets, counters and the clock fit (after a reconnect)."""
        self._buf.clear()
        self._synced = False
        self._seq.reset()
        self.clock.reset()
        self._last_host_s = None
        self._end_s: float | None = None  # host time just after the last sample given

    def _packet_at(self, i: int) -> bool | None:
        """True/False whether a packet starts at i; None if more bytes are needed to tell.

        A 0xA0 ... footer pair 33 bytes apart must be confirmed by the next packet's 0xA0, so a
        packet cut short (bytes lost on the link) is not taken for a whole one. At the end of the
        bytes received so far, a packet is taken only in sync with the expected sample number;
        otherwise the decoder waits for the next byte (4 ms at 250 Hz).
        """
        buf = self._buf
        if len(buf) - i < PACKET_BYTES:
            return None
        if buf[i] != HEADER or not FOOTER_MIN <= buf[i + PACKET_BYTES - 1] <= FOOTER_MAX:
            return False
        nxt = i + PACKET_BYTES
        if nxt < len(buf):
            return buf[nxt] == HEADER
        if self._synced and buf[i + 1] == self._expect:
            return True
        return None

    def feed(self, chunk: bytes, host_s: float) -> DecodeResult:
        """Decode what ``chunk`` completes; ``host_s`` = host time the chunk was received."""
        result = DecodeResult()
        self._buf += chunk
        starts: list[int] = []
        i = 0
        skipped = 0
        while True:
            ok = self._packet_at(i)
            if ok is None:
                break
            if ok:
                if skipped:
                    result.error(f"cyton: skipped {skipped} bytes that were not a packet")
                    skipped = 0
                starts.append(i)
                self._synced = True
                self._expect = (self._buf[i + 1] + 1) & 0xFF
                i += PACKET_BYTES
            else:
                self._synced = False
                i += 1
                skipped += 1
        if skipped:
            result.error(f"cyton: skipped {skipped} bytes that were not a packet")
        packets = b"".join(self._buf[s : s + PACKET_BYTES] for s in starts)
        del self._buf[:i]
        if len(self._buf) > MAX_BUFFER_BYTES:  # cannot happen with < 33 bytes left; kept as a guard
            result.error(f"cyton: dropped {len(self._buf)} buffered bytes without a packet")
            self._buf.clear()
            self._synced = False
        if packets:
            raw = np.frombuffer(packets, dtype=np.uint8).reshape(-1, PACKET_BYTES)
            self._decode_packets(raw, host_s, result)
        self._last_host_s = host_s
        return result

    def _ordered(self, mapped: float, n: int, lost: int) -> float:
        ts = ordered_start(mapped, self._end_s, n, RATE_HZ, lost)
        self._end_s = ts + n / RATE_HZ
        return ts

    def _decode_packets(self, raw: np.ndarray, host_s: float, result: DecodeResult) -> None:
        elapsed = None
        if self._last_host_s is not None and host_s >= self._last_host_s:
            # packets generated since the previous chunk, minus the later ones in this chunk (host_s is
            # monotonic: firmware_bridge.clock.ArrivalClock; a clock that went back tells nothing)
            elapsed = (host_s - self._last_host_s) * RATE_HZ - (len(raw) - 1)
        keep, lost_arr, idx = self._seq.steps(raw[:, 1], elapsed)
        if not keep.all():
            result.error(f"cyton: {int((~keep).sum())} packets repeated a sample number; dropped")
        if not keep.any():
            return
        raw = raw[keep]
        counts = int24_be(raw[:, 2:26].reshape(-1, N_CHANNELS, 3))
        data = counts.astype(np.float64) * self.scale_uv
        result.lost_packets += int(lost_arr.sum())
        self.clock.observe(idx[-1] / RATE_HZ, host_s)
        # One block per run of consecutive packets; a gap starts a new block carrying lost_samples.
        cuts = np.flatnonzero(lost_arr[1:] > 0) + 1
        for part in np.split(np.arange(len(idx)), cuts):
            first = int(part[0])
            result.blocks.append(
                SampleBlock(
                    stream="eeg",
                    ts_unix=self._ordered(
                        self.clock.to_host(idx[first] / RATE_HZ), len(part), int(lost_arr[first])
                    ),
                    rate_hz=RATE_HZ,
                    data=data[part],
                    channels=self.channels,
                    source=self.source,
                    lost_samples=int(lost_arr[first]),
                )
            )
