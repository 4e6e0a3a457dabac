"""``emotion-edge demo``: embedded broker + simulated wearable + daemon + live view, in one command.

Needs no mosquitto and no hardware: the broker is ``edge.broker.EmbeddedBroker`` on loopback,
the sensors are the scripted ``simulate`` source (calm -> stressed -> amused -> calm, every 10
simulated minutes), and the live view is ``edge.listen.listen`` subscribed to the same broker.
``--speed 10`` (the default) makes a state arrive about every half second.

The demo tells the truth from its first seconds: eda and cardiac need 300 s of signal before
their first estimate, so the simulator's script starts ``PRIME_S`` earlier on its own clock and
that stretch is produced at full speed (``simulate:prime=``); the daemon publishes no state from
it, so the table starts where every simulated modality is ready, and says so. The EEG headband
is put on ``EEG_LEAD_S`` before the table starts (``simulate:late=``): EEG needs a minute of
baseline, not thirty, and its windows were half the cost of priming. Its times are the
simulator's clock (one clock per table); a line marks each change of the script's true phase,
so the label's lag can be read off.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import threading
import time
from typing import Any, TextIO

from firmware_bridge.simulate import CYCLE_S

log = logging.getLogger(__name__)

# Three script cycles: eda/cardiac (300-s windows) are full and their 20-min trailing baselines
# have filled (before that the cardiac model reads the amused phase as stress); ~3 s of CPU here.
PRIME_S = 3 * CYCLE_S
# The headband goes on in the script's last calm stretch before the table: eeg's baseline is then
# a rest baseline, and full (edge.estimators.EEG_BASELINE_FULL_S = 60 s) at the first row.
EEG_LEAD_S = 120.0
# Measured over the script's phases (docs/fusion.md; tests/test_demo.py holds it): how long after a
# phase change (simulated seconds) the label has followed.
LABEL_LAG_NOTE = "the label follows each phase within about 90 simulated s (300-s physiology windows, hysteresis, dwell)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", metavar="SECONDS", type=float, default=None,
                        help="stop after this many wall-clock seconds (default: until Ctrl-C)")
    parser.add_argument("--speed", metavar="X", default="10",
                        help="simulation pace: a factor (1 = real time) or 'max' (default 10)")
    parser.add_argument("--json", action="store_true", help="print each received state as one JSON line on stdout")
    parser.add_argument("--source", metavar="SPEC", action="append", dest="sources", default=[],
                        help="an extra source besides the simulator, e.g. camera:0 (repeatable)")
    parser.add_argument("--device-id", metavar="ID", default="demo", help="device id (default demo)")
    parser.add_argument("--port", type=int, default=0, help="embedded broker port (default: any free port)")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument("--state-dir", metavar="DIR", help="outbox folder (default: a temporary folder)")


class _CountingOut:
    """Stdout for the live view: counts state lines and goes quiet once the demo is over."""

    def __init__(self, stream: TextIO, as_json: bool):
        self.stream = stream
        self.as_json = as_json
        self.states = 0
        self.offline_seen = threading.Event()
        self.closed = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            if self.closed:
                return len(text)
            if self.as_json:
                self.states += text.count("\n")
            elif " status offline" in text:
                self.offline_seen.set()
            self.stream.write(text)
            return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self.closed:
                self.stream.flush()


def main(args: argparse.Namespace) -> int:
    from edge.broker import EmbeddedBroker  # noqa: PLC0415
    from edge.config import load_config, parse_speed  # noqa: PLC0415
    from edge.daemon import run_daemon  # noqa: PLC0415
    from edge.errors import ConfigError  # noqa: PLC0415
    from edge.listen import listen  # noqa: PLC0415

    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"demo: --duration: must be > 0, got {args.duration:g}")
    speed = parse_speed(args.speed, "--speed")
    broker = EmbeddedBroker("127.0.0.1", args.port)
    port = broker.start()
    url = f"mqtt://127.0.0.1:{port}"
    log.info("demo: embedded MQTT broker on %s (subscribe with: emotion-edge listen --broker %s)", url, url)
    out = _CountingOut(sys.stdout, args.json)
    ready = threading.Event()
    listener = threading.Thread(
        target=_listen_quietly, name="live-view", daemon=True,
        kwargs=dict(listen=listen, broker_url=url, device_id=args.device_id, as_json=args.json, out=out,
                    on_ready=ready.set))
    listener.start()
    tmp: Any = None
    try:
        if not ready.wait(10.0):
            log.warning("demo: live view not subscribed after 10 s; starting anyway")
        state_dir = args.state_dir
        if state_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="emotion-edge-demo-")
            state_dir = tmp.name
        # the script started PRIME_S ago on the simulator's own clock; that part runs at full speed
        start_unix = round(time.time() - PRIME_S, 3)
        if not args.json:
            out.write(f"---- simulated wearable (eeg, ecg -> cardiac, eda) at {args.speed}x; times are the simulator's clock. "
                      f"Its script started {PRIME_S / 60:.0f} min earlier, run at full speed and not published, so "
                      f"eda/cardiac's 300-s windows and 20-min baselines are full from the first row (the EEG headband "
                      f"went on {EEG_LEAD_S / 60:.0f} min before it); {LABEL_LAG_NOTE} ----\n")
            out.flush()
        overrides: dict[str, Any] = {
            "daemon.sources": (simulator_spec(args.seed, start_unix), *args.sources),
            "daemon.speed": speed, "daemon.device_id": args.device_id, "daemon.state_dir": state_dir,
            "mqtt.broker": url,
            # the embedded broker speaks 3.1.1 only: say so up front instead of negotiating down
            "mqtt.protocol": "3.1.1",
        }
        if args.duration is not None:
            overrides["daemon.duration_s"] = float(args.duration)
        config = load_config(None, overrides)
        on_state = None if args.json else _phase_announcer(out, start_unix)
        result = asyncio.run(run_daemon(config, on_state=on_state))
        _drain(out, result.states, timeout_s=5.0)
        log.info("demo: %d states published, %d shown", result.states, out.states if args.json else result.states)
        return 0
    finally:
        out.closed = True
        logging.getLogger("edge.listen").setLevel(logging.ERROR)  # the broker going away now is expected
        broker.stop()
        if tmp is not None:
            tmp.cleanup()


def simulator_spec(seed: int, start_unix: float) -> str:
    """The demo's simulated wearable: its script started ``PRIME_S`` before the table, the headband on ``EEG_LEAD_S`` before."""
    return f"simulate:seed={seed},start={start_unix},prime={PRIME_S:g},late=eeg:{PRIME_S - EEG_LEAD_S:g}"


def _phase_announcer(out: _CountingOut, start_unix: float) -> Any:
    """A line in the live view whenever the simulator's scripted (true) phase changes (the primed past is not published)."""
    from firmware_bridge.simulate import phase_at  # noqa: PLC0415

    last: list[str] = []

    def on_state(seq: int, item: Any) -> None:
        phase = phase_at(float(item.payload["ts"]) - start_unix)
        if not last or last[-1] != phase:
            last.append(phase)
            out.write(f"---- simulator truth from here: {phase} "
                      f"(t = {float(item.payload['ts']) - start_unix:.0f} s of the script) ----\n")
            out.flush()

    return on_state


def _listen_quietly(listen: Any, **kwargs: Any) -> None:
    try:
        listen(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the live view failing must not take the daemon down
        log.error("demo: live view stopped: %s", exc)


def _drain(out: _CountingOut, published: int, timeout_s: float) -> None:
    """Wait until the live view has shown what the daemon published (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if out.as_json and out.states >= published:
            return
        if not out.as_json and out.offline_seen.is_set():
            return
        time.sleep(0.02)
