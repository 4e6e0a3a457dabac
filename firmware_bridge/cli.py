"""``emotion-edge devices scan|check``: find sensors nearby, and check that a source delivers.

``scan`` lists BLE peripherals a bridge recognises (by advertised name or service UUID) with the
``--source`` spec to use, plus serial ports that look like a sensor dongle. Without a Bluetooth
adapter or BlueZ/D-Bus it says so in one line.

``check SPEC`` opens any source (``firmware_bridge.devices.open_source``: devices, replays, the
simulator), reads it for ``--duration`` seconds and reports per stream: samples received, the
measured rate, samples known lost, and a simple quality: the fraction of expected samples received
(expected from sequence gaps and, for regular streams, from the nominal rate over the time since
the first block); plus lost packets, decode errors and reconnects. ``--json`` prints one object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from edge.errors import EmotionEdgeError, SourceError

# (device, spec kind) recognised from a BLE advertisement
NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
MUSE_SERVICE = "0000fe8d-0000-1000-8000-00805f9b34fb"
HRS_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
# USB VID:PID of serial adapters: OpenBCI dongle (FTDI FT231X), common ESP32/RP2040 bridges
SERIAL_HINTS = {
    (0x0403, 0x6015): "cyton",  # FTDI FT231X: the OpenBCI Cyton dongle
    (0x10C4, 0xEA60): "framed",  # Silicon Labs CP210x (many ESP32 boards)
    (0x1A86, 0x7523): "framed",  # WCH CH340
    (0x303A, 0x1001): "framed",  # Espressif USB-JTAG/serial (ESP32-S3/C3)
    (0x2E8A, 0x000A): "framed",  # Raspberry Pi RP2040 CDC
}


def recognise_ble(name: str | None, service_uuids: list[str] | tuple[str, ...]) -> str | None:
    """The bridge device kind for an advertisement, or None. Order matters: most specific first."""
    uuids = {u.lower() for u in service_uuids}
    label = (name or "").strip()
    if MUSE_SERVICE in uuids or label.lower().startswith("muse"):
        return "muse"
    if label.startswith("Polar H10") or (PMD_SERVICE in uuids and label.startswith("Polar")):
        return "polar-h10"
    if NUS_SERVICE in uuids:
        return "framed"
    if HRS_SERVICE in uuids:
        return "hrs"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="devices_command", metavar="ACTION")
    scan = sub.add_parser("scan", help="list nearby BLE sensors and serial sensor dongles")
    scan.add_argument(
        "--timeout", type=float, default=5.0, help="BLE scan time in seconds (default 5)"
    )
    scan.add_argument(
        "--all", action="store_true", help="also list BLE devices no bridge recognises"
    )
    scan.add_argument("--json", action="store_true", help="print one JSON object")
    check = sub.add_parser(
        "check", help="read a source for a while and report rates, losses and quality"
    )
    check.add_argument(
        "spec", help="a --source spec, e.g. serial:cyton:/dev/ttyUSB0, ble:hrs:AA:BB:…, simulate"
    )
    check.add_argument("--duration", type=float, default=10.0, help="seconds to read (default 10)")
    check.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    if args.devices_command == "scan":
        return scan_main(args)
    if args.devices_command == "check":
        return check_main(args)
    print(
        "usage: emotion-edge devices {scan,check} …  (see emotion-edge devices --help)",
        file=sys.stderr,
    )
    return 2


# -------------------------------------------------------------------------------------- scan


def serial_candidates() -> list[dict[str, Any]]:
    """Serial ports whose USB IDs look like a sensor dongle, with a suggested spec."""
    try:
        from serial.tools import list_ports
    except ImportError:
        return []
    found = []
    for port in list_ports.comports():
        kind = SERIAL_HINTS.get((port.vid, port.pid)) if port.vid is not None else None
        if kind is None and not port.device.startswith("/dev/rfcomm"):
            continue
        found.append(
            {
                "port": port.device,
                "description": port.description or "",
                "spec": f"serial:{kind or 'framed'}:{port.device}",
            }
        )
    return found


async def _ble_scan(timeout_s: float) -> list[tuple[str, str | None, list[str], int | None]]:
    from bleak import BleakScanner  # lazy: only the scan needs bleak

    seen = await BleakScanner.discover(timeout=timeout_s, return_adv=True)
    return [
        (device.address, adv.local_name or device.name, list(adv.service_uuids or ()), adv.rssi)
        for device, adv in seen.values()
    ]


def scan_main(args: argparse.Namespace) -> int:
    from firmware_bridge.transports.ble import ble_errors, describe_ble_error

    ports = serial_candidates()
    try:
        adverts = asyncio.run(_ble_scan(args.timeout))
        ble_error = None
    except ImportError as exc:
        adverts, ble_error = [], f"Bluetooth scanning needs bleak ({exc})"
    except ble_errors() as exc:
        adverts, ble_error = [], describe_ble_error(exc)
    devices = []
    for address, name, uuids, rssi in sorted(adverts, key=lambda a: -(a[3] or -999)):
        kind = recognise_ble(name, uuids)
        if kind is None and not args.all:
            continue
        devices.append(
            {
                "address": address,
                "name": name,
                "rssi": rssi,
                "kind": kind,
                "spec": f"ble:{kind}:{address}" if kind else None,
            }
        )
    if args.json:
        print(json.dumps({"ble": devices, "ble_error": ble_error, "serial": ports}))
    else:
        for d in devices:
            print(
                f"{d['spec'] or '(not a known sensor)':40s} {d['name'] or '?':24s} rssi {d['rssi']}"
            )
        for p in ports:
            print(f"{p['spec']:40s} {p['description']}")
        if not devices and not ports and ble_error is None:
            print(
                f"no known sensors found (BLE scanned for {args.timeout:g} s; no matching serial ports)"
            )
    if ble_error is not None:
        if not args.json:
            print(f"emotion-edge devices scan: {ble_error}", file=sys.stderr)
        return 1 if not ports else 0
    return 0


# ------------------------------------------------------------------------------------- check


@dataclass
class StreamTally:
    samples: int = 0
    lost_samples: int = 0
    nominal_rate_hz: float = 0.0
    first_arrival_s: float | None = None
    last_arrival_s: float | None = None
    first_block_n: int = 0

    def add(self, n: int, lost: int, rate_hz: float, arrival_s: float) -> None:
        if self.first_arrival_s is None:
            self.first_arrival_s = arrival_s
            self.first_block_n = n
        self.last_arrival_s = arrival_s
        self.samples += n
        self.lost_samples += lost
        if rate_hz > 0:
            self.nominal_rate_hz = rate_hz

    @property
    def rate_hz(self) -> float:
        """Samples per wall-clock second between the first and last block received."""
        if self.first_arrival_s is None or self.last_arrival_s is None:
            return 0.0
        span = self.last_arrival_s - self.first_arrival_s
        return (self.samples - self.first_block_n) / span if span > 0 else 0.0

    def quality(self, end_s: float) -> float:
        """Fraction of expected samples received: the lower of (a) received / (received + known lost
        from sequence gaps) and, for regular streams, (b) received / (nominal rate x time since the
        first block) — (b) catches a device that stops sending, which no sequence gap shows."""
        total = self.samples + self.lost_samples
        if not total:
            return 0.0
        fraction = self.samples / total
        if self.nominal_rate_hz > 0 and self.first_arrival_s is not None:
            expected = self.first_block_n + self.nominal_rate_hz * max(
                0.0, end_s - self.first_arrival_s
            )
            fraction = min(fraction, self.samples / expected if expected > 0 else 1.0)
        return max(0.0, min(1.0, fraction))


@dataclass
class CheckReport:
    spec: str
    duration_s: float
    streams: dict[str, StreamTally] = field(default_factory=dict)
    lost: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    connected: bool = False
    error: str | None = None
    ended: bool = False
    end_s: float = 0.0  # monotonic time the check stopped reading

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "duration_s": round(self.duration_s, 3),
            "samples": {k: t.samples for k, t in self.streams.items()},
            "rate_hz": {k: round(t.rate_hz, 3) for k, t in self.streams.items()},
            "nominal_rate_hz": {
                k: t.nominal_rate_hz for k, t in self.streams.items() if t.nominal_rate_hz
            },
            "lost_samples": {k: t.lost_samples for k, t in self.streams.items()},
            "lost": self.lost,
            "decode_errors": self.decode_errors,
            "reconnects": self.reconnects,
            "connected": self.connected,
            "quality": {k: round(t.quality(self.end_s), 4) for k, t in self.streams.items()},
            "ended": self.ended,
            "error": self.error,
        }


async def check_source(spec: str, duration_s: float) -> CheckReport:
    """Open ``spec``, read it for ``duration_s`` wall seconds, and tally what arrived."""
    from firmware_bridge.devices import open_source

    try:
        source = open_source(spec, speed=1.0)
    except (ValueError, OSError) as exc:  # a reader's own message, named: never a traceback
        raise SourceError(f"source {spec!r}: {exc}") from None
    report = CheckReport(spec=spec, duration_s=duration_s)
    iterator = source.blocks().__aiter__()
    start = time.monotonic()
    deadline = start + duration_s
    pending: asyncio.Future | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Not wait_for: cancelling the source mid-read would tear it down before the stats are read.
            pending = pending or asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=left)
            if not done:
                break
            future, pending = pending, None
            try:
                block = future.result()
            except StopAsyncIteration:
                report.ended = True
                break
            except EmotionEdgeError as exc:  # a bad file found while reading it: one line, named
                report.error = str(exc)
                report.ended = True
                break
            stream = getattr(block, "stream", "video")
            tally = report.streams.setdefault(stream, StreamTally())
            tally.add(
                int(getattr(block, "n", 1)),
                int(getattr(block, "lost_samples", 0)),
                float(getattr(block, "rate_hz", 0.0)),
                time.monotonic(),
            )
    finally:
        report.end_s = time.monotonic()
        report.duration_s = report.end_s - start
        stats = source.stats
        report.lost = stats.lost
        report.decode_errors = stats.decode_errors
        report.reconnects = stats.reconnects
        report.connected = stats.connected
        report.error = report.error or getattr(source, "last_error", None)
        await source.close()
        if pending is not None:
            pending.cancel()
            try:
                await pending
            except (asyncio.CancelledError, StopAsyncIteration):
                pass
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return report


def check_main(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        raise SourceError(f"--duration must be positive, got {args.duration:g}")
    report = asyncio.run(check_source(args.spec, args.duration))
    total = sum(t.samples for t in report.streams.values())
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(
            f"{report.spec}: {report.duration_s:.1f} s, {'connected' if report.connected else 'not connected'}"
            f", {report.reconnects} reconnects, {report.lost} packets lost, {report.decode_errors} decode errors"
        )
        for name, t in sorted(report.streams.items()):
            nominal = f" (nominal {t.nominal_rate_hz:g} Hz)" if t.nominal_rate_hz else ""
            print(
                f"  {name:6s} {t.samples:8d} samples  {t.rate_hz:8.2f} Hz{nominal}  "
                f"lost {t.lost_samples}  quality {t.quality(report.end_s):.3f}"
            )
        if not total:
            print(f"  no samples received{': ' + report.error if report.error else ''}")
        elif report.error and report.ended:
            print(f"  stopped early: {report.error}")
    return 0 if total else 1
