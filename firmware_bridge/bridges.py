"""Live sensor sources: a transport (serial or BLE) + a pure decoder + the device's start-up dance.

Each source's ``blocks()`` connects, starts the device, feeds every chunk (with its host receive
time) to the decoder and yields the decoded blocks; on a disconnect, a vanished port or a silent
device it closes, waits (exponential backoff, capped, jittered) and connects again, for ever.
While the device is away it yields nothing, so the daemon reports the modality missing.
``stats`` (``SourceStats``) and ``last_error`` say what is happening.

Specs (see ``firmware_bridge.devices``):
  serial:cyton:PORT[?montage=Fp1,Fp2,…&gain=24&baud=115200]
  serial:framed:PORT[?baud=115200&montage=…]           (montage names the eeg channels)
  ble:muse:ADDRESS   ble:polar-h10:ADDRESS   ble:hrs:ADDRESS   ble:framed:ADDRESS[?montage=…]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

from edge.errors import SourceError
from edge.stream import SampleBlock
from firmware_bridge.backoff import Backoff
from firmware_bridge.protocols import cyton, framed, hrs, muse, polar_pmd
from firmware_bridge.protocols.result import DecodeResult
from firmware_bridge.source import Source
from firmware_bridge.transports.aio import next_item
from firmware_bridge.transports.ble import (
    BleLink,
    LinkLost,
    Notification,
    ble_errors,
    bleak_client,
    describe_ble_error,
)
from firmware_bridge.transports.serial import PortLost, SerialLink

logger = logging.getLogger(__name__)


def split_target(target: str, allowed: tuple[str, ...], spec: str) -> tuple[str, dict[str, str]]:
    """``/dev/ttyUSB0?montage=F3,F4&gain=24`` -> ("/dev/ttyUSB0", {"montage": "F3,F4", "gain": "24"})."""
    base, _, query = target.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SourceError(
            f"source {spec!r}: unknown option {unknown[0]!r} (known: {', '.join(allowed) or 'none'})"
        )
    if not base:
        raise SourceError(f"source {spec!r}: missing port or address")
    return base, options


def _int_option(options: dict[str, str], key: str, default: int, spec: str) -> int:
    try:
        return int(options.get(key, default))
    except ValueError:
        raise SourceError(
            f"source {spec!r}: option {key}={options[key]!r} is not a whole number"
        ) from None


def _montage(options: dict[str, str], n: int | None, spec: str) -> tuple[str, ...] | None:
    if "montage" not in options:
        return None
    names = tuple(s.strip() for s in options["montage"].split(",") if s.strip())
    if n is not None and len(names) != n:
        raise SourceError(
            f"source {spec!r}: montage names {len(names)} channels, the device has {n}"
        )
    if len(set(names)) != len(names):
        raise SourceError(f"source {spec!r}: montage repeats a channel name")
    return names


class DeviceSource(Source):
    """Shared bookkeeping: stats, one-line status, backoff between connection attempts."""

    stall_s = 5.0  # a connected device silent this long is treated as gone
    nominal_rates_hz: dict[str, float] = {}

    def __init__(self, name: str, backoff: Backoff | None = None) -> None:
        super().__init__()
        self.name = name
        self.backoff = backoff or Backoff()
        self.last_error: str | None = None
        self._closed = False
        self._ever_connected = False

    def _connected(self) -> None:
        if self._ever_connected:
            self.stats.reconnects += 1
            logger.info("%s: reconnected (reconnect %d)", self.name, self.stats.reconnects)
        else:
            logger.info("%s: connected", self.name)
        self._ever_connected = True
        self.stats.connected = True
        self.last_error = None

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:
            level = (
                logging.WARNING if self._ever_connected or self.last_error is None else logging.INFO
            )
            logger.log(level, "%s: %s", self.name, reason)
        self.last_error = reason
        self.stats.connected = False

    async def _wait_before_retry(self) -> None:
        delay = self.backoff.next_delay_s()
        logger.debug("%s: next attempt in %.1f s", self.name, delay)
        await asyncio.sleep(delay)

    def _account(self, result: DecodeResult) -> list[SampleBlock]:
        for block in result.blocks:
            self.stats.samples[block.stream] = self.stats.samples.get(block.stream, 0) + block.n
        self.stats.lost += result.lost_packets
        self.stats.decode_errors += result.decode_errors
        for reason in result.errors:
            logger.debug("%s: %s", self.name, reason)
        if result.blocks:
            self.backoff.reset()
        return result.blocks

    async def close(self) -> None:
        self._closed = True


# --------------------------------------------------------------------------------------- serial


class SerialDeviceSource(DeviceSource):
    """A device on a serial port; subclasses give the decoder and the start/stop commands."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        decoder: Any,
        name: str,
        link_factory: Callable[[str, int], SerialLink] = SerialLink,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name, backoff)
        self.port = port
        self.baudrate = baudrate
        self.decoder = decoder
        self._link_factory = link_factory

    async def _start_device(self, link: SerialLink) -> None:
        """Commands that make the device stream (none by default)."""

    async def _stop_device(self, link: SerialLink) -> None:
        """Commands that stop streaming, best effort (none by default)."""

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        while not self._closed:
            link = self._link_factory(self.port, self.baudrate)
            try:
                await link.open()
            except OSError as exc:
                self._failed(f"cannot open: {exc}")
                await self._wait_before_retry()
                continue
            lost = False
            try:
                await self._start_device(link)
                self.decoder.reset()
                self._connected()
                while not self._closed:
                    item = await link.read(self.stall_s)
                    if item is None:
                        raise PortLost(f"serial port {self.port}: no data for {self.stall_s:g} s")
                    for block in self._account(self.decoder.feed(*item)):
                        yield block
            except (PortLost, OSError, asyncio.TimeoutError) as exc:
                lost = True
                self._failed(f"connection lost: {exc}")
            finally:
                self.stats.connected = False
                if not lost:
                    try:
                        await self._stop_device(link)
                    except (PortLost, OSError) as exc:
                        logger.debug("%s: stop: %s", self.name, exc)
                await link.close()
            if not self._closed:
                await self._wait_before_retry()


class CytonSerialSource(SerialDeviceSource):
    """OpenBCI Cyton via its USB dongle: 8-channel EEG at 250 Hz (stream "eeg", µV)."""

    streams = ("eeg",)
    nominal_rates_hz = {"eeg": cyton.RATE_HZ}
    stall_s = 3.0
    banner_timeout_s = 4.0

    @classmethod
    def from_spec(cls, target: str, speed: float | None = None) -> CytonSerialSource:
        spec = f"serial:cyton:{target}"
        port, options = split_target(target, ("montage", "gain", "baud"), spec)
        channels = _montage(options, cyton.N_CHANNELS, spec) or cyton.DEFAULT_MONTAGE
        gain = _int_option(options, "gain", cyton.DEFAULT_GAIN, spec)
        if gain not in (1, 2, 4, 6, 8, 12, 24):
            raise SourceError(
                f"source {spec!r}: gain {gain} is not an ADS1299 gain (1, 2, 4, 6, 8, 12, 24)"
            )
        baud = _int_option(options, "baud", 115200, spec)
        return cls(
            port, baud, cyton.CytonDecoder(channels=channels, gain=gain, source=spec), name=spec
        )

    async def _start_device(self, link: SerialLink) -> None:
        await link.write(cyton.CMD_STOP)  # in case it is still streaming from a previous session
        await link.drain(quiet_s=0.15)
        await link.write(cyton.CMD_RESET)
        try:
            banner = await link.read_until(cyton.BANNER_END, self.banner_timeout_s)
        except asyncio.TimeoutError:
            raise PortLost(
                f"serial port {self.port}: no Cyton banner ('$$$') after 'v' "
                f"within {self.banner_timeout_s:g} s (board off or not a Cyton?)"
            ) from None
        text = banner.decode("ascii", errors="replace")
        if "Failure" in text:  # the dongle answers for a board that is switched off
            raise PortLost(f"serial port {self.port}: dongle says {text.strip().splitlines()[0]!r}")
        logger.debug("%s: banner %r", self.name, text)
        await link.write(cyton.CMD_START)

    async def _stop_device(self, link: SerialLink) -> None:
        await link.write(cyton.CMD_STOP)


class FramedSerialSource(SerialDeviceSource):
    """A custom board speaking the framed protocol (firmware_bridge/PROTOCOL.md) on a serial port."""

    streams = ("eda", "ecg", "eeg", "bvp", "ibi")
    nominal_rates_hz: dict[str, float] = {}  # told by each frame
    stall_s = 5.0

    @classmethod
    def from_spec(cls, target: str, speed: float | None = None) -> FramedSerialSource:
        spec = f"serial:framed:{target}"
        port, options = split_target(target, ("montage", "baud"), spec)
        montage = _montage(options, None, spec)
        decoder = framed.FramedDecoder(channels={"eeg": montage} if montage else None, source=spec)
        return cls(port, _int_option(options, "baud", 115200, spec), decoder, name=spec)


# ------------------------------------------------------------------------------------------ BLE


class BleDeviceSource(DeviceSource):
    """A BLE peripheral; subclasses subscribe, start it and route notifications to decoders."""

    spec_device = ""  # the DEVICE in ble:DEVICE:ADDRESS

    @classmethod
    def from_spec(
        cls,
        target: str,
        speed: float | None = None,
        client_factory: Callable[..., Any] | None = None,
    ) -> BleDeviceSource:
        """``ble:DEVICE:ADDRESS`` (no options); ``client_factory`` lets tests inject a fake client."""
        spec = f"ble:{cls.spec_device}:{target}"
        address, _ = split_target(target, (), spec)
        return cls(address, name=spec, client_factory=client_factory)

    def __init__(
        self,
        address: str,
        name: str,
        client_factory: Callable[..., Any] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name, backoff)
        self.address = address
        self.client_factory = client_factory or bleak_client
        self._make_decoders(name)

    def _make_decoders(self, name: str) -> None:
        """Create the device's decoders and per-connection state (``name`` labels their errors)."""
        raise NotImplementedError

    async def _setup(self, link: BleLink) -> None:
        raise NotImplementedError

    async def _teardown(self, link: BleLink) -> None:
        """Stop streaming, best effort."""

    def _reset_decoders(self) -> None:
        raise NotImplementedError

    def _decode(self, note: Notification) -> DecodeResult:
        raise NotImplementedError

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        retry = ble_errors() + (LinkLost,)
        while not self._closed:
            link = BleLink(self.address, self.client_factory)
            lost = False
            try:
                try:
                    await link.connect()
                    self._reset_decoders()
                    await self._setup(link)
                except retry as exc:
                    lost = True
                    self._failed(f"cannot connect: {describe_ble_error(exc)}")
                    continue
                self._connected()
                while not self._closed:
                    note = await link.next(self.stall_s)
                    if note is None:
                        raise LinkLost(f"{self.address}: no notifications for {self.stall_s:g} s")
                    for block in self._account(self._decode(note)):
                        yield block
            except retry as exc:
                lost = True
                self._failed(f"connection lost: {describe_ble_error(exc)}")
            finally:
                self.stats.connected = False
                if not lost and link.is_connected:
                    try:
                        await self._teardown(link)
                    except retry as exc:
                        logger.debug("%s: stop: %s", self.name, exc)
                await link.close()
                if lost and not self._closed:
                    await self._wait_before_retry()


class MuseSource(BleDeviceSource):
    """Muse 2 / Muse S (classic protocol): TP9, AF7, AF8, TP10 at 256 Hz (stream "eeg", µV)."""

    streams = ("eeg",)
    nominal_rates_hz = {"eeg": muse.RATE_HZ}

    spec_device = "muse"

    def _make_decoders(self, name: str) -> None:
        self.decoder = muse.MuseDecoder(source=name)
        self.control = muse.MuseControlParser()

    def _reset_decoders(self) -> None:
        self.decoder.reset()

    def _on_control(self, note: Notification) -> None:
        for reply in self.control.feed(note.data):
            logger.debug("%s: control reply %s", self.name, reply)

    async def _setup(self, link: BleLink) -> None:
        chars = link.characteristic_uuids()
        if muse.is_athena(chars):
            raise SourceError(
                f"{self.name}: this is a Muse 'Athena' headset (tag-based data on 273e0013); "
                "only the classic Muse 2 / Muse S protocol is supported"
            )
        if chars and muse.EEG_UUIDS["TP9"] not in chars:
            raise SourceError(
                f"{self.name}: no Muse EEG characteristics (273e0003…); is this a Muse?"
            )
        await link.subscribe(muse.CONTROL_UUID, self._on_control)
        for uuid in muse.EEG_UUIDS.values():
            await link.subscribe(uuid)
        for command in muse.START_SEQUENCE:
            await link.write(muse.CONTROL_UUID, muse.encode_command(command), response=False)

    async def _teardown(self, link: BleLink) -> None:
        for command in muse.STOP_SEQUENCE:
            await link.write(muse.CONTROL_UUID, muse.encode_command(command), response=False)

    def _decode(self, note: Notification) -> DecodeResult:
        return self.decoder.feed(note.uuid, note.data, note.host_s)


class PolarH10Source(BleDeviceSource):
    """Polar H10: ECG 130 Hz via PMD (stream "ecg", µV) and RR intervals via HRS (stream "ibi", ms)."""

    streams = ("ecg", "ibi")
    nominal_rates_hz = {"ecg": polar_pmd.ECG_RATE_HZ}
    control_timeout_s = 5.0

    spec_device = "polar-h10"

    def _make_decoders(self, name: str) -> None:
        self.ecg = polar_pmd.PolarEcgDecoder(source=name)
        self.hr = hrs.HeartRateDecoder(source=name)
        self.ecg_started = False
        self._responses: asyncio.Queue[polar_pmd.PmdResponse] = asyncio.Queue()

    def _reset_decoders(self) -> None:
        self.ecg.reset()
        self.hr.reset()
        self.ecg_started = False
        self._responses = asyncio.Queue()

    def _on_control(self, note: Notification) -> None:
        response = polar_pmd.parse_control_response(note.data)
        if response is not None:
            self._responses.put_nowait(response)

    async def _setup(self, link: BleLink) -> None:
        await link.subscribe(hrs.HEART_RATE_MEASUREMENT)
        await link.subscribe(polar_pmd.PMD_CONTROL, self._on_control)
        await link.subscribe(polar_pmd.PMD_DATA)
        await link.write(polar_pmd.PMD_CONTROL, polar_pmd.START_ECG, response=True)
        try:
            while True:
                response = await next_item(self._responses, self.control_timeout_s)
                if (
                    response.op == polar_pmd.START_ECG[0]
                    and response.measurement_type == polar_pmd.MEASUREMENT_ECG
                ):
                    break
        except asyncio.TimeoutError:
            logger.warning("%s: no reply to the ECG start request; heart rate only", self.name)
            return
        if response.ok:
            self.ecg_started = True
        else:  # e.g. "device in charger": keep the heart rate stream going
            logger.warning(
                "%s: ECG start refused (%s); heart rate only", self.name, response.status_name
            )

    async def _teardown(self, link: BleLink) -> None:
        if self.ecg_started:
            await link.write(polar_pmd.PMD_CONTROL, polar_pmd.STOP_ECG, response=True)

    def _decode(self, note: Notification) -> DecodeResult:
        if note.uuid == polar_pmd.PMD_DATA:
            return self.ecg.feed(note.data, note.host_s)
        return self.hr.feed(note.data, note.host_s)


class HeartRateServiceSource(BleDeviceSource):
    """Any strap or watch with the standard Heart Rate Service: RR intervals (stream "ibi", ms)."""

    streams = ("ibi",)
    nominal_rates_hz: dict[str, float] = {}
    stall_s = 10.0

    spec_device = "hrs"

    def _make_decoders(self, name: str) -> None:
        self.hr = hrs.HeartRateDecoder(source=name)

    def _reset_decoders(self) -> None:
        self.hr.reset()

    async def _setup(self, link: BleLink) -> None:
        await link.subscribe(hrs.HEART_RATE_MEASUREMENT)

    def _decode(self, note: Notification) -> DecodeResult:
        return self.hr.feed(note.data, note.host_s)


class FramedBleSource(BleDeviceSource):
    """A custom board speaking the framed protocol over the Nordic UART Service (TX notifications)."""

    streams = ("eda", "ecg", "eeg", "bvp", "ibi")
    nominal_rates_hz: dict[str, float] = {}

    @classmethod
    def from_spec(
        cls,
        target: str,
        speed: float | None = None,
        client_factory: Callable[..., Any] | None = None,
    ) -> FramedBleSource:
        spec = f"ble:framed:{target}"
        address, options = split_target(target, ("montage",), spec)
        montage = _montage(options, None, spec)
        source = cls(address, name=spec, client_factory=client_factory)
        source.decoder = framed.FramedDecoder(
            channels={"eeg": montage} if montage else None, source=spec
        )
        return source

    def _make_decoders(self, name: str) -> None:
        self.decoder = framed.FramedDecoder(source=name)

    def _reset_decoders(self) -> None:
        self.decoder.reset()

    async def _setup(self, link: BleLink) -> None:
        await link.subscribe(framed.NUS_TX)

    def _decode(self, note: Notification) -> DecodeResult:
        return self.decoder.feed(note.data, note.host_s)
