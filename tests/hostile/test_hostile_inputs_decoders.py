"""Hostile inputs, item 9 of issue 15: decoders.

* A framed-protocol IBI frame with a NaN or inf sample (valid CRC) raised out of the decoder and
  killed the source for good. Now it is one decode error and the stream goes on: a real pty, a
  board thread writing real frames, the real ``devices check`` and the real daemon.
* Muse control notifications nesting JSON raised RecursionError out of the parser.
* After a +1 h step of the host's wall clock (NTP at a Pi's boot) the Cyton decoder reported
  900,096 lost packets: arrivals are now stamped on a monotonic clock mapped to wall time once.
  The step is made in a process of its own (its ``time.time`` jumps; the system clock is left
  alone): the real serial transport reads a fake Cyton on a real pty and feeds the real decoder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from conftest import load_test_module

harness = load_test_module("hostile/inputs_harness")
fake = load_test_module("fake_serial_devices")


class IbiBoard(fake.PtyDevice):
    """A framed-protocol board sending an IBI frame of two beats (float32 ms) every 50 ms; in every ten,
    one carries a NaN and one an inf as its second beat (CRC valid: the board computed them)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self) -> None:
        from firmware_bridge.protocols import framed

        start = time.monotonic()
        k = 0
        while not self.stop_event.is_set() and time.monotonic() - start < self.seconds:
            second = {3: float("nan"), 6: float("inf")}.get(k % 10, 810.0 + k % 7)
            self.write(framed.encode_frame("ibi", [800.0, second], k, 1_000_000 + k * 50_000, 0.0, "float32"))
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
    assert report["samples"]["ibi"] >= 60, report  # the good frames after the bad ones (2 beats each)
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


# Runs in its own process: the wall clock (time.time) steps +1 h one second in, as NTP does at a Pi's
# boot; then the real serial transport reads a fake Cyton on a real pty with its default clock and
# the real decoder counts what it lost. Prints the figures as one JSON line.
STEPPED_READER = """
import asyncio, json, sys, time
_wall = time.time
_t0 = _wall()
time.time = lambda: _wall() + (3600.0 if _wall() - _t0 > 1.0 else 0.0)
from firmware_bridge.protocols.cyton import CytonDecoder
from firmware_bridge.transports.serial import SerialLink

async def main():
    link = SerialLink(sys.argv[1])
    await link.open()
    await link.write(b"b")
    decoder, stamps, lost, packets = CytonDecoder(), [], 0, 0
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        item = await link.read(1.0)
        if item is None:
            continue
        stamps.append(item[1])
        result = decoder.feed(*item)
        lost += result.lost_packets
        packets += sum(b.n for b in result.blocks)
    await link.close()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    print(json.dumps({"max_gap_s": max(gaps), "min_gap_s": min(gaps), "lost": lost, "packets": packets}))

asyncio.run(main())
"""


def test_a_one_hour_wall_clock_step_moves_no_arrival_stamp_and_loses_no_cyton_packet(tmp_path):
    script = tmp_path / "stepped_reader.py"
    script.write_text(STEPPED_READER)
    dev = fake.FakeCyton()
    dev.start()
    try:
        proc = subprocess.run([sys.executable, str(script), dev.path], capture_output=True, text=True, timeout=30,
                              preexec_fn=harness._limit_memory)
    finally:
        dev.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["packets"] > 300, figures
    assert figures["max_gap_s"] < 1.0, f"an arrival stamp jumped with the wall clock: {figures}"
    assert figures["min_gap_s"] >= 0.0, figures
    assert figures["lost"] < 10, figures
