"""Muse 2 / Muse S (classic protocol) EEG over BLE: 20-byte notifications -> µV SampleBlocks.

Wire format (alexandrebarachant/muse-lsl ``muselsl/muse.py`` ``_unpack_eeg_channel``;
urish/muse-js ``src/lib/muse-parse.ts`` ``decodeUnsigned12BitData`` / ``decodeEEGSamples``):

    bytes 0-1    packet counter, u16 big-endian (same value on every electrode's characteristic)
    bytes 2-19   12 samples x 12 bits, unsigned, packed big-endian
    µV = 0.48828125 x (raw - 2048)

One notify characteristic per electrode (service 0xFE8D, suffix -4c4d-454d-96be-f03bac821358):
TP9 273e0003, AF7 273e0004, AF8 273e0005, TP10 273e0006 (right AUX 273e0007, not used here).
256 Hz, so one notification = 12 samples = 46.875 ms of one electrode. Commands are written to the
control characteristic 273e0001 as a length byte, ASCII, then ``\\n`` (``h`` halt, ``p21`` preset,
``s`` status, ``d`` start data); replies come back on it as length-prefixed JSON fragments.

The newest "Athena" headsets use a tag-based format on 273e0013/273e0014 instead; they are detected
from their characteristics and refused (``is_athena``).
"""

from __future__ import annotations


import numpy as np

from edge.limits import loads_json_bounded
from edge.stream import SampleBlock
from firmware_bridge.clock import DeviceClock, SequenceCounter, ordered_start
from firmware_bridge.protocols.result import DecodeResult

MUSE_SERVICE = "0000fe8d-0000-1000-8000-00805f9b34fb"
_SUFFIX = "-4c4d-454d-96be-f03bac821358"
CONTROL_UUID = "273e0001" + _SUFFIX
EEG_UUIDS = {  # electrode -> notify characteristic
    "TP9": "273e0003" + _SUFFIX,
    "AF7": "273e0004" + _SUFFIX,
    "AF8": "273e0005" + _SUFFIX,
    "TP10": "273e0006" + _SUFFIX,
}
ATHENA_UUIDS = ("273e0013" + _SUFFIX, "273e0014" + _SUFFIX)
CHANNELS = ("TP9", "AF7", "AF8", "TP10")
RATE_HZ = 256.0
SAMPLES_PER_PACKET = 12
PACKET_BYTES = 20
UV_PER_COUNT = 0.48828125  # muse-lsl: "12 bits on a 2 mVpp range"
START_SEQUENCE = (
    "h",
    "p21",
    "s",
    "d",
)  # halt, preset 21 (4 EEG channels), status, start (muse-js start())
STOP_SEQUENCE = ("h",)
PENDING_PACKETS = (
    4  # rounds of 4 notifications to wait for a missing electrode before dropping a set
)


def encode_command(command: str) -> bytes:
    """``"d"`` -> ``02 64 0a``: length byte (command + newline), ASCII, ``\\n``."""
    payload = command.encode("ascii") + b"\n"
    return bytes([len(payload)]) + payload


def decode_12bit(payload: bytes | np.ndarray) -> np.ndarray:
    """Unsigned 12-bit samples packed big-endian (3 bytes -> 2 samples), vectorised."""
    raw = np.frombuffer(bytes(payload), dtype=np.uint8).astype(np.uint16)
    raw = raw[: len(raw) // 3 * 3].reshape(-1, 3)
    first = (raw[:, 0] << 4) | (raw[:, 1] >> 4)
    second = ((raw[:, 1] & 0x0F) << 8) | raw[:, 2]
    return np.stack([first, second], axis=1).reshape(-1)


def encode_eeg_packet(counter: int, raw_samples: list[int] | np.ndarray) -> bytes:
    """One 20-byte EEG notification from 12 unsigned 12-bit values (tests and simulators)."""
    values = [int(v) & 0xFFF for v in raw_samples]
    if len(values) != SAMPLES_PER_PACKET:
        raise ValueError("a Muse EEG packet carries 12 samples")
    out = bytearray((counter & 0xFFFF).to_bytes(2, "big"))
    for a, b in zip(values[0::2], values[1::2], strict=True):
        out += bytes([a >> 4, ((a & 0x0F) << 4) | (b >> 8), b & 0xFF])
    return bytes(out)


def is_athena(characteristic_uuids: set[str] | list[str]) -> bool:
    """An Athena headset exposes the tag-based data characteristics and not the per-electrode ones."""
    uuids = {u.lower() for u in characteristic_uuids}
    return any(u in uuids for u in ATHENA_UUIDS) and EEG_UUIDS["TP9"] not in uuids


class MuseControlParser:
    """Reassembles the control characteristic's length-prefixed fragments into JSON replies."""

    def __init__(self) -> None:
        self._text = ""

    def feed(self, data: bytes) -> list[dict]:
        if not data:
            return []
        n = min(data[0], len(data) - 1)
        self._text += bytes(data[1 : 1 + n]).decode("ascii", errors="replace")
        replies = []
        while "}" in self._text:
            message, _, self._text = self._text.partition("}")
            try:
                reply = loads_json_bounded(message[message.find("{") :] + "}")
            except ValueError:  # a fragment lost on the air (or nested beyond any reply): the next starts clean
                continue
            if isinstance(reply, dict):
                replies.append(reply)
        if len(self._text) > 4096:
            self._text = ""
        return replies


class MuseDecoder:
    """Assembles the four electrodes' notifications of one counter into a (12, 4) block."""

    def __init__(self, source: str = "muse", clock: DeviceClock | None = None) -> None:
        self.source = source
        self.clock = clock or DeviceClock()
        self._uuid_to_channel = {u: i for i, u in enumerate(EEG_UUIDS.values())}
        self._seq = SequenceCounter(1 << 16)
        self.reset()

    def reset(self) -> None:
        self._pending: dict[int, dict[int, np.ndarray]] = {}  # counter -> channel index -> µV(12)
        self._born: dict[int, int] = {}  # counter -> notification number that opened it
        self._notes = 0
        self._seq.reset()
        self.clock.reset()
        self._last_host_s: float | None = None
        self._end_s: float | None = None  # host time just after the last sample given

    def feed(self, characteristic: str, data: bytes, host_s: float) -> DecodeResult:
        """One notification from electrode characteristic ``characteristic`` received at ``host_s``."""
        result = DecodeResult()
        channel = self._uuid_to_channel.get(characteristic.lower())
        if channel is None:
            result.error(f"muse: notification from unexpected characteristic {characteristic}")
            return result
        if len(data) != PACKET_BYTES:
            result.error(
                f"muse: {CHANNELS[channel]} notification of {len(data)} bytes, expected {PACKET_BYTES}"
            )
            return result
        counter = int.from_bytes(bytes(data[:2]), "big")
        samples_uv = UV_PER_COUNT * (decode_12bit(bytes(data[2:])).astype(np.float64) - 2048.0)
        self._notes += 1
        slot = self._pending.get(counter)
        if slot is None:
            slot = self._pending[counter] = {}
            self._born[counter] = self._notes
        if channel in slot:
            result.error(f"muse: {CHANNELS[channel]} counter {counter} received twice")
        slot[channel] = samples_uv
        if len(slot) == len(CHANNELS):
            self._emit(counter, host_s, result)
        # A set still missing an electrode after a few more rounds of notifications will not complete.
        stale = [
            c
            for c, born in self._born.items()
            if self._notes - born > PENDING_PACKETS * len(CHANNELS)
        ]
        for old in stale:
            got = self._pending.pop(old)
            del self._born[old]
            missing = [CHANNELS[c] for c in range(len(CHANNELS)) if c not in got]
            result.error(f"muse: counter {old} incomplete (missing {', '.join(missing)}); dropped")
        return result

    def _emit(self, counter: int, host_s: float, result: DecodeResult) -> None:
        slot = self._pending.pop(counter)
        del self._born[counter]
        elapsed = None
        if self._last_host_s is not None:
            elapsed = (host_s - self._last_host_s) * RATE_HZ / SAMPLES_PER_PACKET
        lost, index = self._seq.step(counter, elapsed)
        self._last_host_s = host_s
        if lost < 0:
            result.error(f"muse: counter {counter} repeated; dropped")
            return
        result.lost_packets += lost
        first_s = index * SAMPLES_PER_PACKET / RATE_HZ
        self.clock.observe(first_s + (SAMPLES_PER_PACKET - 1) / RATE_HZ, host_s)
        data = np.stack([slot[c] for c in range(len(CHANNELS))], axis=1)
        ts = ordered_start(
            self.clock.to_host(first_s),
            self._end_s,
            SAMPLES_PER_PACKET,
            RATE_HZ,
            lost * SAMPLES_PER_PACKET,
        )
        self._end_s = ts + SAMPLES_PER_PACKET / RATE_HZ
        result.blocks.append(
            SampleBlock(
                stream="eeg",
                ts_unix=ts,
                rate_hz=RATE_HZ,
                data=data,
                channels=CHANNELS,
                source=self.source,
                lost_samples=lost * SAMPLES_PER_PACKET,
            )
        )
