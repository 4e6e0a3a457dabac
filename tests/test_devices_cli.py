"""``emotion-edge devices scan|check`` as a user runs them (a subprocess via ``conftest.run_cli``).

``check`` reads a fake OpenBCI Cyton that runs in this test process on a real pseudo-terminal; the
CLI process opens the pty's path as ``serial:cyton:<path>``.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import load_test_module, run_cli

from firmware_bridge.cli import StreamTally, recognise_ble

fake = load_test_module("fake_serial_devices")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")
def test_check_cyton_on_pty_json():
    faults = {50: "drop", 51: "drop", 120: "corrupt", 200: "garbage"}
    dev = fake.FakeCyton(faults=faults)
    dev.start()
    try:
        proc = run_cli(
            "devices", "check", f"serial:cyton:{dev.path}", "--duration", "2", "--json", timeout=60
        )
    finally:
        dev.close()
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) >= {"samples", "rate_hz", "lost", "quality"}
    samples = report["samples"]["eeg"]
    # 2 s at 250 Hz, minus start-up (reset banner, first packet) and the three faulty packets
    assert 380 <= samples <= 505, report
    # measured on the wall clock of arrivals over ~2 s; loose because the fake board shares a busy
    # test machine (a board sending at another rate, e.g. 200 Hz, would still fail this)
    assert report["rate_hz"]["eeg"] == pytest.approx(250.0, rel=0.1)
    assert report["nominal_rate_hz"]["eeg"] == 250.0
    assert report["lost"] == 3  # two dropped + one corrupted; the garbage costs no packet
    assert report["lost_samples"]["eeg"] == 3
    assert report["decode_errors"] >= 2
    # quality: no better than the sequence-gap fraction, and no worse than a few % below it
    assert (
        samples / (samples + 3) - 0.05 <= report["quality"]["eeg"] <= samples / (samples + 3) + 1e-4
    )
    assert report["connected"] is True and report["reconnects"] == 0
    assert bytes(dev.commands).startswith(b"svb")


def test_check_human_output_for_missing_port(tmp_path):
    missing = tmp_path / "ttyUSB9"
    proc = run_cli("devices", "check", f"serial:cyton:{missing}", "--duration", "0.5", timeout=60)
    assert proc.returncode == 1
    assert "no samples received" in proc.stdout
    assert "ttyUSB9" in proc.stdout


def test_check_bad_spec_is_one_line():
    proc = run_cli("devices", "check", "ble:mus:00:11:22:33:44:55", "--duration", "1", timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [
        "emotion-edge devices: source 'ble:mus:00:11:22:33:44:55': unknown device 'mus' for ble "
        "(known: framed, hrs, muse, polar-h10)"
    ]


def test_check_bad_montage_is_one_line():
    proc = run_cli("devices", "check", "serial:cyton:/dev/null?montage=F3,F4", timeout=60)
    assert proc.returncode == 2
    assert "montage names 2 channels, the device has 8" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_works_for_the_simulator():
    pytest.importorskip("firmware_bridge.simulate")
    proc = run_cli("devices", "check", "simulate", "--duration", "1.5", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["samples"] and all(n > 0 for n in report["samples"].values())
    assert all(0.0 < q <= 1.0 for q in report["quality"].values())


def test_scan_without_bluetooth_says_so_in_one_line():
    # Point D-Bus at a socket that cannot exist: what a machine without BlueZ looks like
    # (this build machine has none anyway).
    env = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/emotion-edge-test/system_bus_socket"}
    proc = run_cli("devices", "scan", "--timeout", "1", env=env, timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and " WARNING " not in ln]
    assert proc.returncode == 1
    assert len(lines) == 1
    assert lines[0].startswith("emotion-edge devices scan: no Bluetooth here")
    assert "D-Bus" in lines[0]


def test_scan_json_reports_the_reason():
    env = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/emotion-edge-test/system_bus_socket"}
    proc = run_cli("devices", "scan", "--timeout", "1", "--json", env=env, timeout=60)
    report = json.loads(proc.stdout)
    assert report["ble"] == [] and "no Bluetooth here" in report["ble_error"]


@pytest.mark.parametrize(
    "name,uuids,kind",
    [
        ("Muse-1324", [], "muse"),
        ("MuseS-8F2A", ["0000fe8d-0000-1000-8000-00805f9b34fb"], "muse"),
        ("Polar H10 E9AF5A2F", ["0000180d-0000-1000-8000-00805f9b34fb"], "polar-h10"),
        ("Polar OH1 1234", ["0000180d-0000-1000-8000-00805f9b34fb"], "hrs"),
        ("Forerunner", ["0000180D-0000-1000-8000-00805F9B34FB"], "hrs"),
        ("gsr-board", ["6e400001-b5a3-f393-e0a9-e50e24dcca9e"], "framed"),
        ("Speaker", ["0000110b-0000-1000-8000-00805f9b34fb"], None),
        (None, [], None),
    ],
)
def test_recognise_advertisements(name, uuids, kind):
    assert recognise_ble(name, uuids) == kind


def test_quality_falls_when_a_device_stops_sending():
    tally = StreamTally()
    for i in range(10):  # 1 s of 250 Hz in 25-sample blocks, one gap of 5 samples reported
        tally.add(25, 5 if i == 3 else 0, 250.0, arrival_s=100.0 + 0.1 * i)
    assert tally.quality(end_s=100.9) == pytest.approx(250 / 255, abs=0.02)
    # then silence for 4 s: no sequence gap can show it, the clock does
    assert tally.quality(end_s=104.9) == pytest.approx(250 / (25 + 250 * 4.9), abs=0.01)
    assert tally.rate_hz == pytest.approx(225 / 0.9)
