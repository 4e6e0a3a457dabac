"""Fake serial sensors on real pseudo-terminals, for tests (loaded by path; not a test module).

``FakeCyton`` behaves like the OpenBCI dongle + board as documented (and as brainflow's pty
emulator does): ``v`` -> banner ending ``$$$``, ``b`` -> 33-byte packets at 250 Hz, ``s`` -> stop.
A fault plan injects what real links do: corrupted, truncated and dropped packets, and garbage.
``FakeFramedBoard`` streams framed-protocol frames. Both run as threads in the test process and
serve a pty whose slave path (or a symlink to it) the source under test opens.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import numpy as np

from firmware_bridge.protocols import cyton, framed

BANNER = (
    b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n"
    b"LIS3DH Device ID: 0x33\nFirmware: v3.1.2\n$$$"
)


def cyton_counts(k: int) -> list[int]:
    """Deterministic int24 counts for packet k, positive and negative, with no 0xA0 byte in them
    (so a test's expectations never hinge on a chance false sync inside channel data)."""
    out = []
    for ch in range(cyton.N_CHANNELS):
        value = ((k * 7919 + ch * 1_234_567) % (1 << 24)) - (1 << 23)
        while 0xA0 in (value & 0xFFFFFF).to_bytes(3, "big"):
            value += 1
        out.append(value)
    return out


class PtyDevice(threading.Thread):
    """A thread serving the master side of a fresh pty; ``path`` is the slave (or ``link``)."""

    def __init__(self, link: str | None = None) -> None:
        super().__init__(daemon=True)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        if link is not None:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(self.path, link)
            self.path = link
        self.stop_event = threading.Event()
        self.commands = bytearray()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return
            view = view[n:]

    def read_commands(self, timeout_s: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        if not ready:
            return b""
        try:
            data = os.read(self.master, 1024)
        except OSError:  # nobody has the slave open right now
            time.sleep(timeout_s)
            return b""
        self.commands += data
        return data

    def vanish(self) -> None:
        """Unplug: stop and close both ends (the reader sees an I/O error)."""
        self.stop_event.set()
        if self.ident is not None:
            self.join(2.0)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    close = vanish


class FakeCyton(PtyDevice):
    """Cyton board + dongle. ``faults``: packet number -> "drop" | "corrupt" | "truncate" | "garbage"."""

    def __init__(
        self,
        faults: dict[int, str] | None = None,
        n_packets: int | None = None,
        link: str | None = None,
        rate_hz: float = cyton.RATE_HZ,
    ) -> None:
        super().__init__(link)
        self.faults = dict(faults or {})
        self.n_packets = n_packets
        self.rate_hz = rate_hz
        self.streaming = False
        self.next_k = 0
        self.sent_intact: list[int] = []  # packet numbers that went out whole
        self.starts = 0

    def packet(self, k: int) -> bytes:
        return cyton.encode_cyton_packet(k, cyton_counts(k), aux=bytes([0, 16, 0, 32, 64, 0]))

    def run(self) -> None:
        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            wait = max(0.0, next_t - time.monotonic()) if self.streaming else 0.05
            cmd = self.read_commands(min(wait, 0.05))
            for c in cmd:
                if c == ord("v"):
                    self.streaming = False
                    self.write(BANNER)
                elif c == ord("b"):
                    self.streaming = True
                    self.starts += 1
                    next_t = time.monotonic()
                elif c == ord("s"):
                    self.streaming = False
            if not self.streaming or time.monotonic() < next_t:
                continue
            due = int((time.monotonic() - next_t) / period) + 1
            out = bytearray()
            for _ in range(due):
                if self.n_packets is not None and self.next_k >= self.n_packets:
                    self.streaming = False
                    break
                k = self.next_k
                self.next_k += 1
                fault = self.faults.get(k)
                pkt = self.packet(k)
                if fault == "drop":
                    continue
                if fault == "corrupt":  # footer hit by a bit error
                    out += pkt[:-1] + b"\x5a"
                    continue
                if fault == "truncate":
                    out += pkt[:20]
                    continue
                if fault == "garbage":
                    out += b"\xa0\x13\x37\xc0\xff\x00\xa0"
                out += pkt
                self.sent_intact.append(k)
            self.write(bytes(out))
            next_t += due * period


class FakeFramedBoard(PtyDevice):
    """A custom EDA + ECG board speaking the framed protocol; ``drop`` lists frame numbers not sent."""

    def __init__(
        self,
        n_frames: int,
        drop: set[int] | None = None,
        corrupt: set[int] | None = None,
        frame_period_s: float = 0.04,
        link: str | None = None,
    ) -> None:
        super().__init__(link)
        self.n_frames = n_frames
        self.drop = drop or set()
        self.corrupt = corrupt or set()
        self.frame_period_s = frame_period_s
        self.started = threading.Event()

    def frames(self, k: int) -> bytes:
        """Frame pair k: ECG 10 samples at 250 Hz (int16 counts x 2.5 µV) and EDA 1 sample at 25 Hz,
        40 ms of device time (sent every ``frame_period_s``, 40 ms: real time)."""
        ecg = np.arange(10) + 10 * k - 300
        eda = [1000 + k]
        t_us = 1_000_000 + k * 40_000
        return framed.encode_frame("ecg", ecg, k, t_us, 250.0, "int16", 2.5) + framed.encode_frame(
            "eda", eda, k, t_us, 25.0, "int24", 0.001
        )

    def run(self) -> None:
        # Start this thread once the host has the port open: pyserial flushes input on open.
        self.started.set()
        next_t = time.monotonic()
        for k in range(self.n_frames):
            if self.stop_event.is_set():
                return
            # a device clock: frame k goes out at start + k x period (no accumulated sleep overshoot)
            time.sleep(max(0.0, next_t - time.monotonic()))
            next_t += self.frame_period_s
            data = self.frames(k)
            if k in self.drop:
                data = b""
            elif k in self.corrupt:
                data = data[:5] + bytes([data[5] ^ 0x41]) + data[6:]
            # line noise (a boot message), then the 0x00 a sender puts out after a reset
            self.write(b"\x17noise\x00" + data if k == 3 else data)
        while not self.stop_event.is_set():
            self.read_commands(0.05)
