"""The SQLite outbox: seq never reused, order, bound, durability across reopen and kill -9."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from edge.outbox import Outbox


def _payload(seq: int) -> bytes:
    return f'{{"seq":{seq}}}'.encode()


def test_seq_starts_at_zero_and_increases(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.last_seq() == -1
    assert [box.append("t", _payload) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert box.pending(-1, 10) == [(s, "t", _payload(s)) for s in range(5)]
    assert box.pending(2, 1) == [(3, "t", b'{"seq":3}')]
    box.close()


def test_seq_is_never_reused_even_after_the_outbox_was_emptied_and_reopened(tmp_path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    seqs = [box.append("t", _payload) for _ in range(3)]
    assert box.delete(seqs) == 3 and box.depth() == 0
    box.close()
    again = Outbox(path)
    assert again.depth() == 0
    assert again.append("t", _payload) == 3
    again.close()


def test_rows_survive_reopen_and_delete_ignores_unknown_seqs(tmp_path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    for _ in range(4):
        box.append("dev/state", _payload)
    assert box.delete([1, 99]) == 1
    box.close()
    again = Outbox(path)
    assert again.depth() == 3
    assert [row[0] for row in again.pending(-1, 100)] == [0, 2, 3]
    again.close()


def test_the_database_is_in_wal_mode(tmp_path):
    Outbox(tmp_path / "o.sqlite3").close()
    conn = sqlite3.connect(tmp_path / "o.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_failing_payload_builder_does_not_consume_a_seq(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    box.append("t", _payload)

    def broken(seq: int) -> bytes:
        raise ValueError("NaN in state")

    with pytest.raises(ValueError):
        box.append("t", broken)
    assert box.append("t", _payload) == 1
    assert box.depth() == 2
    box.close()


def test_row_bound_drops_the_oldest_with_one_warning_and_counts_them(tmp_path, caplog):
    box = Outbox(tmp_path / "o.sqlite3", max_rows=5)
    with caplog.at_level(logging.WARNING, logger="edge.outbox"):
        for _ in range(12):
            box.append("t", _payload)
    assert box.depth() == 5
    assert [row[0] for row in box.pending(-1, 100)] == [7, 8, 9, 10, 11]
    assert box.dropped == 7
    warnings = [r for r in caplog.records if r.name == "edge.outbox"]
    assert len(warnings) == 1 and "more than 5 rows" in warnings[0].getMessage()
    box.close()


def test_age_bound_drops_rows_older_than_max_age(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_age_s=3600)
    for _ in range(3):
        box.append("t", _payload)
    assert box.prune_expired(now_unix=time.time() + 60) == 0
    assert box.prune_expired(now_unix=time.time() + 3700) == 3
    assert box.depth() == 0 and box.dropped == 3
    assert box.append("t", _payload) == 3
    box.close()


def test_concurrent_appends_from_threads_get_unique_contiguous_seqs(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3")
    results: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(50):
            seq = box.append("t", _payload)
            with lock:
                results.append(seq)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(200))
    assert [row[0] for row in box.pending(-1, 1000)] == list(range(200))
    assert all(
        row[2] == _payload(row[0]) for row in box.pending(-1, 1000)
    )  # payload carries its seq
    box.close()


def test_rows_survive_kill_minus_9(tmp_path):
    path = tmp_path / "o.sqlite3"
    script = (
        "import os, signal, sys\n"
        "from edge.outbox import Outbox\n"
        f"box = Outbox({str(path)!r})\n"
        "for _ in range(20):\n"
        "    box.append('t', lambda s: str(s).encode())\n"
        "print('appended', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "appended" in proc.stdout
    box = Outbox(path)
    assert box.depth() == 20
    assert box.append("t", _payload) == 20
    box.close()


def test_a_file_that_is_not_a_database_is_moved_aside_with_its_name(tmp_path, caplog):
    path = tmp_path / "broken.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with caplog.at_level(logging.WARNING, logger="edge.outbox"):
        box = Outbox(path)
    assert box.append("t", _payload) == 0
    [aside] = box.moved_aside
    assert aside.read_bytes() == b"this is not sqlite" * 100
    assert any(str(aside) in r.getMessage() for r in caplog.records)
    box.close()


def test_a_truncated_outbox_keeps_its_readable_states_and_never_reuses_a_seq(tmp_path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    pad = "x" * 900
    for _ in range(300):
        box.append("t", lambda s: f'{{"seq":{s},"pad":"{pad}"}}'.encode())
    box.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * 0.8) // 4096 * 4096)  # the last fifth of the file lost
    again = Outbox(path)
    kept = again.pending(-1, 1000)
    assert 100 < len(kept) < 300, len(kept)
    assert [seq for seq, _, _ in kept] == list(range(len(kept)))  # a prefix, in order, intact
    assert all(payload.startswith(f'{{"seq":{seq},'.encode()) for seq, _, payload in kept)
    assert again.append("t", _payload) > 299
    assert again.moved_aside[0].stat().st_size == int(size * 0.8) // 4096 * 4096
    again.close()
