"""``--source`` specs -> sources. One table, so that the CLI, config and docs agree.

Spec grammar: ``simulate``, ``replay:e4:DIR``, ``replay:wfdb:RECORD``, ``replay:edf:FILE``, ``replay:record:DIR``, ``camera:INDEX|FILE|PIPELINE``,
``serial:DEVICE:PORT``, ``ble:DEVICE:ADDRESS``.
"""

from __future__ import annotations

import importlib

from edge.errors import SourceError
from firmware_bridge.source import Source

# (transport, device) -> "module:factory"; factory(target: str, speed: float | None) -> Source
SOURCE_FACTORIES: dict[tuple[str, str], str] = {
    ("simulate", ""): "firmware_bridge.simulate:SimulatedWearable.from_spec",
    ("replay", "e4"): "firmware_bridge.replay:E4Replay.from_spec",
    ("replay", "wfdb"): "firmware_bridge.replay:WfdbReplay.from_spec",
    ("replay", "edf"): "firmware_bridge.replay:EdfReplay.from_spec",
    ("replay", "record"): "firmware_bridge.replay:RecordingReplay.from_spec",
    ("camera", ""): "firmware_bridge.transports.camera:CameraSource.from_spec",
    ("serial", "cyton"): "firmware_bridge.bridges:CytonSerialSource.from_spec",
    ("serial", "framed"): "firmware_bridge.bridges:FramedSerialSource.from_spec",
    ("ble", "muse"): "firmware_bridge.bridges:MuseSource.from_spec",
    ("ble", "polar-h10"): "firmware_bridge.bridges:PolarH10Source.from_spec",
    ("ble", "hrs"): "firmware_bridge.bridges:HeartRateServiceSource.from_spec",
    ("ble", "framed"): "firmware_bridge.bridges:FramedBleSource.from_spec",
}


def parse_spec(spec: str) -> tuple[str, str, str]:
    """``serial:cyton:/dev/ttyUSB0`` -> ("serial", "cyton", "/dev/ttyUSB0")."""
    transport, _, rest = spec.partition(":")
    if transport == "simulate":
        return "simulate", "", rest
    if transport == "camera":
        if not rest:
            raise SourceError(f"source {spec!r}: expected camera:INDEX, camera:FILE or camera:PIPELINE")
        return "camera", "", rest
    if transport in ("replay", "serial", "ble"):
        device, sep, target = rest.partition(":")
        known = sorted(d for t, d in SOURCE_FACTORIES if t == transport)
        if (transport, device) not in SOURCE_FACTORIES:
            raise SourceError(f"source {spec!r}: unknown device {device!r} for {transport} (known: {', '.join(known)})")
        if not sep or not target:
            raise SourceError(f"source {spec!r}: missing target after '{transport}:{device}:'")
        return transport, device, target
    known_transports = "simulate, replay:e4:DIR, replay:wfdb:RECORD, replay:edf:FILE, replay:record:DIR, camera:X, serial:DEVICE:PORT, ble:DEVICE:ADDRESS"
    raise SourceError(f"source {spec!r}: unknown kind {transport!r} (known: {known_transports})")


def open_source(spec: str, speed: float | None = 1.0) -> Source:
    transport, device, target = parse_spec(spec)
    module_name, _, attr = SOURCE_FACTORIES[(transport, device)].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceError(f"source {spec!r}: support not available ({exc})") from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part)
    source = factory(target, speed)
    source.spec = spec
    return source
