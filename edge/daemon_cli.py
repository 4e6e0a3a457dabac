"""``emotion-edge run``: the daemon from the command line (config file + flags that override it).

Examples::

    emotion-edge run --source simulate --broker mqtt://127.0.0.1:1883
    emotion-edge run --config /etc/emotion-edge.toml --source replay:e4:/data/S01 --speed max
    emotion-edge run --config my.toml --print-config
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from edge.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config (see examples/emotion-edge.toml)")
    parser.add_argument("--source", metavar="SPEC", action="append", dest="sources",
                        help="sensor source, repeatable: simulate[:opts], replay:e4:DIR, replay:wfdb:RECORD, "
                             "replay:record:DIR, replay:edf:FILE, "
                             "camera:INDEX|FILE, serial:DEVICE:PORT, ble:DEVICE:ADDRESS (replaces daemon.sources)")
    parser.add_argument("--broker", metavar="URL", help="mqtt://[user:pass@]host[:port] or mqtts://...")
    parser.add_argument("--device-id", metavar="ID", help="device id in the MQTT topics")
    parser.add_argument("--duration", metavar="SECONDS", type=float,
                        help="stop after this many wall-clock seconds (0 = start up, connect and stop)")
    parser.add_argument("--speed", metavar="X", help="pace of replayed/simulated sources: a factor (1 = real time) or 'max'")
    parser.add_argument("--state-dir", metavar="DIR", help="where the outbox (and seq counter) lives")
    parser.add_argument("--models-dir", metavar="DIR", help="models folder (default: the shipped models)")
    parser.add_argument("--homeassistant", action="store_true", default=None,
                        help="publish Home Assistant MQTT discovery configs (homeassistant.enabled)")
    parser.add_argument("--allow-plaintext-remote", action="store_true", default=None,
                        help="allow plaintext MQTT to a non-loopback broker, e.g. Home Assistant's on a LAN "
                             "(mqtt.allow_plaintext_remote): states and credentials cross the network unencrypted")
    parser.add_argument("--record", metavar="DIR", help="record raw streams (EDF+/BDF+), states and events "
                                                          "(JSON lines) into DIR (record.dir; docs/recording.md)")
    parser.add_argument("--lsl", action="store_true", default=None,
                        help="publish each raw stream and the states as LSL outlets (lsl.enabled; needs liblsl)")
    parser.add_argument("--print-config", action="store_true", help="print the config in force as TOML and exit")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as dotted config keys (they replace the file's values)."""
    from edge.config import parse_speed  # noqa: PLC0415

    out: dict[str, Any] = {}
    if getattr(args, "sources", None):
        out["daemon.sources"] = tuple(args.sources)
    if getattr(args, "broker", None):
        out["mqtt.broker"] = args.broker
    if getattr(args, "device_id", None):
        out["daemon.device_id"] = args.device_id
    if getattr(args, "duration", None) is not None:
        if not args.duration >= 0:
            raise ConfigError(f"config: --duration: must be >= 0, got {args.duration:g}")
        out["daemon.duration_s"] = float(args.duration)
    if getattr(args, "speed", None) is not None:
        out["daemon.speed"] = parse_speed(args.speed, "--speed")
    if getattr(args, "state_dir", None):
        out["daemon.state_dir"] = args.state_dir
    if getattr(args, "models_dir", None):
        out["models.dir"] = args.models_dir
    if getattr(args, "homeassistant", None):
        out["homeassistant.enabled"] = True
    if getattr(args, "allow_plaintext_remote", None):
        out["mqtt.allow_plaintext_remote"] = True
    if getattr(args, "record", None):
        out["record.dir"] = args.record
    if getattr(args, "lsl", None):
        out["lsl.enabled"] = True
    return out


def main(args: argparse.Namespace) -> int:
    from edge.config import format_config, load_config  # noqa: PLC0415

    config = load_config(args.config, overrides_from_args(args))
    if args.print_config:
        sys.stdout.write(format_config(config))
        return 0
    from edge.daemon import run_daemon  # noqa: PLC0415

    result = asyncio.run(run_daemon(config))
    return 0 if result is not None else 1
