"""BLE sources with a fake client injected into the real BLE transport.

The fake has the members of ``bleak.BleakClient`` the transport uses (connect, disconnect,
start_notify, write_gatt_char, is_connected, services, the disconnected callback) and plays the
peripheral: it answers the start commands the way the vendor documents say the device does, and
sends notifications in the vendors' formats (built with the decoders' encoders, which the
protocol tests check against the published vectors).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest
from bleak.exc import BleakError

from edge.errors import SourceError
from firmware_bridge.backoff import Backoff
from firmware_bridge.bridges import (
    FramedBleSource,
    HeartRateServiceSource,
    MuseSource,
    PolarH10Source,
)
from firmware_bridge.protocols import framed, hrs, muse, polar_pmd

FAST = dict(initial_s=0.02, max_s=0.05)


@dataclass
class FakeCharacteristic:
    uuid: str


@dataclass
class FakeService:
    uuid: str
    characteristics: list[FakeCharacteristic]


@dataclass
class Peripheral:
    """Device behaviour shared by every client object made for it (one per connection attempt)."""

    characteristics: list[str]
    fail_connects: int = 0  # the first N connects raise (out of range, busy adapter)
    on_write: object = None  # callable(client, uuid, data)
    on_connect: object = None  # callable(client)
    clients: list = field(default_factory=list)
    writes: list = field(default_factory=list)


class FakeClient:
    def __init__(self, address, disconnected_callback=None, *, peripheral: Peripheral):
        self.address = address
        self._disconnected_callback = disconnected_callback
        self.peripheral = peripheral
        self._connected = False
        self.callbacks: dict[str, object] = {}
        self.tasks: list[asyncio.Task] = []
        peripheral.clients.append(self)

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def services(self):
        if not self._connected:
            raise BleakError("Service Discovery has not been performed yet")
        return [
            FakeService("svc", [FakeCharacteristic(u) for u in self.peripheral.characteristics])
        ]

    async def connect(self, **kwargs):
        await asyncio.sleep(0.001)
        if self.peripheral.fail_connects > 0:
            self.peripheral.fail_connects -= 1
            raise BleakError(f"Device with address {self.address} was not found")
        self._connected = True
        if self.peripheral.on_connect:
            self.peripheral.on_connect(self)

    async def disconnect(self):
        self._stop()

    async def start_notify(self, uuid, callback, **kwargs):
        if not self._connected:
            raise BleakError("Not connected")
        if uuid not in self.peripheral.characteristics:
            raise BleakError(f"Characteristic {uuid} was not found!")
        self.callbacks[uuid] = callback

    async def write_gatt_char(self, uuid, data, response=None):
        if not self._connected:
            raise BleakError("Not connected")
        self.peripheral.writes.append((uuid, bytes(data), response))
        if self.peripheral.on_write:
            self.peripheral.on_write(self, uuid, bytes(data))

    # peripheral side
    def notify(self, uuid, data: bytes):
        if self._connected and uuid in self.callbacks:
            self.callbacks[uuid](FakeCharacteristic(uuid), bytearray(data))

    def run(self, coro):
        self.tasks.append(asyncio.ensure_future(coro))

    def drop_link(self):
        """The peripheral walks out of range: bleak calls the disconnected callback."""
        self._stop()
        if self._disconnected_callback:
            self._disconnected_callback(self)

    def _stop(self):
        self._connected = False
        for t in self.tasks:
            t.cancel()


def factory_for(peripheral: Peripheral):
    def factory(address, disconnected_callback=None):
        return FakeClient(address, disconnected_callback, peripheral=peripheral)

    return factory


async def take(
    source, n_samples: int, timeout_s: float, stream: str | None = None, on_progress=None
):
    got = []
    it = source.blocks().__aiter__()
    try:

        async def loop():
            while sum(b.n for b in got if stream in (None, b.stream)) < n_samples:
                got.append(await it.__anext__())
                if on_progress:
                    on_progress(got)

        await asyncio.wait_for(loop(), timeout_s)
    finally:
        await source.close()
        await it.aclose()
    return got


# ------------------------------------------------------------------------------------------ Muse

MUSE_CHARS = [muse.CONTROL_UUID, *muse.EEG_UUIDS.values(), "273e0007-4c4d-454d-96be-f03bac821358"]


def muse_values(counter: int, ch: int) -> list[int]:
    return [(counter * 13 + ch * 400 + i * 7) % 4096 for i in range(12)]


def muse_peripheral(**kw) -> Peripheral:
    def on_write(client, uuid, data):
        if uuid == muse.CONTROL_UUID and data == muse.encode_command("d"):

            async def stream():
                counter = 100
                while True:
                    for ch, uuid_ in enumerate(muse.EEG_UUIDS.values()):
                        client.notify(
                            uuid_, muse.encode_eeg_packet(counter, muse_values(counter, ch))
                        )
                    counter += 1
                    await asyncio.sleep(12 / 256)

            client.run(stream())
        if uuid == muse.CONTROL_UUID and data == muse.encode_command("s"):
            reply = '{"hn":"Muse-1324","rc":0}'
            client.notify(muse.CONTROL_UUID, bytes([len(reply[:19])]) + reply[:19].encode())
            client.notify(muse.CONTROL_UUID, bytes([len(reply[19:])]) + reply[19:].encode())

    return Peripheral(characteristics=MUSE_CHARS, on_write=on_write, **kw)


def test_muse_start_sequence_values_and_reconnect_after_link_loss():
    p = muse_peripheral(fail_connects=1)
    source = MuseSource.from_spec("00:55:DA:B0:13:24", None, client_factory=factory_for(p))
    source.backoff = Backoff(**FAST)
    dropped = []

    def progress(blocks):
        if sum(b.n for b in blocks) >= 12 * 5 and not dropped:
            dropped.append(True)
            p.clients[-1].drop_link()

    blocks = asyncio.run(take(source, 12 * 12, timeout_s=8.0, on_progress=progress))
    # the first attempt failed (device not found), then two connections: before and after the drop
    assert len(p.clients) == 3
    assert source.stats.reconnects == 1
    commands = [d for u, d, _ in p.writes if u == muse.CONTROL_UUID]
    start = [muse.encode_command(c) for c in ("h", "p21", "s", "d")]
    assert commands[:4] == start and commands[4:8] == start
    assert set(p.clients[-1].callbacks) == {muse.CONTROL_UUID, *muse.EEG_UUIDS.values()}
    block = blocks[0]
    assert block.channels == ("TP9", "AF7", "AF8", "TP10") and block.rate_hz == 256.0
    for ch in range(4):
        np.testing.assert_allclose(
            block.data[:, ch], 0.48828125 * (np.array(muse_values(100, ch)) - 2048)
        )
    assert sum(b.n for b in blocks) >= 144


def test_muse_athena_is_refused_with_a_clear_error():
    p = Peripheral(characteristics=[muse.CONTROL_UUID, *muse.ATHENA_UUIDS])
    source = MuseSource.from_spec("00:55:DA:B9:FA:20", None, client_factory=factory_for(p))
    with pytest.raises(SourceError, match="Athena"):
        asyncio.run(take(source, 1, timeout_s=5.0))
    assert len(p.clients) == 1  # refused, not retried


# ----------------------------------------------------------------------------------- Polar H10

POLAR_CHARS = [polar_pmd.PMD_CONTROL, polar_pmd.PMD_DATA, hrs.HEART_RATE_MEASUREMENT]


def polar_peripheral(status: int = 0) -> Peripheral:
    def on_write(client, uuid, data):
        if uuid != polar_pmd.PMD_CONTROL:
            return
        client.notify(polar_pmd.PMD_CONTROL, bytes([0xF0, data[0], data[1], status, 0]))
        if data == polar_pmd.START_ECG and status == 0:

            async def ecg():
                t_ns = 700_000_000_000_000_000
                k = 0
                while True:
                    t_ns += int(73 * 1e9 / 130)
                    client.notify(
                        polar_pmd.PMD_DATA,
                        polar_pmd.encode_ecg_frame(t_ns, np.arange(73) + 73 * k - 1000),
                    )
                    k += 1
                    await asyncio.sleep(73 / 130 / 8)  # 8x real time keeps the test short

            client.run(ecg())

    def on_connect(client):
        async def heart():
            while True:
                client.notify(hrs.HEART_RATE_MEASUREMENT, bytes.fromhex("10 48 20 03"))
                await asyncio.sleep(0.1)

        client.run(heart())

    return Peripheral(characteristics=POLAR_CHARS, on_write=on_write, on_connect=on_connect)


def test_polar_h10_ecg_and_rr():
    p = polar_peripheral()
    source = PolarH10Source.from_spec("A0:9E:1A:00:00:01", None, client_factory=factory_for(p))
    blocks = asyncio.run(take(source, 73 * 4, timeout_s=8.0, stream="ecg"))
    assert p.writes[0] == (polar_pmd.PMD_CONTROL, polar_pmd.START_ECG, True)
    assert set(p.clients[0].callbacks) == set(POLAR_CHARS)  # both PMD characteristics + HRS
    ecg = np.concatenate([b.data[:, 0] for b in blocks if b.stream == "ecg"])
    np.testing.assert_array_equal(ecg[: 73 * 4], np.arange(73 * 4) - 1000)
    assert sum(b.lost_samples for b in blocks if b.stream == "ecg") == 0
    # stopped on close
    assert p.writes[-1] == (polar_pmd.PMD_CONTROL, polar_pmd.STOP_ECG, True)
    ibi = [b for b in blocks if b.stream == "ibi"]
    assert ibi and ibi[0].data[0, 0] == 781.25


def test_polar_ecg_refused_keeps_heart_rate():
    p = polar_peripheral(status=13)  # "device in charger"
    source = PolarH10Source.from_spec("A0:9E:1A:00:00:02", None, client_factory=factory_for(p))
    blocks = asyncio.run(take(source, 3, timeout_s=5.0, stream="ibi"))
    assert {b.stream for b in blocks} == {"ibi"}
    assert source.ecg_started is False
    assert polar_pmd.STOP_ECG not in [d for _, d, _ in p.writes]


# ------------------------------------------------------------------------------------------ HRS


def test_hrs_rr_intervals_and_silent_device_is_reconnected():
    sent = []

    def on_connect(client):
        async def beats():
            # two notifications on the first connection, then the strap goes silent (still connected)
            for _ in range(2 if not sent else 50):
                client.notify(
                    hrs.HEART_RATE_MEASUREMENT, hrs.encode_heart_rate_measurement(60, [1000.0])
                )
                sent.append(client)
                await asyncio.sleep(0.05)
            await asyncio.sleep(3600)

        client.run(beats())

    p = Peripheral(characteristics=[hrs.HEART_RATE_MEASUREMENT], on_connect=on_connect)
    source = HeartRateServiceSource.from_spec(
        "C0:FF:EE:00:00:01", None, client_factory=factory_for(p)
    )
    source.stall_s = 0.3
    source.backoff = Backoff(**FAST)
    blocks = asyncio.run(take(source, 6, timeout_s=5.0))
    assert len(p.clients) == 2 and source.stats.reconnects == 1
    assert all(b.stream == "ibi" and b.data[0, 0] == 1000.0 for b in blocks)
    times = np.concatenate([b.times_unix for b in blocks])
    assert np.all(np.diff(times) > 0)


# --------------------------------------------------------------------------------------- framed


def test_framed_over_nordic_uart_split_across_notifications():
    frames = b"".join(
        framed.encode_frame("eda", [500 + k], k, k * 250_000, 4.0, "int16", 0.01) for k in range(8)
    )

    def on_connect(client):
        async def send():
            await asyncio.sleep(0.01)
            for i in range(0, len(frames), 20):  # default ATT MTU: 20-byte notifications
                client.notify(framed.NUS_TX, frames[i : i + 20])
                await asyncio.sleep(0.001)
            await asyncio.sleep(3600)

        client.run(send())

    p = Peripheral(characteristics=[framed.NUS_TX, framed.NUS_RX], on_connect=on_connect)
    source = FramedBleSource.from_spec("D0:00:00:00:00:01", None, client_factory=factory_for(p))
    blocks = asyncio.run(take(source, 8, timeout_s=5.0))
    np.testing.assert_allclose(
        np.concatenate([b.data[:, 0] for b in blocks]), (500 + np.arange(8)) * 0.01, rtol=1e-6
    )
    assert source.stats.decode_errors == 0


def test_backoff_grows_caps_and_jitters():
    b = Backoff(initial_s=0.5, max_s=8.0, factor=2.0, jitter=0.2)
    delays = [b.next_delay_s() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6
    assert 0.8 <= delays[1] <= 1.2
    assert all(d <= 8.0 for d in delays) and delays[-1] >= 6.4
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not in step
    b.reset()
    assert b.next_delay_s() <= 0.6
