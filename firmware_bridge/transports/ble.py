"""Bluetooth Low Energy via bleak: connect, subscribe, write, and queue notifications.

Thin: notifications are stamped with the host receive time and queued; wire formats are the
decoders' business, start-up sequences the sources'. The client comes from a factory
``factory(address, disconnected_callback=cb)`` (``bleak.BleakClient`` by default, imported only
here, only when a BLE source connects), so tests inject a fake with the same few members:
``connect()``, ``disconnect()``, ``start_notify(uuid, cb)``, ``write_gatt_char(uuid, data,
response=)``, ``is_connected``, ``services`` and the disconnected callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware_bridge.clock import arrival_time
from firmware_bridge.transports.aio import next_item

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0


class LinkLost(ConnectionError):
    """The BLE connection dropped (disconnected callback) or stopped delivering."""


@dataclass(frozen=True)
class Notification:
    uuid: str  # characteristic, lower case
    data: bytes
    host_s: float  # host receive time, unix s


def bleak_client(address: str, disconnected_callback: Callable[[Any], None]) -> Any:
    """The real client: ``bleak.BleakClient`` (imported lazily)."""
    from bleak import BleakClient

    return BleakClient(
        address, disconnected_callback=disconnected_callback, timeout=CONNECT_TIMEOUT_S
    )


def ble_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this attempt failed, try again later" (bleak's when installed)."""
    errors: tuple[type[BaseException], ...] = (
        OSError,
        EOFError,
        asyncio.TimeoutError,
        ConnectionError,
    )
    try:
        from bleak.exc import BleakError
    except ImportError:
        return errors
    return errors + (BleakError,)


def describe_ble_error(exc: BaseException) -> str:
    """One line for a user: says plainly when there is no adapter or no BlueZ/D-Bus."""
    name = type(exc).__name__
    text = str(exc) or name
    if (
        isinstance(exc, (FileNotFoundError, ConnectionRefusedError))
        or "org.freedesktop.DBus" in text
        or "dbus" in text.lower()
    ):
        return f"no Bluetooth here: BlueZ cannot be reached over the D-Bus system bus ({text})"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out (device off, out of range, or connected to something else?)"
    if name == "BleakBluetoothNotAvailableError" or "No Bluetooth adapters" in text:
        return f"no Bluetooth here: no Bluetooth adapter ({text})"
    return f"{name}: {text}"


class BleLink:
    """One connection attempt to one peripheral; make a new one to reconnect."""

    def __init__(
        self,
        address: str,
        client_factory: Callable[..., Any] = bleak_client,
        clock: Callable[[], float] = arrival_time,
    ) -> None:
        self.address = address
        self._factory = client_factory
        self._clock = clock
        self._queue: asyncio.Queue[Notification | LinkLost] = asyncio.Queue()
        self._client: Any = None
        self._lost = False

    def _on_disconnect(self, _client: Any) -> None:
        if not self._lost:
            self._lost = True
            self._queue.put_nowait(LinkLost(f"{self.address}: disconnected"))

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self._client = self._factory(self.address, disconnected_callback=self._on_disconnect)
        await asyncio.wait_for(self._client.connect(), timeout_s)

    @property
    def is_connected(self) -> bool:
        return bool(self._client is not None and self._client.is_connected and not self._lost)

    def characteristic_uuids(self) -> set[str]:
        """Every characteristic the peripheral exposes (empty if services are not resolved)."""
        try:
            return {str(c.uuid).lower() for s in self._client.services for c in s.characteristics}
        except Exception as exc:
            logger.debug("%s: services not available: %s", self.address, exc)
            return set()

    async def subscribe(
        self, uuid: str, handler: Callable[[Notification], None] | None = None
    ) -> None:
        """Notifications of ``uuid`` go to the queue (or to ``handler``, e.g. a control point)."""
        uuid = uuid.lower()

        def on_notify(_sender: Any, data: bytearray) -> None:
            note = Notification(uuid, bytes(data), self._clock())
            if handler is not None:
                handler(note)
            else:
                self._queue.put_nowait(note)

        await self._client.start_notify(uuid, on_notify)

    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        await self._client.write_gatt_char(uuid, data, response=response)

    async def next(self, timeout_s: float) -> Notification | None:
        """The next notification; None after ``timeout_s`` of silence; LinkLost when disconnected."""
        try:
            item = await next_item(self._queue, timeout_s)
        except asyncio.TimeoutError:
            if not self.is_connected:
                raise LinkLost(f"{self.address}: not connected") from None
            return None
        if isinstance(item, LinkLost):
            raise item
        return item

    async def close(self) -> None:
        client, self._client = self._client, None
        self._lost = True
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), 5.0)
        except (Exception, asyncio.TimeoutError) as exc:
            logger.debug("%s: disconnect: %s", self.address, exc)
