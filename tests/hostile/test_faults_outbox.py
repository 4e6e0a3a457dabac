"""The outbox under damage and a full disk (issue 15, items 3 and 4), with the real daemon.

Item 3: the outbox file is truncated, overwritten with random bytes, emptied to zero length, has
64 bytes flipped in its page headers, or has its ``meta`` seq counter lowered. The daemon must
start, move a damaged file aside with one line naming where, deliver new states, and never hand
out a seq again: a subscriber that drops repeats by seq must never drop a new state.

Item 4: the state dir on a 2 MB tmpfs that fills up. The daemon says "disk full" in one line,
keeps publishing live states, exits 0 on SIGTERM, and its WAL stays small.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import load_test_module

support = load_test_module("hostile/faults_support")
harness = support.harness

DEVICE = "box1"
pytestmark = pytest.mark.skipif(harness.MOSQUITTO is None, reason="mosquitto is not installed")


@pytest.fixture
def broker(persistent_mosquitto):
    return persistent_mosquitto


def run_args(url: str, state_dir: Path, speed: str = "60") -> list[str]:
    return ["--source", "simulate:duration=3600,seed=7", "--speed", speed, "--device-id", DEVICE,
            "--broker", url, "--state-dir", str(state_dir)]


def published(stderr: str) -> int:
    return int(re.findall(r"stopped: (\d+) states published", stderr)[-1])


def fill_outbox_offline(tmp_path: Path, state_dir: Path, rows: int) -> tuple[int, dict[int, bytes]]:
    """Run the daemon with no broker until ``rows`` states wait; (last seq, {seq: payload} kept)."""
    nobody = f"mqtt://127.0.0.1:{harness.free_port()}"
    daemon = harness.DaemonProcess(run_args(nobody, state_dir), tmp_path, name="offline")
    try:
        assert harness.wait_until(lambda: support.outbox_depth(state_dir, DEVICE) >= rows or not daemon.alive(), 30), \
            daemon.stderr()[-2000:]
        daemon.terminate()
        assert daemon.wait(20) == 0
    finally:
        daemon.close()
    conn = sqlite3.connect(state_dir / f"outbox-{DEVICE}.sqlite3")
    kept = {seq: bytes(p) for seq, p in conn.execute("SELECT seq, payload FROM outbox")}
    conn.close()
    return max(kept), kept


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def randomise(path: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(path.stat().st_size))


def zero_length(path: Path) -> None:
    path.write_bytes(b"")


def flip_64_bytes(path: Path) -> None:
    """8 bytes of the b-tree header of each of pages 2..9 (4 KiB pages), inverted: 64 bytes."""
    data = bytearray(path.read_bytes())
    pages = [p for p in range(1, len(data) // 4096)][:8]
    assert len(pages) == 8, f"outbox has only {len(data)} bytes"
    for page in pages:
        for i in range(8):
            data[page * 4096 + i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = (truncate, randomise, zero_length, flip_64_bytes)


def test_a_damaged_outbox_is_moved_aside_and_no_seq_is_reused(broker, tmp_path):
    """One outbox filled offline, copied four times, each copy damaged one way; four daemons (own
    topic prefix each) start on them at once against the broker."""
    import shutil

    source_dir = tmp_path / "filled"
    with support.bounded(75):
        last, kept = fill_outbox_offline(tmp_path, source_dir, rows=40)
        db_name = f"outbox-{DEVICE}.sqlite3"
        assert not (source_dir / f"{db_name}-wal").exists() or (source_dir / f"{db_name}-wal").stat().st_size == 0
        cases = {}
        for damage in DAMAGES:
            state_dir = tmp_path / damage.__name__
            shutil.copytree(source_dir, state_dir)
            damage(state_dir / db_name)
            prefix = f"case-{damage.__name__}"
            config = tmp_path / f"{damage.__name__}.toml"
            config.write_text(f'[mqtt]\ntopic_prefix = "{prefix}"\nclient_id = "{prefix}"\n')
            collector = harness.StateCollector(broker.host, broker.port, DEVICE, prefix=prefix,
                                               client_id=f"dash-{prefix}")
            daemon = harness.DaemonProcess(["--config", str(config), *run_args(broker.url, state_dir)], tmp_path,
                                           name=damage.__name__)
            cases[damage] = (state_dir, collector, daemon, support.PeakRss(daemon.pid))
        new = lambda c: [s for s in c.seqs() if s > last]  # noqa: E731
        try:
            for damage, (_, collector, daemon, _) in cases.items():
                assert collector.wait_for(lambda c: len(new(c)) >= 5 or not daemon.alive(), 40), \
                    f"{damage.__name__}:\n{daemon.stderr()[-3000:]}"
            for damage, (_, _, daemon, _) in cases.items():
                daemon.terminate()
            for damage, (_, _, daemon, _) in cases.items():
                assert daemon.wait(20) == 0, f"{damage.__name__}:\n{daemon.stderr()[-2000:]}"
        finally:
            for _, collector, daemon, rss in cases.values():
                daemon.close()
                collector.close()
                rss.stop()
    for damage, (state_dir, collector, daemon, rss) in cases.items():
        what = damage.__name__
        err = daemon.stderr()
        old = [p for p in collector.raw_states() if json.loads(p)["seq"] <= last]
        assert all(kept.get(json.loads(p)["seq"]) == p for p in old), \
            f"{what}: a state with an old seq arrived that is not the state stored under that seq: a reused seq"
        assert not harness.conflicting_seqs(collector.raw_states()), what
        assert len(new(collector)) >= 5, what
        moved = support.log_lines(err, "moved aside to")
        if damage is not zero_length:
            assert len(moved) == 1, f"{what}:\n{err[-3000:]}"
            aside = Path(re.search(r"moved aside to (\S+),", moved[0]).group(1))
            assert aside.exists() and aside.parent == state_dir, what
        assert rss.peak_mb < support.DAEMON_RSS_LIMIT_MB, what
        delivered_old = len({json.loads(p)["seq"] for p in old})
        print(f"FIGURES outbox {what}: {len(kept)} pending, {len(kept) - delivered_old} lost, "
              f"0 seqs reused, peak RSS {rss.peak_mb:.0f} MB")


def test_a_lowered_seq_counter_does_not_reuse_seqs(broker, tmp_path):
    state_dir = tmp_path / "state"
    collector = harness.StateCollector(broker.host, broker.port, DEVICE, client_id=f"dash-{broker.port}")
    try:
        with support.bounded(60):
            for run in range(2):
                daemon = harness.DaemonProcess(run_args(broker.url, state_dir), tmp_path, name=f"run{run}")
                try:
                    target = 20 * (run + 1)
                    assert collector.wait_for(lambda c: len(set(c.seqs())) >= target or not daemon.alive(), 30), \
                        daemon.stderr()[-2000:]
                    daemon.terminate()
                    assert daemon.wait(20) == 0
                finally:
                    daemon.close()
                if run == 0:
                    conn = sqlite3.connect(state_dir / f"outbox-{DEVICE}.sqlite3")
                    conn.execute("UPDATE meta SET value = 0 WHERE key = 'last_seq'")
                    conn.commit()
                    conn.close()
    finally:
        collector.close()
    reused = harness.conflicting_seqs(collector.raw_states())
    assert not reused, f"{len(reused)} seqs handed out twice after the counter was lowered: {reused[:10]}"


# -- item 4: a full disk ----------------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 2 MB tmpfs (we are root in CI); skipped with the reason where mounting is not allowed."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_full_disk_is_said_once_and_live_states_keep_flowing(broker, tmp_path, tiny_tmpfs):
    state_dir = tiny_tmpfs / "state"
    state_dir.mkdir()
    filler = tiny_tmpfs / "filler"
    collector = harness.StateCollector(broker.host, broker.port, DEVICE, client_id=f"dash-{broker.port}")
    daemon = harness.DaemonProcess(run_args(broker.url, state_dir), tmp_path, name="full-disk")
    rss = support.PeakRss(daemon.pid)
    try:
        with support.bounded(60):
            assert collector.wait_for(lambda c: len(c.seqs()) >= 10 or not daemon.alive(), 30), daemon.stderr()[-2000:]
            with open(filler, "wb") as f:  # take every free block
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            assert daemon.wait_for_log("disk full", 20), daemon.stderr()[-3000:]
            at_full = len(collector.seqs())
            assert collector.wait_for(lambda c: len(c.seqs()) >= at_full + 20 or not daemon.alive(), 30), \
                "live states stopped when the disk filled:\n" + daemon.stderr()[-3000:]
            assert daemon.alive()
            wal = state_dir / f"outbox-{DEVICE}.sqlite3-wal"
            wal_bytes = wal.stat().st_size if wal.exists() else 0
            os.unlink(filler)
            daemon.terminate()
            assert daemon.wait(20) == 0, daemon.stderr()[-3000:]
    finally:
        daemon.close()
        collector.close()
        peak_mb = rss.stop()
    err = daemon.stderr()
    assert len(support.log_lines(err, "disk full")) == 1, err[-3000:]
    assert "Traceback" not in err and "cannot rollback" not in err
    seqs = collector.seqs()
    assert not harness.conflicting_seqs(collector.raw_states())
    gaps = harness.missing_seqs(seqs, 0, max(seqs))
    assert wal_bytes <= 1024 * 1024 + 64 * 1024, f"WAL grew to {wal_bytes} bytes"
    assert peak_mb < support.DAEMON_RSS_LIMIT_MB
    print(f"FIGURES disk full: {published(err)} published, {len(set(seqs))} arrived, {len(gaps)} lost "
          f"(broker up), {len(seqs) - len(set(seqs))} duplicated, WAL {wal_bytes} bytes, peak RSS {peak_mb:.0f} MB")
