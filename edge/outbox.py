"""The durable outbox: every state is stored here before it is sent, and deleted on PUBACK.

SQLite under the state folder, in WAL mode so the writer (the daemon's asyncio thread, which
appends) and the MQTT side (which reads pending rows and deletes acknowledged ones) do not block
each other. Each thread gets its own connection.

Durability: appends run with ``synchronous=FULL`` (the WAL is fsynced at each commit). An append
also advances the seq counter, and the contract says a seq is never reused across restarts: with
``NORMAL`` a power cut could roll back the last commits and hand the same seq out again. States
come once per window hop (about 1 Hz), so one fsync each is affordable. Deletes (on PUBACK) run
with ``synchronous=NORMAL``: losing one to a power cut only re-sends a state, which subscribers
drop by seq. Both survive ``kill -9`` (the OS still holds the written pages).

Bound: at most ``max_rows`` (default 100 000 rows, about 28 h of 1 Hz states, ~100 MB at
~1 KB a state) and ``max_age_s`` (default 7 days). Past either bound the oldest rows are dropped:
one WARNING line when dropping starts (again only after the outbox has drained), and a counter
(``dropped``). Age uses the wall clock; a clock set backwards keeps rows longer, never shorter.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_unix REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', -1);
"""


class Outbox:
    """Rows of (seq, topic, payload, created_unix); seq from a counter that never goes back."""

    def __init__(
        self, path: Path, *, max_rows: int = DEFAULT_MAX_ROWS, max_age_s: float = DEFAULT_MAX_AGE_S
    ) -> None:
        if max_rows < 1 or max_age_s <= 0:
            raise ValueError("outbox: max_rows must be >= 1 and max_age_s > 0")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.dropped = 0
        self._dropping = False
        self._lock = threading.Lock()  # serialises writes and guards the depth counter
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.executescript(_SCHEMA)
            self._depth = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except (sqlite3.DatabaseError, OSError) as exc:
            raise ConfigError(
                f"outbox {self.path}: cannot open it as an SQLite database ({exc})"
            ) from None
        self.prune_expired()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def append(self, topic: str, payload_for_seq: Callable[[int], bytes]) -> int:
        """Assign the next seq, store ``payload_for_seq(seq)`` under it; returns the seq.

        The payload is built inside the transaction because it carries its own seq.
        """
        conn = self._conn()
        with self._lock:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = conn.execute(
                    "UPDATE meta SET value = value + 1 WHERE key = 'last_seq' RETURNING value"
                ).fetchone()[0]
                payload = payload_for_seq(seq)
                conn.execute(
                    "INSERT INTO outbox (seq, topic, payload, created_unix) VALUES (?, ?, ?, ?)",
                    (seq, topic, payload, time.time()),
                )
                excess = self._depth + 1 - self.max_rows
                dropped = 0
                if excess > 0:
                    dropped = conn.execute(
                        "DELETE FROM outbox WHERE seq IN "
                        "(SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                        (excess,),
                    ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._depth += 1 - dropped
            if dropped:
                self._note_dropped(dropped, f"more than {self.max_rows} rows")
        return seq

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` stored rows with seq > ``after_seq``, in seq order."""
        rows = (
            self._conn()
            .execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            .fetchall()
        )
        return [(seq, topic, bytes(payload)) for seq, topic, payload in rows]

    def delete(self, seqs: list[int]) -> int:
        """Remove acknowledged rows (seqs already dropped are ignored); returns rows removed."""
        if not seqs:
            return 0
        conn = self._conn()
        with self._lock:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                removed = conn.executemany(
                    "DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._depth -= removed
            if self._depth == 0:
                self._dropping = False
        return removed

    def prune_expired(self, now_unix: float | None = None) -> int:
        """Drop rows older than ``max_age_s``; returns how many."""
        cutoff = (time.time() if now_unix is None else now_unix) - self.max_age_s
        conn = self._conn()
        with self._lock:
            oldest = conn.execute("SELECT created_unix FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if oldest is None or oldest[0] >= cutoff:
                return 0
            conn.execute("PRAGMA synchronous=NORMAL")
            removed = conn.execute("DELETE FROM outbox WHERE created_unix < ?", (cutoff,)).rowcount
            self._depth -= removed
            if removed:
                self._note_dropped(removed, f"older than {self.max_age_s / 86400:g} days")
        return removed

    def _note_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        if not self._dropping:
            self._dropping = True
            log.warning(
                "outbox %s: dropping the oldest undelivered states (%s); " "%d dropped so far",
                self.path,
                why,
                self.dropped,
            )

    def depth(self) -> int:
        """Rows waiting for a PUBACK."""
        return self._depth

    def last_seq(self) -> int:
        """The last seq handed out (-1 before the first)."""
        return self._conn().execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._connections.clear()
        self._local = threading.local()
