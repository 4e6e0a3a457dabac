"""Serial ports (USB dongles, USB-UART bridges, Bluetooth SPP ``/dev/rfcomm*``) via pyserial.

Thin: a reader thread moves bytes, stamped with the host receive time, into an asyncio queue;
nothing here knows a wire format. A vanished port (unplugged dongle, pty closed) surfaces as
``PortLost`` from ``read``; the source decides to reconnect. pyserial is imported on ``open``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from firmware_bridge.clock import arrival_time
from firmware_bridge.transports.aio import next_item

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05  # reader thread poll: bounds how long close() waits for it
MAX_READ_BYTES = 4096


class PortLost(ConnectionError):
    """The serial port failed or vanished while open."""


def open_pyserial(port: str, baudrate: int) -> Any:
    """A pyserial ``Serial``, exclusive (a second reader on the same port would steal bytes)."""
    import serial  # lazy: pyserial only when a serial source is opened

    kwargs: dict[str, Any] = {"baudrate": baudrate, "timeout": READ_TIMEOUT_S, "write_timeout": 2.0}
    if not port.startswith(("socket://", "rfc2217://", "loop://")):
        kwargs["exclusive"] = True
    try:
        return serial.serial_for_url(port, **kwargs)
    except serial.SerialException as exc:  # pyserial wraps OSError; keep the one-line reason
        raise OSError(f"serial port {port}: {exc}") from exc


class SerialLink:
    """One open serial port: ``await read()`` -> (bytes, host receive unix s); ``await write(b)``."""

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        opener: Callable[[str, int], Any] = open_pyserial,
        clock: Callable[[], float] = arrival_time,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self._opener = opener
        self._clock = clock
        self._serial: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: asyncio.Queue[tuple[bytes, float] | BaseException] = asyncio.Queue()

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self) -> None:
        """Open the port (OSError if it is missing or busy) and start reading."""
        loop = asyncio.get_running_loop()
        self._serial = await loop.run_in_executor(None, self._opener, self.port, self.baudrate)
        self._stop.clear()
        self._queue = asyncio.Queue()
        self._thread = threading.Thread(
            target=self._read_loop,
            args=(loop, self._serial, self._queue),
            name=f"serial-reader {self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.debug("serial %s open at %d baud", self.port, self.baudrate)

    def _read_loop(
        self,
        loop: asyncio.AbstractEventLoop,
        ser: Any,
        queue: asyncio.Queue[tuple[bytes, float] | BaseException],
    ) -> None:
        while not self._stop.is_set():
            try:
                waiting = ser.in_waiting
                data = ser.read(min(MAX_READ_BYTES, waiting) if waiting else 1)
            except Exception as exc:
                if not self._stop.is_set():
                    loop.call_soon_threadsafe(
                        queue.put_nowait, PortLost(f"serial port {self.port}: {exc}")
                    )
                return
            if data:
                host_s = self._clock()
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, (bytes(data), host_s))
                except RuntimeError:  # event loop closed under us: nothing left to deliver to
                    return

    async def read(self, timeout_s: float) -> tuple[bytes, float] | None:
        """Next chunk and its receive time; None after ``timeout_s`` of silence; PortLost if gone."""
        try:
            item = await next_item(self._queue, timeout_s)
        except asyncio.TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def drain(self, quiet_s: float = 0.1, max_s: float = 2.0) -> bytes:
        """Read until ``quiet_s`` passes without bytes (or ``max_s``); returns what came."""
        out = bytearray()
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            item = await self.read(quiet_s)
            if item is None:
                break
            out += item[0]
        return bytes(out)

    async def read_until(self, marker: bytes, timeout_s: float) -> bytes:
        """Read until ``marker`` appears (e.g. the Cyton's ``$$$``); TimeoutError if it does not."""
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while marker not in out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(
                    f"serial port {self.port}: no {marker!r} within {timeout_s:g} s"
                )
            item = await self.read(left)
            if item is not None:
                out += item[0]
        return bytes(out)

    async def write(self, data: bytes) -> None:
        if self._serial is None:
            raise PortLost(f"serial port {self.port}: not open")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._write_all, data)
        except Exception as exc:
            raise PortLost(f"serial port {self.port}: write failed: {exc}") from exc

    def _write_all(self, data: bytes) -> None:
        self._serial.write(data)
        self._serial.flush()

    async def close(self) -> None:
        self._stop.set()
        ser, self._serial = self._serial, None
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 1.0)
        if ser is not None:
            try:
                ser.close()
            except Exception as exc:
                logger.debug("serial %s close: %s", self.port, exc)
