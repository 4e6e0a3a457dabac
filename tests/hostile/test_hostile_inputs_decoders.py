"""Hostile inputs, item 9 of issue 15: decoders.

* A framed-protocol IBI frame with a NaN or inf sample (valid CRC) raised out of the decoder and
  killed the source for good. Now it is one decode error and the stream goes on: a real pty, a
  board thread writing real frames, the real ``devices check`` and the real daemon.
* Muse control notifications nesting JSON raised RecursionError out of the parser.
* After a +1 h step of the host's wall clock (NTP at a Pi's boot) the Cyton decoder reported
  900,096 lost packets: arrivals are now stamped on a monotonic clock mapped to wall time once.
  The step is made in the command's own process (its ``time.time`` jumps; the system clock is
  left alone), with a fake Cyton on a real pty.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from conftest import load_test_module


def _load_harness():
    """``inputs_harness.py`` beside this file, imported by path once (tests/ is not a package on sys.path)."""
    name = "hostile_inputs_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("inputs_harness.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


harness = _load_harness()
fake = load_test_module("fake_serial_devices")


class IbiBoard(fake.PtyDevice):
    """A framed-protocol board sending one IBI frame (float32 ms) every 50 ms; every 10th is NaN or inf."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self) -> None:
        from firmware_bridge.protocols import framed

        start = time.monotonic()
        k = 0
        while not self.stop_event.is_set() and time.monotonic() - start < self.seconds:
            value = {3: float("nan"), 6: float("inf")}.get(k % 10, 800.0 + k % 7)
            self.write(framed.encode_frame("ibi", [value], k, 1_000_000 + k * 50_000, 0.0, "float32"))
            k += 1
            time.sleep(0.05)


def test_a_nan_or_inf_ibi_frame_is_one_decode_error_and_the_stream_goes_on(tmp_path):
    board = IbiBoard(seconds=8)
    board.start()
    try:
        run = harness.run_bounded(["devices", "check", f"serial:framed:{board.path}", "--duration", "3", "--json"],
                                  tmp_path / "check", timeout_s=25, case="framed IBI frames with NaN/inf (devices check)")
    finally:
        board.close()
    assert not run.timed_out
    run.assert_no_traceback()
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["decode_errors"] >= 4, report  # 2 in every 10 frames, 3 s at 20 frames a second
    assert report["samples"]["ibi"] >= 30, report  # the good frames after the bad ones
    assert run.peak_rss_mb < harness.UNIT_MEMORY_MAX_MB


def test_the_daemon_keeps_a_framed_source_fed_with_nan_frames(mqtt_broker, tmp_path):
    board = IbiBoard(seconds=10)
    board.start()
    try:
        run = harness.run_bounded(["run", "--broker", mqtt_broker.url, "--state-dir", str(tmp_path / "state"),
                                   "--source", f"serial:framed:{board.path}"], tmp_path / "run", timeout_s=30,
                                  sigterm_after_s=3.0, sigterm_when="running:", case="framed IBI frames with NaN/inf (run)")
    finally:
        board.close()
    assert not run.timed_out and run.returncode == 0, run.stderr[-2000:]
    run.assert_no_traceback()
    assert "stream ibi: events" in run.stderr
    assert "failed" not in run.stderr, run.stderr[-2000:]
    assert run.stop_s is not None and run.stop_s < 2.0


def test_muse_control_replies_nested_beyond_reason_are_dropped_not_raised():
    from firmware_bridge.protocols.muse import MuseControlParser

    parser = MuseControlParser()
    hostile = '{"a":' + "[" * 3000 + "}"
    replies = []
    t0 = time.perf_counter()
    for i in range(0, len(hostile), 19):  # 20-byte notifications: length byte + up to 19 characters
        part = hostile[i:i + 19].encode()
        replies += parser.feed(bytes([len(part)]) + part)
    for part in ('{"rc":0,"fw":', '"1.2.13"}'):
        replies += parser.feed(bytes([len(part)]) + part.encode())
    assert replies == [{"rc": 0, "fw": "1.2.13"}]  # the next good reply still comes through
    assert time.perf_counter() - t0 < 1.0


STEPPER = '''
import runpy, sys, threading, time
_wall = time.time
_t0 = _wall()
def stepped():  # the wall clock steps +1 h after 1.5 s, as NTP does at a Pi's boot
    now = _wall()
    return now + (3600.0 if now - _t0 > 1.5 else 0.0)
time.time = stepped
sys.argv = ["emotion-edge", *sys.argv[3:]]
runpy.run_module("edge", run_name="__main__")
'''


def test_a_one_hour_wall_clock_step_is_not_900_000_lost_cyton_packets(tmp_path):
    stepper = tmp_path / "stepper.py"
    stepper.write_text(STEPPER)
    dev = fake.FakeCyton()
    dev.start()
    try:
        run = harness.run_bounded(["devices", "check", f"serial:cyton:{dev.path}", "--duration", "3.5", "--json"],
                                  tmp_path / "check", timeout_s=30, python=[sys.executable, str(stepper)],
                                  case="Cyton across a +1 h wall-clock step")
    finally:
        dev.close()
    assert not run.timed_out and run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["samples"]["eeg"] > 500, report
    assert report["lost"] < 10, f"{report['lost']} packets reported lost across the clock step"
