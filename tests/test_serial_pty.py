"""Serial sources end to end over real pseudo-terminals: the real pyserial transport, the real
``serial:cyton:`` / ``serial:framed:`` sources from ``open_source``, and fake devices in threads
that misbehave the way real links do (corrupted, truncated and dropped packets, garbage, a port
that vanishes and comes back)."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from conftest import load_test_module
from firmware_bridge.backoff import Backoff
from firmware_bridge.devices import open_source
from firmware_bridge.protocols import cyton

fake = load_test_module("fake_serial_devices")

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")


async def collect(source, want_samples: int, timeout_s: float, stream: str | None = None):
    """Blocks from ``source`` until ``want_samples`` samples (of ``stream``) or the timeout."""
    blocks = []
    it = source.blocks().__aiter__()
    deadline = time.monotonic() + timeout_s
    try:
        while sum(b.n for b in blocks if stream in (None, b.stream)) < want_samples:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                blocks.append(await asyncio.wait_for(it.__anext__(), left))
            except asyncio.TimeoutError:
                break
    finally:
        await source.close()
        await it.aclose()
    return blocks


def test_cyton_over_pty_values_and_losses():
    faults = {
        20: "drop",
        40: "corrupt",
        60: "truncate",
        80: "garbage",
        100: "drop",
        101: "drop",
        130: "corrupt",
    }
    dev = fake.FakeCyton(faults=faults)
    dev.start()
    try:
        source = open_source(f"serial:cyton:{dev.path}?montage=F3,F4,C3,C4,P3,P4,O1,O2")
        blocks = asyncio.run(collect(source, 200, timeout_s=10.0))
    finally:
        dev.close()
    data = np.concatenate([b.data for b in blocks])[:200]
    assert len(data) == 200, f"only {len(data)} samples in 10 s"
    sent = dev.sent_intact[:200]
    expected = np.array([fake.cyton_counts(k) for k in sent]) * cyton.uv_per_count(24)
    np.testing.assert_allclose(data, expected, rtol=1e-12)
    assert np.any(expected < 0) and np.any(expected > 0)
    # every faulty packet before the last one collected is reported lost, the garbage one is not
    lost_expected = sum(1 for k, f in faults.items() if k < sent[-1] and f != "garbage")
    assert sum(b.lost_samples for b in blocks) == lost_expected == 6
    assert source.stats.lost == lost_expected
    assert source.stats.decode_errors >= 3  # corrupt x2, truncated, garbage
    assert blocks[0].channels == ("F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2")
    # the device was stopped, reset, started, and stopped again on close
    assert bytes(dev.commands).startswith(b"svb") and bytes(dev.commands).endswith(b"s")
    # sample times strictly increasing across blocks, gaps included
    times = np.concatenate([b.ts_unix + np.arange(b.n) / 250.0 for b in blocks])
    assert np.all(np.diff(times) > 0)
    # timestamps: 250 Hz on the host clock, gaps included
    first, last = blocks[0], blocks[-1]
    span = last.ts_unix + last.n / 250.0 - first.ts_unix
    assert span == pytest.approx((sum(b.n for b in blocks) + lost_expected) / 250.0, abs=0.08)
    assert abs(first.ts_unix - time.time()) < 30


def test_cyton_port_vanishes_and_comes_back(tmp_path):
    link = str(tmp_path / "ttyCYTON")
    dev = fake.FakeCyton(link=link)
    dev.start()
    source = open_source(f"serial:cyton:{link}")
    source.backoff = Backoff(initial_s=0.05, max_s=0.2)
    states: list[tuple[str, object]] = []

    async def scenario():
        it = source.blocks().__aiter__()
        got = 0
        while got < 100:  # first connection
            got += (await asyncio.wait_for(it.__anext__(), 5)).n
        states.append(("connected", source.stats.connected))
        dev.vanish()
        os.unlink(link)  # the dongle is unplugged: the port path is gone
        # what was already in flight still arrives; then nothing while the port is gone
        pending = asyncio.ensure_future(it.__anext__())
        while True:
            done, _ = await asyncio.wait({pending}, timeout=0.5)
            if not done:
                break
            pending.result()
            pending = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.5)
        states.append(("while away", pending.done()))
        states.append(("connected while away", source.stats.connected))
        states.append(("error while away", source.last_error))
        new = fake.FakeCyton(link=link)  # plugged back in (a new pty behind the same path)
        new.start()
        try:
            got = 0
            block = await asyncio.wait_for(pending, 10)
            got += block.n
            while got < 50:
                got += (await asyncio.wait_for(it.__anext__(), 5)).n
            states.append(("reconnects", source.stats.reconnects))
            states.append(("new device started", new.starts))
        finally:
            await source.close()
            await it.aclose()
            new.close()

    asyncio.run(scenario())
    found = dict(states)
    assert found["connected"] is True
    assert found["while away"] is False  # the source yields nothing while the device is away
    assert found["connected while away"] is False
    assert "ttyCYTON" in found["error while away"]
    assert found["reconnects"] == 1
    assert found["new device started"] == 1


def test_cyton_missing_port_is_retried_not_raised(tmp_path):
    source = open_source(f"serial:cyton:{tmp_path / 'nothing-here'}")
    source.backoff = Backoff(initial_s=0.05, max_s=0.1)
    blocks = asyncio.run(collect(source, 1, timeout_s=0.6))
    assert blocks == []
    assert source.stats.connected is False
    assert "nothing-here" in source.last_error


def test_cyton_silent_board_is_reported(tmp_path):
    """A dongle whose board is off answers nothing to 'v': the source says so and keeps trying."""
    dev = fake.PtyDevice()  # a port that never answers
    try:
        source = open_source(f"serial:cyton:{dev.path}")
        source.banner_timeout_s = 0.3
        source.backoff = Backoff(initial_s=0.05, max_s=0.1)
        blocks = asyncio.run(collect(source, 1, timeout_s=1.5))
    finally:
        dev.close()
    assert blocks == []
    assert "no Cyton banner" in source.last_error


def test_framed_board_over_pty():
    dev = fake.FakeFramedBoard(n_frames=30, drop={5, 6}, corrupt={12})
    source = open_source(f"serial:framed:{dev.path}")

    async def run():
        # pyserial flushes the input on open, as with a real port: the board starts once the
        # host has the port open
        task = asyncio.ensure_future(collect(source, 27 * 10, timeout_s=15.0, stream="ecg"))
        while not source.stats.connected and not task.done():
            await asyncio.sleep(0.01)
        dev.start()
        return await task

    try:
        blocks = asyncio.run(run())
    finally:
        dev.close()
    ecg = [b for b in blocks if b.stream == "ecg"]
    eda = [b for b in blocks if b.stream == "eda"]
    received = [k for k in range(30) if k not in {5, 6, 12}]
    ecg_values = np.concatenate([b.data[:, 0] for b in ecg])
    expected = np.concatenate([(np.arange(10) + 10 * k - 300) * 2.5 for k in received])
    np.testing.assert_allclose(ecg_values, expected)
    # the bit error hit only the ECG frame of pair 12; the EDA frame 12 arrives
    eda_received = [k for k in range(30) if k not in {5, 6}]
    eda_values = np.concatenate([b.data[:, 0] for b in eda])
    assert len(eda_values) >= 27  # the last may still be in flight when ECG is complete
    np.testing.assert_allclose(
        eda_values, [(1000 + k) * 0.001 for k in eda_received][: len(eda_values)], rtol=1e-6
    )
    # frames 5, 6 dropped and ECG 12 corrupted (CRC) -> 20 + 10 ECG samples reported lost, not filled
    assert [b.lost_samples for b in ecg if b.lost_samples] == [20, 10]
    assert [b.lost_samples for b in eda if b.lost_samples] == [2]
    assert source.stats.lost == 5  # ECG frames 5, 6, 12 and EDA frames 5, 6
    assert source.stats.decode_errors >= 2  # the corrupted pair (+ the noise before frame 3)
    assert ecg[0].rate_hz == 250.0 and eda[0].rate_hz == 25.0
    # device clock mapped to host time: ECG blocks are 40 ms apart on the device, so on the host
    # (the first estimates settle as the lower envelope of the delays fills in)
    starts = np.array([b.ts_unix for b in ecg])
    assert np.median(np.diff(starts)) == pytest.approx(0.04, abs=0.003)
    assert starts[-1] - starts[0] == pytest.approx(0.04 * (received[-1] - received[0]), abs=0.05)
